//! What a job's fragments compute (`WorkSpec`, a job policy fixed for the whole job), and
//! what follows from it: the fragment kind, the result's length, the cost per sample.
//!
//! Two families. Training work (gradients, local steps) returns an update of the model's
//! parameter count, and the coordinator's optimizer steps on the round's aggregate. Output
//! work (inference, transforms) returns rows, one per sample of the fragment, at a model that
//! never changes; the job publishes the rows instead of weights. Every kind is a pure
//! function of the fragment, so an audit can replay it.

use serde::{Deserialize, Serialize};

use crate::FragmentKind;
use crate::error::SpecError;
use crate::hash::Hash;
use crate::model::ModelSpec;
use crate::spec::OptimizerSpec;

/// Most inner optimizer steps one local-steps fragment may ask for.
pub const MAX_LOCAL_STEPS: u32 = 1024;
/// Most quantization levels (codes stay exact integers in f32).
pub const MAX_QUANTIZE_LEVELS: u32 = 65_536;
/// Widest random projection.
pub const MAX_PROJECTION_OUTPUT: u32 = 4096;
/// Most entries (input × output) of a random projection's matrix, which every node and
/// auditor draws in memory (64 MiB of f32).
pub const MAX_PROJECTION_ENTRIES: usize = 1 << 24;
/// Most f32 values one fragment, or a whole job, of output work may produce (256 MiB): the
/// same bound as the largest model's update.
pub const MAX_OUTPUT_VALUES: usize = crate::model::MAX_PARAMETERS;

/// What each fragment of a job computes: a job policy, fixed for the whole job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkSpec {
    /// One gradient of the mean loss over the fragment's samples; the coordinator's optimizer
    /// steps on the mean of the round's gradients (exactly single-process training).
    #[default]
    Gradient,
    /// DiLoCo-style local training for slow links: the node splits the fragment's samples into
    /// `steps` consecutive micro-batches, takes one step of a fresh `inner` optimizer on each,
    /// and returns the pseudo-gradient `w_start − w_end`. The job's `optimizer` is then the
    /// outer optimizer (SGD with learning rate 1 and no momentum is plain model averaging).
    /// `steps` optimizer steps per transfer instead of one.
    LocalSteps { steps: u32, inner: OptimizerSpec },
    /// Predictions: the model's logits for each of the fragment's samples (`samples × classes`
    /// f32, row-major). The model is the safetensors blob `weights` already published on the
    /// coordinator (a finished training job's weights, say), or the job's seeded
    /// initialisation when `None`. Nothing trains.
    Inference {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights: Option<Hash>,
    },
    /// Data processing: a deterministic transform of each of the fragment's samples
    /// (`samples × output width` f32, row-major). No model is involved.
    Transform { transform: TransformSpec },
}

/// A deterministic per-sample transform of a data pipeline (computed in `corex-ml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransformSpec {
    /// Each feature, clamped to [0, 1], to its integer code `min(⌊x · levels⌋, levels − 1)`
    /// in `0..levels` (as f32): the same width as the input.
    Quantize { levels: u32 },
    /// The sample times a seeded Gaussian matrix `input × output` (entries N(0, 1/output)),
    /// which keeps distances within a small factor (Johnson–Lindenstrauss): `output` wide.
    RandomProjection { output: u32, seed: u64 },
}

impl TransformSpec {
    /// Values per transformed sample of `input` features.
    pub fn output_width(&self, input: usize) -> usize {
        match *self {
            Self::Quantize { .. } => input,
            Self::RandomProjection { output, .. } => output as usize,
        }
    }

    /// FLOPs of transforming one sample of `input` features.
    pub fn flops_per_sample(&self, input: usize) -> u64 {
        match *self {
            Self::Quantize { .. } => 4 * input as u64,
            Self::RandomProjection { output, .. } => 2 * input as u64 * u64::from(output),
        }
    }

    /// Refuses parameters the transform cannot run with on samples of `input` features.
    pub fn validate(&self, input: usize) -> Result<(), SpecError> {
        match *self {
            Self::Quantize { levels } if !(2..=MAX_QUANTIZE_LEVELS).contains(&levels) => {
                Err(SpecError::Invalid(format!(
                    "quantize levels {levels} is outside 2..={MAX_QUANTIZE_LEVELS}"
                )))
            }
            Self::RandomProjection { output, .. }
                if !(1..=MAX_PROJECTION_OUTPUT).contains(&output) =>
            {
                Err(SpecError::Invalid(format!(
                    "random projection output {output} is outside 1..={MAX_PROJECTION_OUTPUT}"
                )))
            }
            Self::RandomProjection { output, .. }
                if input.saturating_mul(output as usize) > MAX_PROJECTION_ENTRIES =>
            {
                Err(SpecError::Invalid(format!(
                    "a random projection of {input} features to {output} has more than {MAX_PROJECTION_ENTRIES} matrix entries"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl WorkSpec {
    /// The kind every fragment of a job with this work carries.
    pub fn fragment_kind(&self) -> FragmentKind {
        match self {
            Self::Gradient => FragmentKind::Gradient,
            Self::LocalSteps { .. } => FragmentKind::LocalSteps,
            Self::Inference { .. } => FragmentKind::Inference,
            Self::Transform { .. } => FragmentKind::Transform,
        }
    }

    /// Whether the job trains (results are model updates, the optimizer steps) rather than
    /// producing outputs at a fixed model.
    pub fn trains(&self) -> bool {
        matches!(self, Self::Gradient | Self::LocalSteps { .. })
    }

    /// Values per sample of an output result; `None` for training work, whose result is one
    /// update of the model's parameter count whatever the sample count.
    pub fn output_width(&self, model: &ModelSpec) -> Option<usize> {
        match self {
            Self::Gradient | Self::LocalSteps { .. } => None,
            Self::Inference { .. } => Some(model.classes()),
            Self::Transform { transform } => {
                Some(transform.output_width(model.feature_width().unwrap_or(0)))
            }
        }
    }

    /// The length of a correct result for a fragment of `samples` samples.
    pub fn result_len(&self, model: &ModelSpec, samples: usize) -> usize {
        self.output_width(model)
            .map_or(model.parameter_count(), |width| {
                width.saturating_mul(samples)
            })
    }

    /// FLOPs of one sample of a fragment: what the coordinator prices fragments by.
    pub fn flops_per_sample(&self, model: &ModelSpec) -> u64 {
        match self {
            Self::Gradient | Self::LocalSteps { .. } => model.train_flops_per_sample(),
            Self::Inference { .. } => 2 * model.forward_macs_per_sample(),
            Self::Transform { transform } => {
                transform.flops_per_sample(model.feature_width().unwrap_or(0))
            }
        }
    }

    pub fn validate(&self, model: &ModelSpec, fragment_samples: u32) -> Result<(), SpecError> {
        match self {
            Self::Gradient | Self::Inference { .. } => {}
            Self::LocalSteps { steps, inner } => {
                inner.validate()?;
                if *steps == 0 || *steps > MAX_LOCAL_STEPS || *steps > fragment_samples {
                    return Err(SpecError::Invalid(format!(
                        "local steps {steps} is outside 1..={MAX_LOCAL_STEPS} (and at most fragment_samples)"
                    )));
                }
            }
            Self::Transform { transform } => match model.feature_width() {
                Some(width) => transform.validate(width)?,
                None => {
                    return Err(SpecError::Invalid(format!(
                        "a transform needs feature vectors; the {} family reads byte windows",
                        model.family()
                    )));
                }
            },
        }
        if self.result_len(model, fragment_samples as usize) > MAX_OUTPUT_VALUES {
            return Err(SpecError::Invalid(format!(
                "a fragment of {fragment_samples} samples would return more than {MAX_OUTPUT_VALUES} values"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelSpec {
        ModelSpec::mlp(64, vec![32], 10)
    }

    #[test]
    fn result_lengths_follow_the_kind() {
        let model = model();
        assert_eq!(
            WorkSpec::Gradient.result_len(&model, 7),
            model.parameter_count()
        );
        assert_eq!(
            WorkSpec::Inference { weights: None }.result_len(&model, 7),
            70
        );
        let quantize = WorkSpec::Transform {
            transform: TransformSpec::Quantize { levels: 4 },
        };
        assert_eq!(quantize.result_len(&model, 7), 7 * 64);
        let projection = WorkSpec::Transform {
            transform: TransformSpec::RandomProjection { output: 8, seed: 1 },
        };
        assert_eq!(projection.result_len(&model, 7), 56);
        assert!(!projection.trains() && WorkSpec::Gradient.trains());
        assert_eq!(projection.flops_per_sample(&model), 2 * 64 * 8);
    }

    #[test]
    fn transforms_refuse_what_they_cannot_run() {
        let model = model();
        let transform = |transform| WorkSpec::Transform { transform };
        for bad in [
            TransformSpec::Quantize { levels: 1 },
            TransformSpec::Quantize {
                levels: MAX_QUANTIZE_LEVELS + 1,
            },
            TransformSpec::RandomProjection { output: 0, seed: 1 },
            TransformSpec::RandomProjection {
                output: MAX_PROJECTION_OUTPUT + 1,
                seed: 1,
            },
        ] {
            assert!(transform(bad).validate(&model, 16).is_err(), "{bad:?}");
        }
        let wide = ModelSpec::mlp(8192, vec![32], 10);
        let projection = transform(TransformSpec::RandomProjection {
            output: 4096,
            seed: 1,
        });
        assert!(projection.validate(&wide, 16).is_err(), "too many entries");
        assert!(projection.validate(&model, 16).is_ok());
        assert!(
            projection.validate(&model, 1 << 20).is_err(),
            "too many output values per fragment"
        );
    }
}
