//! One fragment of any work kind, run and checked: what a node computes, what an audit
//! replays, and the shape an untrusted result must have.
//!
//! In: the job's work and model spec, the round's parameters, the dataset and the fragment's
//! sample indices. Out: the result tensor (an update of the parameter count for training
//! work, `samples × width` rows for output work), the fragment's mean loss and its sample
//! count. Deterministic: the same inputs give the same bits.

use corex_core::{ModelSpec, WorkSpec};

use crate::backend::Backend;
use crate::dataset::Dataset;
use crate::error::MlError;
use crate::evaluate::score_predictions;
use crate::gradient::{GradientOutput, compute_gradient};
use crate::inference::{predict, prediction_labels};
use crate::local_steps::compute_local_steps;
use crate::params::{check_dataset, check_finite, check_spec, check_tensor, sample_count};
use crate::transform::apply_transform;

/// What a node returns for one fragment.
#[derive(Debug, Clone, PartialEq)]
pub struct FragmentOutput {
    /// The result tensor: a gradient or pseudo-gradient (flat parameter layout), logits or
    /// transformed rows (row-major, one row per sample in the fragment's order).
    pub values: Vec<f32>,
    /// Mean loss over the fragment's samples: the training loss, the predictions'
    /// cross-entropy for inference, 0 for a transform (which has no loss).
    pub loss: f32,
    /// Number of samples (`indices.len()`, duplicates counted).
    pub samples: u32,
}

impl From<GradientOutput> for FragmentOutput {
    fn from(output: GradientOutput) -> Self {
        Self {
            values: output.gradient,
            loss: output.loss,
            samples: output.samples,
        }
    }
}

/// Runs one fragment of a job whose fragments do `work` on `backend`, at parameters `params` (ignored by a
/// transform, which has no model).
pub fn run_fragment(
    backend: &Backend,
    work: &WorkSpec,
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
) -> Result<FragmentOutput, MlError> {
    let samples = sample_count(indices)?;
    let output = match work {
        WorkSpec::Gradient => compute_gradient(backend, spec, params, data, indices)?.into(),
        WorkSpec::LocalSteps { steps, inner } => {
            compute_local_steps(backend, spec, params, data, indices, *steps, inner)?.into()
        }
        WorkSpec::Inference { .. } => {
            let logits = predict(backend, spec, params, data, indices)?;
            let labels = prediction_labels(spec, data, indices);
            let loss = score_predictions(&logits, &labels, spec.classes())?.loss;
            FragmentOutput {
                values: logits,
                loss,
                samples,
            }
        }
        WorkSpec::Transform { transform } => {
            check_spec(spec)?;
            check_dataset(spec, data)?;
            data.check_indices(indices)?;
            let width = spec.feature_width().ok_or_else(|| {
                MlError::Spec(format!("the {} family has no feature rows", spec.family()))
            })?;
            let (features, _) = data.gather(indices);
            FragmentOutput {
                values: apply_transform(transform, &features, width)?,
                loss: 0.0,
                samples,
            }
        }
    };
    if !output.loss.is_finite() {
        return Err(MlError::Backend(format!("loss is {}", output.loss)));
    }
    check_finite(&output.values)?;
    Ok(output)
}

/// Checks an untrusted result for a fragment of `samples` samples of `work`: its length (the
/// parameter count for training work, `samples × width` for output work) and that every
/// value is finite; the first bad index is reported.
pub fn check_result(
    work: &WorkSpec,
    spec: &ModelSpec,
    samples: usize,
    values: &[f32],
) -> Result<(), MlError> {
    if work.trains() {
        return check_tensor(spec, values);
    }
    let expected = work.result_len(spec, samples);
    if values.len() != expected {
        return Err(MlError::OutputLength {
            expected,
            got: values.len(),
            samples,
        });
    }
    check_finite(values)
}
