//! Content-addressed chunking: a blob is named by its hash and moves as hashed chunks.

use serde::{Deserialize, Serialize};

use crate::hash::Hash;

/// Default chunk size for model transfers.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Everything a receiver needs to fetch a blob chunk by chunk and check every piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// BLAKE3 of the whole blob.
    pub hash: Hash,
    pub total_bytes: u64,
    pub chunk_size: u32,
    /// BLAKE3 of each chunk, in order.
    pub chunks: Vec<Hash>,
}

impl Manifest {
    pub fn of(blob: &[u8], chunk_size: usize) -> Self {
        Self {
            hash: Hash::of(blob),
            total_bytes: blob.len() as u64,
            chunk_size: chunk_size as u32,
            chunks: blob.chunks(chunk_size.max(1)).map(Hash::of).collect(),
        }
    }

    /// Byte range of chunk `index` inside the blob.
    pub fn range_of(&self, index: usize) -> std::ops::Range<usize> {
        let start = index * self.chunk_size as usize;
        let end = (start + self.chunk_size as usize).min(self.total_bytes as usize);
        start..end
    }

    /// A manifest is consistent when its chunk count matches its size.
    pub fn is_consistent(&self) -> bool {
        self.chunk_size > 0
            && self.chunks.len() as u64 == self.total_bytes.div_ceil(u64::from(self.chunk_size))
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
        let joined: Vec<u8> = (0..4)
            .flat_map(|i| blob[manifest.range_of(i)].to_vec())
            .collect();
        assert_eq!(Hash::of(&joined), manifest.hash);
    }
}
