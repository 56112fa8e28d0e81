//! Inference: the logits of a model for a list of samples, a forward pass on the plain flex
//! device (no autodiff) in fixed-size batches. The work of an inference job's fragments, and
//! the first half of [`evaluate`](crate::evaluate).

use burn::tensor::Device;
use corex_core::ModelSpec;

use crate::dataset::Dataset;
use crate::error::MlError;
use crate::model::{Mlp, batch_tensors, read_floats};
use crate::params::check_inputs;

/// Samples per forward pass.
const PREDICT_BATCH: usize = 1024;

/// The logits of the model `params` for the samples `indices` of `data`: `indices.len() ×
/// classes` f32, row-major, in the order of `indices`. Deterministic (same inputs, same bits).
pub fn predict(
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
) -> Result<Vec<f32>, MlError> {
    check_inputs(spec, params, data, indices)?;
    let device = Device::flex();
    let model = Mlp::from_flat(spec, params, &device);
    let mut logits = Vec::with_capacity(indices.len() * spec.classes);
    for chunk in indices.chunks(PREDICT_BATCH) {
        let (features, labels) = data.gather(chunk);
        let (x, _) = batch_tensors(features, &labels, spec.input, &device);
        let batch = read_floats(model.forward(x))?;
        if batch.len() != chunk.len() * spec.classes {
            return Err(MlError::Shape(format!(
                "forward returned {} logits for {} samples × {} classes",
                batch.len(),
                chunk.len(),
                spec.classes
            )));
        }
        logits.extend_from_slice(&batch);
    }
    Ok(logits)
}
