//! A job's data, made ready before the job starts and off the engine lock: the train/test
//! split, tabular features standardized on the training split's statistics when the spec asks
//! for it, the compact encoding nodes fetch chunk by chunk and its name. All the heavy work of
//! starting a job happens here, on a blocking thread.

use std::sync::Arc;

use corex_core::chunk::{DATASET_CHUNK_SIZE, Manifest};
use corex_core::{DatasetSource, Hash, JobSpec, Standardization};
use corex_ml::{Dataset, DatasetKind, Split};

use crate::error::CoordinatorError;

/// A job's data, ready to run.
#[derive(Debug)]
pub struct PreparedData {
    /// What the nodes compute on (standardized when asked).
    pub dataset: Arc<Dataset>,
    pub split: Split,
    /// The dataset's name: for one that travels, the root of its blob's chunk manifest (so a
    /// node checks every chunk it fetches against the job's dataset hash); else the content
    /// hash of its encoding.
    pub hash: Hash,
    /// The encoding nodes fetch as a blob, cut into chunks of `DATASET_CHUNK_SIZE`; none for
    /// the built-in digits (every node has them) and for a federated job (there `dataset` is
    /// the owner's validation data).
    pub encoded: Option<(Vec<u8>, Manifest)>,
    /// The statistics the features were standardized with.
    pub standardization: Option<Standardization>,
}

/// Splits, scales and encodes `dataset` for `spec` (validated). Heavy: run it off the lock.
/// `inherited` is the standardization of the model an inference job runs (from its weights):
/// the data is scaled with those statistics, never refitted.
pub fn prepare(
    spec: &JobSpec,
    dataset: Arc<Dataset>,
    inherited: Option<Standardization>,
) -> Result<PreparedData, CoordinatorError> {
    let invalid = |error: corex_ml::MlError| CoordinatorError::InvalidSpec(error.to_string());
    corex_ml::check_dataset(&spec.model, &dataset).map_err(invalid)?;
    let split = dataset.split_for(
        &spec.model,
        spec.dataset.test_fraction,
        spec.dataset.split_seed,
    );
    if split.train.is_empty() || split.test.is_empty() {
        return Err(CoordinatorError::InvalidSpec(
            "the dataset is too small to split into train and test".into(),
        ));
    }
    let statistics = match inherited {
        Some(statistics) => Some(statistics),
        None if spec.dataset.standardizes() && dataset.kind() == DatasetKind::Tabular => {
            Some(corex_ml::fit_standardization(&dataset, &split.train).map_err(invalid)?)
        }
        None => None,
    };
    let (dataset, standardization) = match statistics {
        Some(statistics) => {
            let scaled = corex_ml::standardize(&dataset, &statistics).map_err(invalid)?;
            (Arc::new(scaled), Some(statistics))
        }
        None => (dataset, None),
    };
    let travels = spec.federated.is_none() && spec.dataset.source != DatasetSource::Digits;
    let (hash, encoded) = if travels {
        let bytes = dataset.to_bytes();
        let manifest = Manifest::of(&bytes, DATASET_CHUNK_SIZE);
        (manifest.hash, Some((bytes, manifest)))
    } else {
        (Hash(dataset.content_hash()), None)
    };
    Ok(PreparedData {
        dataset,
        split,
        hash,
        encoded,
        standardization,
    })
}
