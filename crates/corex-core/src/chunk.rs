//! Content-addressed chunking: a blob moves as hashed chunks and is named by the root hash
//! over them, so a receiver checks every chunk as it arrives and never re-hashes the whole.

use serde::{Deserialize, Serialize};

use crate::hash::Hash;

/// Default chunk size for model transfers: large enough that a request's fixed costs
/// (signature, headers, round trip) are small against its bytes.
pub const CHUNK_SIZE: usize = 1024 * 1024;

/// Smallest chunk an upload may be cut into: bounds how many chunks (and how long a manifest)
/// a result of the largest allowed size can have.
pub const MIN_UPLOAD_CHUNK_SIZE: usize = 1024;

/// Chunk size of a shared dataset's blob: small enough that a node fetching only the samples
/// its fragments touch does not pull in much besides (a 64-image batch drawn from 60,000
/// Fashion-MNIST images touches at most 64 of 838 chunks).
pub const DATASET_CHUNK_SIZE: usize = 64 * 1024;

/// Everything a receiver needs to fetch a blob chunk by chunk and check every piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The blob's name: [`Manifest::root`] over its size, chunk size and chunk hashes.
    pub hash: Hash,
    pub total_bytes: u64,
    pub chunk_size: u32,
    /// BLAKE3 of each chunk, in order.
    pub chunks: Vec<Hash>,
}

impl Manifest {
    pub fn of(blob: &[u8], chunk_size: usize) -> Self {
        let chunk_size = chunk_size.clamp(1, u32::MAX as usize);
        let total_bytes = blob.len() as u64;
        let chunks: Vec<Hash> = blob.chunks(chunk_size).map(Hash::of).collect();
        Self {
            hash: Self::root(total_bytes, chunk_size as u32, &chunks),
            total_bytes,
            chunk_size: chunk_size as u32,
            chunks,
        }
    }

    /// `BLAKE3("corex-blob-v1" ‖ total_bytes ‖ chunk_size ‖ chunk hashes…)`, each part
    /// length-prefixed: one hash binds the size, the cut and every chunk.
    pub fn root(total_bytes: u64, chunk_size: u32, chunks: &[Hash]) -> Hash {
        let concatenated: Vec<u8> = chunks.iter().flat_map(|c| c.0).collect();
        Hash::of_parts(&[
            b"corex-blob-v1",
            &total_bytes.to_le_bytes(),
            &chunk_size.to_le_bytes(),
            &concatenated,
        ])
    }

    /// Byte range of chunk `index` inside the blob.
    pub fn range_of(&self, index: usize) -> std::ops::Range<usize> {
        let start = index * self.chunk_size as usize;
        let end = (start + self.chunk_size as usize).min(self.total_bytes as usize);
        start..end
    }

    /// The chunks holding the blob's bytes `range` (empty for an empty range); the range must
    /// lie inside the blob (`range.end <= total_bytes`).
    pub fn chunks_covering(&self, range: std::ops::Range<u64>) -> std::ops::Range<usize> {
        if range.is_empty() || self.chunk_size == 0 {
            return 0..0;
        }
        let size = u64::from(self.chunk_size);
        (range.start / size) as usize..range.end.div_ceil(size) as usize
    }

    /// A manifest is consistent when its chunk count matches its size and its name is the
    /// root over its contents.
    pub fn is_consistent(&self) -> bool {
        self.chunk_size > 0
            && self.chunks.len() as u64 == self.total_bytes.div_ceil(u64::from(self.chunk_size))
            && self.hash == Self::root(self.total_bytes, self.chunk_size, &self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_blob_exactly() {
        let blob: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let manifest = Manifest::of(&blob, 300);
        assert!(manifest.is_consistent());
        assert_eq!(manifest.chunks.len(), 4);
        assert_eq!(manifest.range_of(3), 900..1000);
        for index in 0..4 {
            assert_eq!(
                Hash::of(&blob[manifest.range_of(index)]),
                manifest.chunks[index]
            );
        }
    }

    #[test]
    fn the_chunks_covering_a_range_are_exactly_those_it_touches() {
        let manifest = Manifest::of(&[0u8; 1000], 300);
        assert_eq!(manifest.chunks_covering(0..1), 0..1);
        assert_eq!(manifest.chunks_covering(299..301), 0..2);
        assert_eq!(manifest.chunks_covering(300..600), 1..2);
        assert_eq!(manifest.chunks_covering(950..1000), 3..4);
        assert_eq!(manifest.chunks_covering(5..5), 0..0);
    }

    #[test]
    fn a_manifest_that_lies_about_its_chunks_is_inconsistent() {
        let blob = vec![7u8; 1000];
        let mut manifest = Manifest::of(&blob, 300);
        manifest.chunks[1] = Hash::of(b"something else");
        assert!(!manifest.is_consistent());
        let mut resized = Manifest::of(&blob, 300);
        resized.total_bytes = 999;
        assert!(!resized.is_consistent());
    }
}
