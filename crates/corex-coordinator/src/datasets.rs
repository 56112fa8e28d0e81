//! The datasets jobs train on, and where they may come from: the built-in digits, datasets
//! job owners uploaded (kept by content hash with the owners who uploaded them), and CSV
//! files by plain name from the one directory the operator allows. Never a path from a spec.
//!
//! In: decoded uploads from authenticated, admitted owners; dataset names from specs. Out: the
//! dataset a job runs on, or a refusal that names the dataset but never repeats its contents.
//! Invariant: an owner reaches only datasets it uploaded itself (another owner's dataset is
//! as unknown as one that does not exist), and a named file is read only when it lies inside
//! the operator's directory and within the size limit.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use corex_core::{Hash, NodeId};
use corex_ml::Dataset;

use crate::error::CoordinatorError;

/// A dataset some owners uploaded.
#[derive(Debug)]
struct UploadedDataset {
    dataset: Arc<Dataset>,
    /// Size of its encoding: what it costs each owner's storage quota.
    bytes: u64,
    owners: BTreeSet<NodeId>,
}

/// The uploaded datasets, by content hash.
#[derive(Debug, Default)]
pub struct DatasetRegistry {
    uploaded: BTreeMap<Hash, UploadedDataset>,
}

impl DatasetRegistry {
    /// Records that `owner` uploaded `dataset` (`bytes` long encoded); returns its content hash.
    pub fn register(&mut self, owner: NodeId, dataset: Arc<Dataset>, bytes: u64) -> Hash {
        let hash = Hash(dataset.content_hash());
        self.uploaded
            .entry(hash)
            .or_insert_with(|| UploadedDataset {
                dataset,
                bytes,
                owners: BTreeSet::new(),
            })
            .owners
            .insert(owner);
        hash
    }

    /// The dataset `owner` uploaded under `hash`.
    pub fn uploaded_by(
        &self,
        owner: &NodeId,
        hash: &Hash,
    ) -> Result<Arc<Dataset>, CoordinatorError> {
        self.uploaded
            .get(hash)
            .filter(|entry| entry.owners.contains(owner))
            .map(|entry| entry.dataset.clone())
            .ok_or_else(|| {
                CoordinatorError::UnknownDataset(format!(
                    "{} was not uploaded by this key (POST /v1/datasets first)",
                    hash.short()
                ))
            })
    }

    /// Bytes of the datasets `owner` uploaded.
    pub fn stored_bytes(&self, owner: &NodeId) -> u64 {
        self.uploaded
            .values()
            .filter(|entry| entry.owners.contains(owner))
            .map(|entry| entry.bytes)
            .sum()
    }
}

/// Reads the CSV dataset `name` from the operator's directory `dir` (blocking I/O: call it off
/// the async threads). The spec has already checked that `name` is a plain file name; this
/// also refuses a name whose real path leaves the directory (a symbolic link out of it), one
/// that is not a regular file, and one larger than `max_bytes`.
pub fn read_named(
    dir: Option<&Path>,
    name: &str,
    label_column: Option<&str>,
    max_bytes: usize,
) -> Result<Dataset, CoordinatorError> {
    let unknown = |why: &str| CoordinatorError::UnknownDataset(format!("{name:?}: {why}"));
    let dir = dir.ok_or_else(|| unknown("this coordinator serves no named datasets"))?;
    let root = dir
        .canonicalize()
        .map_err(|_| unknown("the operator's dataset directory is not readable"))?;
    let path = root
        .join(name)
        .canonicalize()
        .map_err(|_| unknown("no such dataset"))?;
    if path.parent() != Some(root.as_path()) {
        return Err(unknown("no such dataset"));
    }
    let file = std::fs::File::open(&path).map_err(|_| unknown("no such dataset"))?;
    let metadata = file.metadata().map_err(|_| unknown("no such dataset"))?;
    if !metadata.is_file() {
        return Err(unknown("no such dataset"));
    }
    if metadata.len() > max_bytes as u64 {
        return Err(CoordinatorError::Dataset(format!(
            "{name:?} is {} bytes, above the limit of {max_bytes}",
            metadata.len()
        )));
    }
    // The file may grow after the check: read at most one byte past the limit.
    let mut text = Vec::new();
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|_| unknown("not readable"))?;
    if text.len() > max_bytes {
        return Err(CoordinatorError::Dataset(format!(
            "{name:?} is larger than the limit of {max_bytes} bytes"
        )));
    }
    Dataset::from_csv_reader(&text[..], label_column, name)
        .map_err(|error| CoordinatorError::Dataset(error.to_string()))
}

/// Decodes an uploaded dataset encoding (blocking: call it off the async threads).
pub fn decode_upload(bytes: &[u8]) -> Result<Dataset, CoordinatorError> {
    Dataset::from_bytes(bytes).map_err(|error| CoordinatorError::Dataset(error.to_string()))
}

#[cfg(test)]
mod tests {
    use corex_core::Keypair;

    use super::*;

    #[test]
    fn names_outside_the_directory_are_unknown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok.csv"), "a,y\n1,0\n2,1\n").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), "a,y\n1,0\n").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link.csv")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let read = |name: &str| read_named(Some(dir.path()), name, None, 1 << 20);
        assert_eq!(read("ok.csv").unwrap().len(), 2);
        for name in ["link.csv", "sub", "missing.csv", "../ok.csv"] {
            let error = read(name).unwrap_err();
            assert_eq!(error.code(), "unknown_dataset", "{name}: {error}");
        }
        assert!(read_named(None, "ok.csv", None, 1 << 20).is_err());
        let too_big = read_named(Some(dir.path()), "ok.csv", None, 4).unwrap_err();
        assert_eq!(too_big.code(), "dataset");
    }

    #[test]
    fn an_owner_reaches_only_what_it_uploaded() {
        let mut registry = DatasetRegistry::default();
        let (alice, bob) = (
            Keypair::from_secret([1; 32]).id(),
            Keypair::from_secret([2; 32]).id(),
        );
        let data = Arc::new(Dataset::from_parts(vec![1.0, 2.0], vec![0, 1], 1, 2).unwrap());
        let hash = registry.register(alice, data, 100);
        assert!(registry.uploaded_by(&alice, &hash).is_ok());
        assert!(registry.uploaded_by(&bob, &hash).is_err());
        assert_eq!(
            (registry.stored_bytes(&alice), registry.stored_bytes(&bob)),
            (100, 0)
        );
    }
}
