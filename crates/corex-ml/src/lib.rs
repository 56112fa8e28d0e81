//! `corex-ml`: the machine-learning room of Corex — three model families (an MLP, a CNN and a
//! byte-level transformer language model) on burn's flex CPU backend or its wgpu GPU backend (`backend`, feature `wgpu`), datasets (tabular,
//! images, text) and their compact encoding, fragment execution (gradients, local steps,
//! differentially private local steps of the MLP and their privacy accountant, inference, data
//! transforms), aggregation, the coordinator's optimizer step, evaluation, text generation,
//! export, and a single-process reference trainer.
//!
//! # Parameter layout
//!
//! Parameters, gradients and everything that travels between nodes are a flat `Vec<f32>` in
//! the order of `ModelSpec::layout`: each tensor of the model, in its module's field order
//! (forward order), row-major. For an MLP that is, for each linear layer in forward order,
//! the weight `[fan_in][fan_out]` (element `(i, o)` at `i * fan_out + o`) then the bias
//! `[fan_out]`. One codec (`model::Network`) loads and reads every family in that order, so
//! aggregation, audits, transfers and exports never look at a family. Every loss is the mean
//! softmax cross-entropy over logits rows: one per sample of a classifier, one per position of
//! each window of the language model.
//!
//! # Determinism
//!
//! Initialisation and dataset splits use seeded ChaCha8 streams with portable sampling;
//! [`compute_gradient`] and [`predict`] return the same bits for the same inputs; the
//! transforms ([`apply_transform`]) are the same bits on every machine; [`weighted_mean`]
//! accumulates in `f64` in the order given. Nothing here uses burn's global RNG, and dropout
//! is off. [`compute_private_local_steps`] draws its samples and noise only from the generator
//! it is given (the node's secret one), so the same generator state gives the same bits.
//!
//! # Modules
//!
//! - `dataset`: [`Dataset`] kinds, accessors and the [`Split`]; `dataset_codec`: the compact
//!   record-major encoding, its content hash and [`EncodedLayout`] (one sample's bytes, and a
//!   dataset of just a fragment's samples); `loaders`: digits, CSV, IDX, text and packaged datasets;
//!   `scaling`: [`fit_standardization`], [`standardize`]; `synthetic`: generated text and
//!   images for tests and benchmarks.
//! - `params`: [`init_parameters`], [`check_tensor`]; `families`: the burn modules (private);
//!   `model`: the generic codec and batches (private).
//! - `gradient`: [`compute_gradient`], [`weighted_mean`].
//! - `local_steps`: [`compute_local_steps`] (DiLoCo-style pseudo-gradients), with the step
//!   checkpoints of a traced result and the replay of one segment of its steps.
//! - `inference`: [`predict`]; `generate`: [`generate_text`].
//! - `backend`: [`Backend`], the device fragments compute on; `probe`: [`time_matmul`],
//!   [`time_device_pass`], what `corex node bench` measures.
//! - `transform`: [`apply_transform`] (quantization, seeded random projection).
//! - `fragment`: [`run_fragment`], which runs a fragment of any work kind, and
//!   [`check_result`], the shape and finiteness of an untrusted result.
//! - `partition`: [`class_skewed_partition`] for federated experiments, CSV export.
//! - `private_steps`: [`compute_private_local_steps`] (DP-SGD local steps of a federated data
//!   holder, MLP family) and [`poisson_sample`]; `per_example`: per-example clipping (private).
//! - `privacy`: the accountant, [`epsilon`] of the Poisson-subsampled Gaussian mechanism.
//! - `trainer`: [`Trainer`], the coordinator's optimizer.
//! - `evaluate`: [`evaluate`], [`score_predictions`]; `baseline`: [`bigram_loss`], what a
//!   language model must beat.
//! - `reference`: [`train_reference`], the single-process baseline.
//! - `export`: [`to_safetensors`], [`from_safetensors`].
//! - `error`: [`MlError`].

mod backend;
mod baseline;
mod compute_thread;
mod dataset;
mod dataset_codec;
mod error;
mod evaluate;
mod export;
mod families;
mod fragment;
mod generate;
mod gradient;
mod inference;
mod loaders;
mod local_steps;
mod matmul;
mod model;
mod params;
mod partition;
mod per_example;
mod privacy;
mod private_steps;
mod probe;
mod reference;
mod scaling;
mod synthetic;
mod trainer;
mod transform;

pub use backend::Backend;
pub use baseline::bigram_loss;
pub use compute_thread::lower_current_thread_priority;
pub use corex_core::{
    DatasetSource, ModelSpec, OptimizerSpec, PrivacySpec, TransformSpec, WorkSpec,
};
pub use dataset::{Dataset, DatasetKind, ImageShape, MAX_IMAGE_CLASSES, Split};
pub use dataset_codec::EncodedLayout;
pub use error::MlError;
pub use evaluate::{Evaluation, evaluate, score_predictions};
pub use export::{
    MODEL_SPEC_KEY, STANDARDIZATION_KEY, from_safetensors, standardization_of, to_safetensors,
    to_safetensors_with,
};
pub use fragment::{FragmentOutput, check_result, run_fragment};
pub use generate::{MAX_GENERATED_BYTES, generate_text};
pub use gradient::{GradientOutput, compute_gradient, weighted_mean};
pub use inference::{predict, prediction_labels};
pub use local_steps::{
    TracedSteps, compute_local_steps, compute_traced_local_steps, displacement, replay_local_steps,
    replay_segment,
};
pub use matmul::matmul;
pub use params::{check_dataset, check_tensor, init_parameters};
pub use partition::class_skewed_partition;
pub use privacy::{PrivacySpent, RDP_ORDERS, epsilon};
pub use private_steps::{
    PrivateSteps, PrivateStepsSpec, compute_private_local_steps, poisson_sample,
};
pub use probe::{time_device_pass, time_matmul};
pub use reference::train_reference;
pub use scaling::{fit_standardization, standardize};
pub use trainer::{Trainer, TrainerState};
pub use transform::apply_transform;
