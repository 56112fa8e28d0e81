//! On-disk staging of a download's verified chunks, so that a node restarted in the middle of a
//! download resumes it instead of starting over.
//!
//! Everything lives under the root the caller gives (the node's data directory):
//! `root/<blob hash>/<chunk hash>`. Every name is the hex of a hash the client checked itself,
//! never a name a peer sent, so nothing is written outside the root. A staged chunk is hashed
//! again when read back and removed if it no longer matches; it is written as
//! `<chunk hash>.part` and then renamed, so a crash never leaves half a chunk under a chunk's
//! name. Opening a blob's stage removes other blobs' partial downloads (a node needs only the
//! newest model version); a finished download removes its own. The same layout, opened with
//! [`ChunkStage::open_kept`], is the cache of chunks fetched one by one (`crate::sparse`),
//! which keeps every blob's.

use std::path::{Path, PathBuf};

use corex_core::Hash;

use crate::error::NetError;

/// The staged chunks of one blob.
#[derive(Debug)]
pub struct ChunkStage {
    dir: PathBuf,
}

impl ChunkStage {
    /// The stage of `blob` under `root`, made if absent; other blobs' stages are removed.
    pub async fn open(root: &Path, blob: &Hash) -> Result<Self, NetError> {
        remove_other_stages(root, blob).await;
        let dir = root.join(blob.to_hex());
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| NetError::Io {
                path: dir.clone(),
                source,
            })?;
        Ok(Self { dir })
    }

    /// The kept chunks of `blob` under `root`, made if absent; other blobs' are left alone
    /// (a cache of chunks that several jobs, or a restarted node, read again).
    pub async fn open_kept(root: &Path, blob: &Hash) -> Result<Self, NetError> {
        let dir = root.join(blob.to_hex());
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| NetError::Io {
                path: dir.clone(),
                source,
            })?;
        Ok(Self { dir })
    }

    /// The staged bytes of `chunk`, if they are there and still hash to it.
    pub async fn read(&self, chunk: &Hash) -> Option<Vec<u8>> {
        let path = self.dir.join(chunk.to_hex());
        let bytes = tokio::fs::read(&path).await.ok()?;
        if Hash::of(&bytes) == *chunk {
            return Some(bytes);
        }
        tracing::warn!(path = %path.display(), "a staged chunk no longer matches its hash; fetching it again");
        if let Err(error) = tokio::fs::remove_file(&path).await {
            tracing::warn!(path = %path.display(), %error, "could not remove a corrupt staged chunk");
        }
        None
    }

    /// Keeps `bytes`, which the caller checked hash to `chunk`.
    pub async fn keep(&self, chunk: &Hash, bytes: &[u8]) -> Result<(), NetError> {
        let path = self.dir.join(chunk.to_hex());
        let partial = self.dir.join(format!("{}.part", chunk.to_hex()));
        tokio::fs::write(&partial, bytes)
            .await
            .map_err(|source| NetError::Io {
                path: partial.clone(),
                source,
            })?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|source| NetError::Io { path, source })
    }

    /// Removes the stage once the blob is complete.
    pub async fn finish(self) -> Result<(), NetError> {
        tokio::fs::remove_dir_all(&self.dir)
            .await
            .map_err(|source| NetError::Io {
                path: self.dir,
                source,
            })
    }
}

/// Removes the stages of blobs other than `keep` under `root`: only folders whose name is the
/// hex of a hash, the names this module makes.
async fn remove_other_stages(root: &Path, keep: &Hash) {
    let Ok(mut entries) = tokio::fs::read_dir(root).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name();
        let Some(other) = name.to_str().and_then(|name| {
            name.parse::<Hash>()
                .ok()
                .filter(|hash| hash.to_hex() == name)
        }) else {
            continue;
        };
        if other != *keep
            && let Err(error) = tokio::fs::remove_dir_all(entry.path()).await
        {
            tracing::warn!(path = %entry.path().display(), %error, "could not remove a stale partial download");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn staged_chunks_are_checked_when_read_back_and_removed_when_done() {
        let root = tempfile::tempdir().expect("temp dir");
        let blob = Hash::of(b"blob");
        let chunk = b"chunk bytes".to_vec();
        let name = Hash::of(&chunk);
        let stage = ChunkStage::open(root.path(), &blob).await.expect("opened");
        assert_eq!(stage.read(&name).await, None);
        stage.keep(&name, &chunk).await.expect("kept");
        assert_eq!(stage.read(&name).await, Some(chunk));

        let path = root.path().join(blob.to_hex()).join(name.to_hex());
        std::fs::write(&path, b"altered on disk").expect("altered");
        assert_eq!(stage.read(&name).await, None);
        assert!(!path.exists(), "a corrupt staged chunk is removed");

        stage.finish().await.expect("finished");
        assert!(!root.path().join(blob.to_hex()).exists());
    }

    #[tokio::test]
    async fn opening_a_stage_removes_other_blobs_stages_and_nothing_else() {
        let root = tempfile::tempdir().expect("temp dir");
        let old = Hash::of(b"old model");
        let new = Hash::of(b"new model");
        ChunkStage::open(root.path(), &old).await.expect("opened");
        std::fs::write(root.path().join("node.key"), b"not ours").expect("written");
        ChunkStage::open(root.path(), &new).await.expect("opened");
        assert!(!root.path().join(old.to_hex()).exists());
        assert!(root.path().join(new.to_hex()).exists());
        assert!(root.path().join("node.key").exists());
    }
}
