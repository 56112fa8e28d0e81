//! Per-example gradient clipping for the MLP family, without per-example gradients in memory.
//!
//! In: parameters (flat layout), a batch of samples and a clip norm C. Out: `Σᵢ cᵢ gᵢ`, the
//! sum of every sample's loss gradient `gᵢ` scaled by `cᵢ = min(1, C / ‖gᵢ‖₂)`, in the flat
//! layout. Invariant: every sample's contribution has L2 norm at most C (up to f32 rounding),
//! whatever the sample holds — the sensitivity bound DP-SGD's noise is calibrated to.
//!
//! For a linear layer `z = a W + b`, sample i's gradient is the outer product `aᵢᵀ δᵢ` (weight)
//! and `δᵢ` (bias), where `δᵢ = ∂lossᵢ/∂zᵢ`. So `‖gᵢ‖² = Σ_layers (‖aᵢ‖² + 1) ‖δᵢ‖²` comes from
//! the activations and back-propagated deltas alone (Goodfellow 2015, "Efficient per-example
//! gradient computations"), and the clipped sum is one matrix product per layer,
//! `aᵀ diag(c) δ`. One batched forward and backward pass, like an ordinary step, plus the
//! norms. The loss is softmax cross-entropy, so the last layer's delta is
//! `softmax(zᵢ) − onehot(yᵢ)`; ReLU passes deltas where its output is positive.

use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor, TensorData};
use corex_core::MlpSpec;

use crate::dataset::Dataset;
use crate::error::MlError;
use crate::model::{append_tensor, read_floats};
use crate::params::{LayerSlot, layer_slots};

/// `Σᵢ min(1, clip_norm / ‖gᵢ‖) gᵢ` over the samples `batch` of `data` (flat layout; zeros for
/// an empty batch). `params` and `batch` must have been checked against `spec` and `data`.
pub(crate) fn clipped_gradient_sum(
    spec: &MlpSpec,
    params: &[f32],
    data: &Dataset,
    batch: &[u32],
    clip_norm: f64,
) -> Result<Vec<f32>, MlError> {
    if batch.is_empty() {
        let parameters = layer_slots(spec)
            .iter()
            .map(|slot| slot.weight_len() + slot.fan_out)
            .sum();
        return Ok(vec![0.0; parameters]);
    }
    let device = Device::flex();
    let slots = layer_slots(spec);
    let weights: Vec<(Tensor<2>, Tensor<1>)> = slots
        .iter()
        .map(|slot| layer_tensors(slot, params, &device))
        .collect();
    let (features, labels) = data.gather(batch);
    let rows = batch.len();

    // Forward: `inputs[l]` is layer l's input activation `[rows, fan_in]`.
    let mut inputs = vec![Tensor::<2>::from_data(
        TensorData::new(features, [rows, spec.input]),
        &device,
    )];
    let mut logits = None;
    for (index, (weight, bias)) in weights.iter().enumerate() {
        let output = linear(inputs[index].clone(), weight.clone(), Some(bias.clone()));
        if index + 1 < weights.len() {
            inputs.push(relu(output));
        } else {
            logits = Some(output);
        }
    }
    let logits = logits.ok_or_else(|| MlError::Shape("model without layers".into()))?;

    // Backward: `deltas[l]` is ∂lossᵢ/∂z for layer l's output, row i per sample.
    let mut delta = softmax(logits, 1) - one_hot(&labels, spec.classes, &device)?;
    let mut deltas = Vec::with_capacity(weights.len());
    for index in (1..weights.len()).rev() {
        let previous = delta
            .clone()
            .matmul(weights[index].0.clone().transpose())
            .mask_fill(inputs[index].clone().lower_equal_elem(0.0), 0.0);
        deltas.push(delta);
        delta = previous;
    }
    deltas.push(delta);
    deltas.reverse();

    let factors = clip_factors(&inputs, &deltas, clip_norm)?;
    let factors = Tensor::<2>::from_data(TensorData::new(factors, [rows, 1]), &device);
    let mut sum = Vec::with_capacity(params.len());
    for ((slot, input), delta) in slots.iter().zip(inputs).zip(deltas) {
        let scaled = delta * factors.clone();
        append_tensor(
            &mut sum,
            input.transpose().matmul(scaled.clone()),
            slot.weight_len(),
        )?;
        append_tensor(&mut sum, scaled.sum_dim(0), slot.fan_out)?;
    }
    Ok(sum)
}

/// `min(1, clip_norm / ‖gᵢ‖)` per sample, from `‖gᵢ‖² = Σ_l (‖aᵢ‖² + 1) ‖δᵢ‖²`.
fn clip_factors(
    inputs: &[Tensor<2>],
    deltas: &[Tensor<2>],
    clip_norm: f64,
) -> Result<Vec<f32>, MlError> {
    let squared_norms = inputs
        .iter()
        .zip(deltas)
        .map(|(input, delta)| {
            input.clone().square().sum_dim(1).add_scalar(1.0) * delta.clone().square().sum_dim(1)
        })
        .reduce(|total, layer| total + layer)
        .ok_or_else(|| MlError::Shape("model without layers".into()))?;
    read_floats(squared_norms)?
        .into_iter()
        .map(|squared| {
            let norm = f64::from(squared).sqrt();
            if !norm.is_finite() {
                return Err(MlError::Backend(format!(
                    "per-example gradient norm is {norm}"
                )));
            }
            Ok(if norm > clip_norm {
                (clip_norm / norm) as f32
            } else {
                1.0
            })
        })
        .collect()
}

/// Weight `[fan_in, fan_out]` and bias `[fan_out]` of one layer, on `device`.
fn layer_tensors(slot: &LayerSlot, params: &[f32], device: &Device) -> (Tensor<2>, Tensor<1>) {
    (
        Tensor::from_data(
            TensorData::new(slot.weight(params).to_vec(), [slot.fan_in, slot.fan_out]),
            device,
        ),
        Tensor::from_data(
            TensorData::new(slot.bias(params).to_vec(), [slot.fan_out]),
            device,
        ),
    )
}

/// `[rows, classes]` one-hot targets.
fn one_hot(labels: &[u32], classes: usize, device: &Device) -> Result<Tensor<2>, MlError> {
    let mut values = vec![0.0f32; labels.len() * classes];
    for (row, &label) in labels.iter().enumerate() {
        let label = label as usize;
        if label >= classes {
            return Err(MlError::Dataset(format!(
                "label {label} is not below the model's {classes} classes"
            )));
        }
        values[row * classes + label] = 1.0;
    }
    Ok(Tensor::from_data(
        TensorData::new(values, [labels.len(), classes]),
        device,
    ))
}
