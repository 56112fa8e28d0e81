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
    #[error("model version {0} is not a whole f32 tensor")]
    BadModel(Hash),
    #[error("fragment computation failed: {0}")]
    Compute(String),
}
