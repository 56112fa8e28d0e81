//! Inference: the logits of a model for a list of samples, a forward pass on the plain device
//! (no autodiff) in fixed-size batches. The work of an inference job's fragments, and
//! the first half of [`evaluate`](crate::evaluate).

use burn::tensor::Device;
use corex_core::ModelSpec;

use crate::backend::Backend;
use crate::dataset::Dataset;
use crate::error::MlError;
use crate::model::{Batch, Network, read_floats};
use crate::params::check_inputs;

/// Values per forward pass (samples × rows × classes), about 32 MiB of logits.
const PREDICT_VALUES: usize = 8 << 20;

/// Samples per forward pass of `spec`.
pub(crate) fn chunk_samples(spec: &ModelSpec) -> usize {
    let rows = spec.window().map_or(1, |window| window - 1);
    (PREDICT_VALUES / (rows * spec.classes()).max(1)).clamp(1, 1024)
}

/// Every logits row of a checked batch: one per sample, or one per position of each window.
pub(crate) fn forward_rows(
    spec: &ModelSpec,
    model: &Network,
    data: &Dataset,
    indices: &[u32],
    device: &Device,
) -> Result<Vec<f32>, MlError> {
    let batch = Batch::gather(spec, data, indices, device)?;
    let rows = read_floats(model.forward(batch.input)?)?;
    let per_sample = spec.window().map_or(1, |window| window - 1);
    if rows.len() != indices.len() * per_sample * spec.classes() {
        return Err(MlError::Shape(format!(
            "forward returned {} logits for {} samples",
            rows.len(),
            indices.len()
        )));
    }
    Ok(rows)
}

/// The logits of the model `params` for the samples `indices` of `data`: `indices.len() ×
/// classes` f32, row-major, in the order of `indices`; for a language model, the next-byte
/// logits after each whole window's context. Deterministic (same inputs, same bits).
pub fn predict(
    backend: &Backend,
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
) -> Result<Vec<f32>, MlError> {
    check_inputs(spec, params, data, indices)?;
    let device = backend.device();
    let model = Network::from_flat(spec, params, &device)?;
    let classes = spec.classes();
    let per_sample = spec.window().map_or(1, |window| window - 1);
    let mut logits = Vec::with_capacity(indices.len() * classes);
    for chunk in indices.chunks(chunk_samples(spec)) {
        let rows = forward_rows(spec, &model, data, chunk, &device)?;
        for sample in rows.chunks(per_sample * classes) {
            logits.extend_from_slice(&sample[(per_sample - 1) * classes..]);
        }
    }
    Ok(logits)
}

/// The label each [`predict`] row is scored against: the class, or the byte after the window's
/// context.
pub fn prediction_labels(spec: &ModelSpec, data: &Dataset, indices: &[u32]) -> Vec<u32> {
    match (spec.window(), data.text()) {
        (Some(window), Some(bytes)) => indices
            .iter()
            .map(|&start| u32::from(bytes[start as usize + window - 1]))
            .collect(),
        _ => indices
            .iter()
            .filter_map(|&index| data.label_of(index as usize))
            .collect(),
    }
}
