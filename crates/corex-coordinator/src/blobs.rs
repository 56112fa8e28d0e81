//! Published blobs (model versions, trained weights, shared datasets), named by their manifest root and served
//! as chunks without copying. Only the versions that nodes may still need stay in memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use corex_core::Hash;
use corex_core::chunk::{CHUNK_SIZE, Manifest};

use crate::error::CoordinatorError;

#[derive(Debug, Clone)]
pub struct Blob {
    pub bytes: Bytes,
    pub manifest: Arc<Manifest>,
}

#[derive(Debug, Default)]
pub struct BlobStore {
    blobs: BTreeMap<Hash, Blob>,
}

impl BlobStore {
    /// Publishes `bytes` and returns their name (the manifest root).
    pub fn publish(&mut self, bytes: Vec<u8>) -> Hash {
        self.publish_if_new(bytes).0
    }

    /// Publishes `bytes` unless a blob of the same name is there already: their name, and
    /// whether this call added them (only then may its caller retire them).
    pub fn publish_if_new(&mut self, bytes: Vec<u8>) -> (Hash, bool) {
        let manifest = Manifest::of(&bytes, CHUNK_SIZE);
        self.publish_cut(bytes, manifest)
    }

    /// Publishes `bytes` already cut into `manifest` (`Manifest::of` over them, taken off the
    /// lock), unless a blob of the same name is there already; see [`Self::publish_if_new`].
    pub fn publish_cut(&mut self, bytes: Vec<u8>, manifest: Manifest) -> (Hash, bool) {
        debug_assert_eq!(manifest.total_bytes, bytes.len() as u64);
        if self.blobs.contains_key(&manifest.hash) {
            return (manifest.hash, false);
        }
        let hash = manifest.hash;
        self.blobs.insert(
            hash,
            Blob {
                bytes: Bytes::from(bytes),
                manifest: Arc::new(manifest),
            },
        );
        (hash, true)
    }

    pub fn retire(&mut self, hash: &Hash) {
        self.blobs.remove(hash);
    }

    pub fn manifest(&self, hash: &Hash) -> Result<Arc<Manifest>, CoordinatorError> {
        self.get(hash).map(|blob| blob.manifest.clone())
    }

    pub fn chunk(&self, hash: &Hash, index: usize) -> Result<Bytes, CoordinatorError> {
        let blob = self.get(hash)?;
        if index >= blob.manifest.chunks.len() {
            return Err(CoordinatorError::UnknownChunk { blob: *hash, index });
        }
        Ok(blob.bytes.slice(blob.manifest.range_of(index)))
    }

    pub fn get(&self, hash: &Hash) -> Result<&Blob, CoordinatorError> {
        self.blobs
            .get(hash)
            .ok_or(CoordinatorError::UnknownBlob(*hash))
    }
}
