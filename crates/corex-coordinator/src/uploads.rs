//! Result uploads, staged as content-addressed chunks per node until the result that names them
//! is submitted.
//!
//! In: chunk bodies from authenticated nodes (`PUT /v1/uploads/{hash}`), questions about which
//! chunks are missing, and result manifests to assemble, each with the current time. Out: the
//! tensor bytes in manifest order, for the same intake checks as an inline result.
//!
//! Invariants: every staged chunk hashes to its name; a node assembles only chunks it uploaded
//! itself (naming another node's chunk hashes gets it nothing); staged bytes stay within the
//! per-node and overall limits; a node's chunks are dropped `ttl_ms` after its last upload
//! activity, or released once a result naming them has been judged. A refused request stages
//! nothing.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use corex_core::chunk::{MIN_UPLOAD_CHUNK_SIZE, Manifest};
use corex_core::hash::Hashed;
use corex_core::{Hash, NodeId};

use crate::config::CoordinatorConfig;
use crate::error::CoordinatorError;

/// The bounds that keep uploads from filling the coordinator's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    pub max_chunk_bytes: usize,
    pub max_node_bytes: usize,
    pub max_total_bytes: usize,
    pub ttl_ms: u64,
}

impl UploadLimits {
    pub fn of(config: &CoordinatorConfig) -> Self {
        Self {
            max_chunk_bytes: config.max_upload_chunk_bytes,
            max_node_bytes: config.max_staged_bytes_per_node,
            max_total_bytes: config.max_staged_bytes,
            ttl_ms: config.upload_ttl_ms,
        }
    }

    /// Most chunks one result can have: the largest result cut into the smallest chunks.
    fn max_chunks(&self) -> usize {
        self.max_node_bytes.div_ceil(MIN_UPLOAD_CHUNK_SIZE)
    }
}

#[derive(Debug, Default)]
struct NodeUploads {
    chunks: BTreeMap<Hash, Bytes>,
    bytes: usize,
    /// When the node last staged, asked about or submitted chunks: expiry counts from here.
    active_ms: u64,
}

#[derive(Debug)]
pub struct UploadStore {
    limits: UploadLimits,
    nodes: BTreeMap<NodeId, NodeUploads>,
    /// Sum of every node's staged bytes.
    staged_bytes: usize,
}

impl UploadStore {
    pub fn new(limits: UploadLimits) -> Self {
        Self {
            limits,
            nodes: BTreeMap::new(),
            staged_bytes: 0,
        }
    }

    /// Stages `bytes` for `node` under `claimed`, which they must hash to. Staging a chunk the
    /// node already has only renews its uploads' expiry.
    pub fn stage(
        &mut self,
        node: NodeId,
        claimed: Hash,
        chunk: Hashed<Bytes>,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let actual = chunk.hash();
        let bytes = chunk.into_bytes();
        if bytes.is_empty() {
            return Err(CoordinatorError::MalformedBody(
                "an upload chunk must not be empty".into(),
            ));
        }
        if bytes.len() > self.limits.max_chunk_bytes {
            return Err(CoordinatorError::BodyTooLarge {
                limit: self.limits.max_chunk_bytes,
            });
        }
        if actual != claimed {
            return Err(CoordinatorError::ChunkHashMismatch { claimed, actual });
        }
        self.expire(now_ms);
        let staged = self.nodes.get(&node).map_or(0, |uploads| uploads.bytes);
        if let Some(uploads) = self.nodes.get_mut(&node)
            && uploads.chunks.contains_key(&claimed)
        {
            uploads.active_ms = now_ms;
            return Ok(());
        }
        let would_stage = staged + bytes.len();
        if would_stage > self.limits.max_node_bytes {
            return Err(CoordinatorError::UploadQuota {
                node: node.short(),
                would_stage,
                limit: self.limits.max_node_bytes,
            });
        }
        if self.staged_bytes + bytes.len() > self.limits.max_total_bytes {
            return Err(CoordinatorError::UploadsFull {
                limit: self.limits.max_total_bytes,
            });
        }
        self.staged_bytes += bytes.len();
        let uploads = self.nodes.entry(node).or_default();
        uploads.bytes += bytes.len();
        uploads.active_ms = now_ms;
        uploads.chunks.insert(claimed, bytes);
        Ok(())
    }

    /// The chunks of `chunks` not staged for `node`, in the order asked, without repeats.
    pub fn missing(
        &mut self,
        node: NodeId,
        chunks: &[Hash],
        now_ms: u64,
    ) -> Result<Vec<Hash>, CoordinatorError> {
        if chunks.len() > self.limits.max_chunks() {
            return Err(CoordinatorError::MalformedBody(format!(
                "asks about {} chunks; a result has at most {}",
                chunks.len(),
                self.limits.max_chunks()
            )));
        }
        self.expire(now_ms);
        let staged = self.nodes.get_mut(&node);
        let missing = match staged {
            Some(uploads) => {
                uploads.active_ms = now_ms;
                distinct(chunks)
                    .filter(|chunk| !uploads.chunks.contains_key(chunk))
                    .collect()
            }
            None => distinct(chunks).collect(),
        };
        Ok(missing)
    }

    /// The tensor `manifest` describes, from the chunks `node` staged. Refused, changing
    /// nothing, when the manifest is out of bounds or inconsistent, names a chunk `node` has
    /// not staged (all such chunks are named), or a staged chunk's length does not fit the cut.
    pub fn assemble(&self, node: NodeId, manifest: &Manifest) -> Result<Vec<u8>, CoordinatorError> {
        let chunk_size = manifest.chunk_size as usize;
        if !(MIN_UPLOAD_CHUNK_SIZE..=self.limits.max_chunk_bytes).contains(&chunk_size) {
            return Err(CoordinatorError::BadManifest(format!(
                "chunk size {chunk_size} is outside {MIN_UPLOAD_CHUNK_SIZE}..={}",
                self.limits.max_chunk_bytes
            )));
        }
        if manifest.total_bytes > self.limits.max_node_bytes as u64 {
            return Err(CoordinatorError::BadManifest(format!(
                "{} bytes is more than the {} a node may upload",
                manifest.total_bytes, self.limits.max_node_bytes
            )));
        }
        if !manifest.is_consistent() {
            return Err(CoordinatorError::BadManifest(
                "its hash, size and chunk count do not agree".into(),
            ));
        }
        let empty = BTreeMap::new();
        let staged = self
            .nodes
            .get(&node)
            .map_or(&empty, |uploads| &uploads.chunks);
        let missing: Vec<Hash> = distinct(&manifest.chunks)
            .filter(|chunk| !staged.contains_key(chunk))
            .collect();
        if !missing.is_empty() {
            return Err(CoordinatorError::MissingChunks(missing));
        }
        let mut tensor = Vec::with_capacity(manifest.total_bytes as usize);
        for (index, hash) in manifest.chunks.iter().enumerate() {
            let chunk = staged
                .get(hash)
                .ok_or_else(|| CoordinatorError::MissingChunks(vec![*hash]))?;
            let expected = manifest.range_of(index).len();
            if chunk.len() != expected {
                return Err(CoordinatorError::BadManifest(format!(
                    "chunk {index} ({hash}) is {} bytes; the manifest's cut needs {expected}",
                    chunk.len()
                )));
            }
            tensor.extend_from_slice(chunk);
        }
        Ok(tensor)
    }

    /// Drops `node`'s staged `chunks` (the result naming them has been judged).
    pub fn release(&mut self, node: NodeId, chunks: &[Hash]) {
        let Some(uploads) = self.nodes.get_mut(&node) else {
            return;
        };
        for chunk in chunks {
            if let Some(bytes) = uploads.chunks.remove(chunk) {
                uploads.bytes -= bytes.len();
                self.staged_bytes -= bytes.len();
            }
        }
        if uploads.chunks.is_empty() {
            self.nodes.remove(&node);
        }
    }

    /// Drops the uploads of every node idle for longer than the expiry.
    pub fn expire(&mut self, now_ms: u64) {
        let ttl_ms = self.limits.ttl_ms;
        let mut freed = 0;
        self.nodes.retain(|_, uploads| {
            let live = now_ms.saturating_sub(uploads.active_ms) <= ttl_ms;
            if !live {
                freed += uploads.bytes;
            }
            live
        });
        self.staged_bytes -= freed;
    }
}

/// `chunks` in order, each once.
fn distinct(chunks: &[Hash]) -> impl Iterator<Item = Hash> + '_ {
    let mut seen = BTreeSet::new();
    chunks
        .iter()
        .copied()
        .filter(move |chunk| seen.insert(*chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: NodeId = NodeId([1; 32]);
    const OTHER: NodeId = NodeId([2; 32]);

    fn store() -> UploadStore {
        UploadStore::new(UploadLimits {
            max_chunk_bytes: 2048,
            max_node_bytes: 8192,
            max_total_bytes: 12_288,
            ttl_ms: 1_000,
        })
    }

    fn stage_all(store: &mut UploadStore, node: NodeId, blob: &[u8], manifest: &Manifest) {
        for index in 0..manifest.chunks.len() {
            let chunk = Hashed::new(Bytes::copy_from_slice(&blob[manifest.range_of(index)]));
            store
                .stage(node, manifest.chunks[index], chunk, 0)
                .expect("staged");
        }
    }

    #[test]
    fn a_staged_result_assembles_to_its_bytes_and_release_frees_them() {
        let mut store = store();
        let blob: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let manifest = Manifest::of(&blob, 1024);
        assert_eq!(
            store
                .missing(NODE, &manifest.chunks, 0)
                .expect("asked")
                .len(),
            5
        );
        stage_all(&mut store, NODE, &blob[..], &manifest);
        assert!(
            store
                .missing(NODE, &manifest.chunks, 0)
                .expect("asked")
                .is_empty()
        );
        assert_eq!(store.assemble(NODE, &manifest).expect("assembled"), blob);
        store.release(NODE, &manifest.chunks);
        assert_eq!(store.staged_bytes, 0);
        assert!(store.nodes.is_empty());
    }

    #[test]
    fn a_node_cannot_assemble_chunks_another_node_uploaded() {
        let mut store = store();
        let blob = vec![3u8; 3000];
        let manifest = Manifest::of(&blob, 1024);
        stage_all(&mut store, NODE, &blob, &manifest);
        let refused = store
            .assemble(OTHER, &manifest)
            .expect_err("not its chunks");
        assert_eq!(refused.code(), "missing_chunks");
        // Two distinct chunks: the two full ones are equal, the last is shorter.
        assert!(matches!(refused, CoordinatorError::MissingChunks(ref named) if named.len() == 2));
    }

    #[test]
    fn bad_chunks_and_bad_manifests_are_refused_without_staging_anything() {
        let mut store = store();
        let chunk = Hashed::new(Bytes::from(vec![9u8; 100]));
        let refused = store
            .stage(NODE, Hash::of(b"something else"), chunk.clone(), 0)
            .expect_err("wrong hash");
        assert_eq!(refused.code(), "chunk_hash_mismatch");
        let big = Hashed::new(Bytes::from(vec![9u8; 2049]));
        let refused = store.stage(NODE, big.hash(), big, 0).expect_err("big");
        assert_eq!(refused.code(), "body_too_large");
        let refused = store.stage(NODE, Hash::of(b""), Hashed::new(Bytes::new()), 0);
        assert_eq!(refused.expect_err("empty").code(), "malformed_body");
        assert_eq!(store.staged_bytes, 0);

        let blob = vec![1u8; 4096];
        let mut lying = Manifest::of(&blob, 1024);
        lying.total_bytes = 4000;
        assert_eq!(
            store.assemble(NODE, &lying).expect_err("lies").code(),
            "bad_manifest"
        );
        let tiny = Manifest::of(&blob, 512);
        assert_eq!(
            store.assemble(NODE, &tiny).expect_err("tiny").code(),
            "bad_manifest"
        );
        let huge = Manifest::of(&vec![1u8; 9000], 2048);
        assert_eq!(
            store.assemble(NODE, &huge).expect_err("huge").code(),
            "bad_manifest"
        );
    }

    #[test]
    fn staging_stays_within_the_node_and_overall_limits_and_expires() {
        let mut store = store();
        let chunk = |seed: u8| Hashed::new(Bytes::from(vec![seed; 2048]));
        for seed in 0..4 {
            store
                .stage(NODE, chunk(seed).hash(), chunk(seed), 0)
                .expect("fits");
        }
        // The same chunk again costs nothing; a fifth one is over the node's limit.
        store
            .stage(NODE, chunk(0).hash(), chunk(0), 0)
            .expect("again");
        let refused = store.stage(NODE, chunk(4).hash(), chunk(4), 0);
        assert_eq!(refused.expect_err("node limit").code(), "upload_quota");
        for seed in 10..12 {
            store
                .stage(OTHER, chunk(seed).hash(), chunk(seed), 0)
                .expect("fits");
        }
        let third = NodeId([3; 32]);
        let refused = store.stage(third, chunk(20).hash(), chunk(20), 0);
        assert_eq!(refused.expect_err("overall limit").code(), "uploads_full");
        assert_eq!(store.staged_bytes, 12_288);

        // Activity renews a node's uploads; idle ones expire.
        store.missing(OTHER, &[], 900).expect("asked");
        store.expire(1_500);
        assert_eq!(store.staged_bytes, 4096);
        store
            .stage(third, chunk(20).hash(), chunk(20), 1_500)
            .expect("room again");
    }
}
