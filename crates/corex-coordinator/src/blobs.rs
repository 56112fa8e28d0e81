//! Published blobs (model versions, trained weights, shared datasets), named by their manifest root and served
//! as chunks without copying. Only the versions that nodes may still need stay in memory.
//!
//! Blobs are named by their content, so two jobs can publish the same one (two jobs of one
//! model and seed start from the same `w_0`): each publication holds a reference, each
//! [`BlobStore::retire`] lets one go, and a blob leaves when its last holder retires it.

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
    /// Each blob with the number of publications that hold it.
    blobs: BTreeMap<Hash, (Blob, usize)>,
}

impl BlobStore {
    /// Publishes `bytes` and returns their name (the manifest root); the caller holds a
    /// reference to them until it retires them.
    pub fn publish(&mut self, bytes: Vec<u8>) -> Hash {
        let (hash, new) = self.publish_if_new(bytes);
        if !new && let Some((_, holders)) = self.blobs.get_mut(&hash) {
            *holders += 1;
        }
        hash
    }

    /// Publishes `bytes` unless a blob of the same name is there already: their name, and
    /// whether this call added them (only then does its caller hold a reference, and only then
    /// may it retire them).
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
        let blob = Blob {
            bytes: Bytes::from(bytes),
            manifest: Arc::new(manifest),
        };
        self.blobs.insert(hash, (blob, 1));
        (hash, true)
    }

    /// Lets go of one reference to `hash`; the blob leaves with its last one.
    pub fn retire(&mut self, hash: &Hash) {
        if let Some((_, holders)) = self.blobs.get_mut(hash) {
            *holders -= 1;
            if *holders == 0 {
                self.blobs.remove(hash);
            }
        }
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
            .map(|(blob, _)| blob)
            .ok_or(CoordinatorError::UnknownBlob(*hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_two_holders_published_stays_until_both_retire_it() {
        let mut store = BlobStore::default();
        let first = store.publish(vec![7; 100]);
        let second = store.publish(vec![7; 100]);
        assert_eq!(first, second);
        store.retire(&first);
        assert!(store.get(&first).is_ok(), "the other holder still needs it");
        store.retire(&second);
        assert!(store.get(&first).is_err());
        let (hash, new) = store.publish_if_new(vec![1; 10]);
        assert!(new);
        assert!(!store.publish_if_new(vec![1; 10]).1);
        store.retire(&hash);
        assert!(
            store.get(&hash).is_err(),
            "publish_if_new holds only when it adds"
        );
    }
}
