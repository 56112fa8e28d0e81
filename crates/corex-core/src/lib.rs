//! Shared vocabulary of Corex: ids, hashes, signatures, job specs and protocol messages.
//!
//! This crate is pure: no I/O, no clock, no randomness. Every other room speaks these types.

pub mod budget;
mod built_in_jobs;
pub mod chunk;
pub mod compression;
pub mod device;
pub mod error;
pub mod federated;
pub mod feedback_state;
pub mod fragment;
pub mod hash;
pub mod identity;
pub mod job;
pub mod messages;
pub mod model;
pub mod model_update;
pub mod request_signature;
pub mod result_frame;
pub mod scaling;
pub mod spec;
pub mod tensor;
pub mod trace;
pub mod work;

pub use budget::{ResourceLimits, ResourceUse};
pub use device::{ComputeBackend, GpuAdapter};
pub use error::{DecodeError, SpecError};
pub use federated::{DataHolder, FederatedSpec, PrivacySpec};
pub use fragment::{Fragment, FragmentKind};
pub use hash::Hash;
pub use identity::{Keypair, NodeId, Signature};
pub use job::JobSpec;
pub use model::{CnnSpec, MlpSpec, ModelSpec, ParamInit, ParamTensor, TransformerSpec};
pub use scaling::Standardization;
pub use spec::{
    AggregationSpec, DatasetSource, DatasetSpec, FeatureScaling, Granularity, LearningRateSchedule,
    OptimizerSpec, PackagedDataset,
};
pub use work::{MAX_LOCAL_STEPS, MAX_OUTPUT_VALUES, TransformSpec, WorkSpec};
