//! `corex-ml`: the machine-learning room of Corex — the MLP model family on burn's flex CPU
//! backend, datasets, fragment execution (gradients, local steps, differentially private local
//! steps and their privacy accountant, inference, data transforms), aggregation, the
//! coordinator's optimizer step, evaluation, export, and a single-process reference trainer.
//!
//! # Parameter layout
//!
//! Parameters, gradients and everything that travels between nodes are a flat `Vec<f32>`.
//! For each linear layer of [`ModelSpec::layer_shapes`] in forward order: the weight
//! `[fan_in][fan_out]` row-major (element `(i, o)` at `i * fan_out + o`), then the bias
//! `[fan_out]`. The model computes `relu(x W + b)` for every layer but the last, which
//! yields the logits; the loss is the mean softmax cross-entropy.
//!
//! # Determinism
//!
//! Initialisation and dataset splits use seeded ChaCha8 streams with portable sampling;
//! [`compute_gradient`] and [`predict`] return the same bits for the same inputs; the
//! transforms ([`apply_transform`]) are the same bits on every machine; [`weighted_mean`]
//! accumulates in `f64` in the order given. Nothing here uses burn's global RNG.
//! [`compute_private_local_steps`] draws its samples and noise only from the generator it is
//! given (the node's secret one), so the same generator state gives the same bits.
//!
//! # Modules
//!
//! - `dataset`: [`Dataset`] loading, hashing and [`Split`]ting.
//! - `params`: layout, [`init_parameters`], [`check_tensor`].
//! - `model`: the burn module (private).
//! - `gradient`: [`compute_gradient`], [`weighted_mean`].
//! - `local_steps`: [`compute_local_steps`] (DiLoCo-style pseudo-gradients), with the step
//!   checkpoints of a traced result and the replay of one segment of its steps.
//! - `inference`: [`predict`], the logits of a batch.
//! - `transform`: [`apply_transform`] (quantization, seeded random projection).
//! - `fragment`: [`run_fragment`], which runs a fragment of any work kind, and
//!   [`check_result`], the shape and finiteness of an untrusted result.
//! - `partition`: [`class_skewed_partition`] for federated experiments, CSV export.
//! - `private_steps`: [`compute_private_local_steps`] (DP-SGD local steps of a federated data
//!   holder) and [`poisson_sample`].
//! - `per_example`: per-example gradient clipping for DP-SGD (private).
//! - `privacy`: the accountant, [`epsilon`] of the Poisson-subsampled Gaussian mechanism.
//! - `trainer`: [`Trainer`], the coordinator's optimizer.
//! - `evaluate`: [`evaluate`], [`score_predictions`].
//! - `reference`: [`train_reference`], the single-process baseline.
//! - `export`: [`to_safetensors`], [`from_safetensors`].
//! - `error`: [`MlError`].

mod dataset;
mod error;
mod evaluate;
mod export;
mod fragment;
mod gradient;
mod inference;
mod local_steps;
mod matmul;
mod model;
mod params;
mod partition;
mod per_example;
mod privacy;
mod private_steps;
mod reference;
mod trainer;
mod transform;

pub use corex_core::{
    DatasetSource, ModelSpec, OptimizerSpec, PrivacySpec, TransformSpec, WorkSpec,
};
pub use dataset::{Dataset, Split};
pub use error::MlError;
pub use evaluate::{Evaluation, evaluate, score_predictions};
pub use export::{MODEL_SPEC_KEY, from_safetensors, to_safetensors};
pub use fragment::{FragmentOutput, check_result, run_fragment};
pub use gradient::{GradientOutput, compute_gradient, weighted_mean};
pub use inference::predict;
pub use local_steps::{
    TracedSteps, compute_local_steps, compute_traced_local_steps, displacement, replay_local_steps,
    replay_segment,
};
pub use matmul::matmul;
pub use params::{check_tensor, init_parameters};
pub use partition::class_skewed_partition;
pub use privacy::{PrivacySpent, RDP_ORDERS, epsilon};
pub use private_steps::{
    PrivateSteps, PrivateStepsSpec, compute_private_local_steps, poisson_sample,
};
pub use reference::train_reference;
pub use trainer::Trainer;
pub use transform::apply_transform;
