//! Fragment execution and aggregation: the gradient of the mean cross-entropy over a list of
//! samples (burn autodiff on the flex CPU backend), and the sample-weighted mean of fragment
//! gradients that the coordinator applies.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Tensor};
use corex_core::ModelSpec;

use crate::dataset::Dataset;
use crate::error::MlError;
use crate::model::{Mlp, append_tensor, batch_tensors, read_floats};
use crate::params::{check_finite, check_inputs, layer_slots};

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
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
) -> Result<GradientOutput, MlError> {
    check_inputs(spec, params, data, indices)?;
    let samples = u32::try_from(indices.len())
        .map_err(|_| MlError::Shape(format!("{} indices do not fit u32", indices.len())))?;

    let device = Device::flex().autodiff();
    let model = Mlp::from_flat(spec, params, &device);
    let (features, labels) = data.gather(indices);
    let (x, y) = batch_tensors(features, &labels, spec.input, &device);
    let loss: Tensor<1> = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(model.forward(x), y);
    let grads = loss.backward();
    let loss = read_floats(loss)?
        .first()
        .copied()
        .ok_or_else(|| MlError::Backend("loss tensor is empty".into()))?;

    let mut gradient = Vec::with_capacity(params.len());
    for (slot, layer) in layer_slots(spec).iter().zip(&model.layers) {
        let weight_grad = layer
            .weight
            .val()
            .grad(&grads)
            .ok_or_else(|| MlError::Backend("no gradient for a weight".into()))?;
        append_tensor(&mut gradient, weight_grad, slot.weight_len())?;
        let bias_grad = layer
            .bias
            .as_ref()
            .and_then(|bias| bias.val().grad(&grads))
            .ok_or_else(|| MlError::Backend("no gradient for a bias".into()))?;
        append_tensor(&mut gradient, bias_grad, slot.fan_out)?;
    }
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
/// result is deterministic), rounded to `f32` once at the end. Errors on no parts, mismatched
/// lengths, zero total weight or a non-finite result.
pub fn weighted_mean(parts: &[(&[f32], u32)]) -> Result<Vec<f32>, MlError> {
    let Some((first, _)) = parts.first() else {
        return Err(MlError::Empty("no gradient parts to average".into()));
    };
    let len = first.len();
    if let Some((index, (part, _))) = parts
        .iter()
        .enumerate()
        .find(|(_, (part, _))| part.len() != len)
    {
        return Err(MlError::Shape(format!(
            "gradient part {index} has {} values, part 0 has {len}",
            part.len()
        )));
    }
    let total: u64 = parts.iter().map(|(_, count)| u64::from(*count)).sum();
    if total == 0 {
        return Err(MlError::Empty("gradient parts cover zero samples".into()));
    }
    let mut sum = vec![0.0f64; len];
    for (part, count) in parts {
        let weight = f64::from(*count);
        for (acc, value) in sum.iter_mut().zip(part.iter()) {
            *acc += weight * f64::from(*value);
        }
    }
    let total = total as f64;
    let mean: Vec<f32> = sum.into_iter().map(|acc| (acc / total) as f32).collect();
    check_finite(&mean)?;
    Ok(mean)
}
