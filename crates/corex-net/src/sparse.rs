//! Chunk-by-chunk access to a blob: a node reads only the chunks it needs of a large blob (a
//! shared dataset), each checked against the manifest whose root names the blob, and keeps
//! them on disk by hash (`root/<blob>/<chunk>`, see `crate::stage`) so that a later job on the
//! same data, or the node after a restart, reads them from disk instead of the network.

use bytes::Bytes;
use corex_core::Hash;
use corex_core::chunk::Manifest;

use crate::client::CoordinatorClient;
use crate::error::NetError;
use crate::stage::ChunkStage;

/// Where a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOrigin {
    /// The chunk cache on disk (checked against its hash as it was read).
    Cache,
    /// The coordinator.
    Network,
}

impl CoordinatorClient {
    /// The manifest of blob `hash`, checked to be consistent and to be named `hash`.
    pub async fn blob_manifest(&self, hash: &Hash) -> Result<Manifest, NetError> {
        let manifest: Manifest = self
            .call_json("GET", &format!("/v1/blobs/{hash}"), Vec::new())
            .await?;
        if manifest.hash != *hash || !manifest.is_consistent() {
            return Err(NetError::Integrity(format!(
                "manifest for blob {} is inconsistent",
                hash.short()
            )));
        }
        Ok(manifest)
    }

    /// Chunk `index` of blob `hash` alone, checked against `manifest` (which must be the one
    /// [`Self::blob_manifest`] returned): from the chunk cache when it holds it, else fetched
    /// (retried like any download chunk) and kept there. A cache that cannot be written only
    /// costs a later fetch.
    pub async fn fetch_cached_chunk(
        &self,
        hash: &Hash,
        manifest: &Manifest,
        index: usize,
    ) -> Result<(Bytes, ChunkOrigin), NetError> {
        let Some(expected) = manifest.chunks.get(index) else {
            return Err(NetError::Integrity(format!(
                "blob {} has no chunk {index}",
                hash.short()
            )));
        };
        let cache = match self.chunk_cache() {
            Some(root) => match ChunkStage::open_kept(root, hash).await {
                Ok(cache) => Some(cache),
                Err(error) => {
                    tracing::warn!(%error, "cannot open the chunk cache; fetching into memory only");
                    None
                }
            },
            None => None,
        };
        if let Some(cache) = &cache
            && let Some(bytes) = cache.read(expected).await
            && bytes.len() == manifest.range_of(index).len()
        {
            return Ok((Bytes::from(bytes), ChunkOrigin::Cache));
        }
        let chunk = self.fetch_chunk(hash, index, expected).await?;
        if chunk.len() != manifest.range_of(index).len() {
            return Err(NetError::Integrity(format!(
                "chunk {index} of blob {} has the wrong length",
                hash.short()
            )));
        }
        if let Some(cache) = &cache
            && let Err(error) = cache.keep(expected, &chunk).await
        {
            tracing::warn!(%error, "could not keep a fetched chunk in the cache");
        }
        Ok((chunk, ChunkOrigin::Network))
    }
}
