//! Fragment execution and aggregation: the gradient of the mean cross-entropy over a list of
//! samples (burn autodiff on the node's backend, any model family), and the sample-weighted mean of fragment
//! gradients that the coordinator applies.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Tensor;
use corex_core::{AggregationSpec, ModelSpec};
use corex_verify::VerifyError;

use crate::backend::Backend;
use crate::dataset::Dataset;
use crate::error::MlError;
use crate::model::{Batch, Network, read_floats};
use crate::params::{check_finite, check_inputs, sample_count};

/// What a node returns for one gradient fragment.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientOutput {
    /// Gradient of the mean loss, in the flat parameter layout.
    pub gradient: Vec<f32>,
    /// Mean cross-entropy over the fragment's samples (at the given parameters).
    pub loss: f32,
    /// Number of samples the mean is over (`indices.len()`, duplicates counted).
    pub samples: u32,
}

/// The gradient of the mean cross-entropy of the model `params` over the samples `indices` of
/// `data`. Inputs are validated first; the computation is deterministic (same inputs, same
/// bits).
pub fn compute_gradient(
    backend: &Backend,
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
) -> Result<GradientOutput, MlError> {
    check_inputs(spec, params, data, indices)?;
    let samples = sample_count(indices)?;

    let device = backend.autodiff();
    let model = Network::from_flat(spec, params, &device)?;
    let batch = Batch::gather(spec, data, indices, &device)?;
    let loss: Tensor<1> = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(model.forward(batch.input)?, batch.targets);
    let grads = loss.backward();
    let loss = scalar(loss)?;
    let gradient = model.gradient_flat(spec, &grads)?;
    finish(gradient, loss, samples)
}

/// The value of a one-element loss tensor.
pub(crate) fn scalar(loss: Tensor<1>) -> Result<f32, MlError> {
    read_floats(loss)?
        .first()
        .copied()
        .ok_or_else(|| MlError::Backend("loss tensor is empty".into()))
}

/// A fragment's output, once its loss and every value are checked finite.
pub(crate) fn finish(
    gradient: Vec<f32>,
    loss: f32,
    samples: u32,
) -> Result<GradientOutput, MlError> {
    if !loss.is_finite() {
        return Err(MlError::Backend(format!("loss is {loss}")));
    }
    check_finite(&gradient)?;
    Ok(GradientOutput {
        gradient,
        loss,
        samples,
    })
}

/// `Σ nᵢ gᵢ / Σ nᵢ` over `(gᵢ, nᵢ)` parts, accumulated in `f64` in the given order (so the
/// result is deterministic), rounded to `f32` once at the end: `corex_verify::aggregate`'s
/// mean, the one the coordinator applies. Errors on no parts, mismatched lengths, zero total
/// weight or a non-finite result.
pub fn weighted_mean(parts: &[(&[f32], u32)]) -> Result<Vec<f32>, MlError> {
    let mean =
        corex_verify::aggregate(&AggregationSpec::Mean, parts).map_err(|error| match error {
            VerifyError::Empty => MlError::Empty("no gradient parts to average".into()),
            VerifyError::Shape { .. } => MlError::Shape(error.to_string()),
            VerifyError::Parameter(reason) => MlError::Empty(reason),
        })?;
    check_finite(&mean)?;
    Ok(mean)
}
