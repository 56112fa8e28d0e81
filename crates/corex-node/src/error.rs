//! The error type of the node agent.

use corex_core::Hash;
use corex_net::NetError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("job {job}: the local dataset hashes to {local}, the job names {expected}")]
    DatasetMismatch {
        job: Hash,
        local: Hash,
        expected: Hash,
    },
    #[error(
        "job {0} names a dataset this node does not hold and the coordinator published no dataset blob"
    )]
    NoDatasetBlob(Hash),
    #[error("job {job}: its shared dataset is unusable: {reason}")]
    BadDataset { job: Hash, reason: String },
    #[error("model version {0} is not a whole f32 tensor")]
    BadModel(Hash),
    #[error("the update to model version {model} is refused: {reason}")]
    ModelUpdate { model: Hash, reason: String },
    #[error("fragment computation failed: {0}")]
    Compute(String),
    #[error("fragment {fragment} is for data holder {holder}, not this node")]
    NotTheHolder { fragment: Hash, holder: String },
    #[error("this node is a data holder of job {0} but has no local data (give --local-data PATH)")]
    NoLocalData(Hash),
    #[error(
        "job {job} declares {declared} local samples for this node, its local data has {local}"
    )]
    LocalSampleCount {
        job: Hash,
        declared: u32,
        local: usize,
    },
}
