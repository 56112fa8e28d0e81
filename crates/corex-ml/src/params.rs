//! The flat parameter layout (see the crate header), seeded initialisation and validation of
//! untrusted parameter or gradient vectors.

use corex_core::ModelSpec;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::MlError;

/// Where one linear layer lives inside the flat vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerSlot {
    pub fan_in: usize,
    pub fan_out: usize,
    /// Offset of the `[fan_in][fan_out]` row-major weight block.
    pub weight_offset: usize,
    /// Offset of the `[fan_out]` bias block (right after the weights).
    pub bias_offset: usize,
}

impl LayerSlot {
    pub fn weight_len(&self) -> usize {
        self.fan_in * self.fan_out
    }

    pub fn weight<'a>(&self, flat: &'a [f32]) -> &'a [f32] {
        &flat[self.weight_offset..self.weight_offset + self.weight_len()]
    }

    pub fn bias<'a>(&self, flat: &'a [f32]) -> &'a [f32] {
        &flat[self.bias_offset..self.bias_offset + self.fan_out]
    }
}

/// The layer slots of `spec`, in forward order.
pub(crate) fn layer_slots(spec: &ModelSpec) -> Vec<LayerSlot> {
    let mut offset = 0;
    spec.layer_shapes()
        .into_iter()
        .map(|(fan_in, fan_out)| {
            let slot = LayerSlot {
                fan_in,
                fan_out,
                weight_offset: offset,
                bias_offset: offset + fan_in * fan_out,
            };
            offset += fan_in * fan_out + fan_out;
            slot
        })
        .collect()
}

/// Rejects specs the rest of the crate cannot build (zero widths, absurd sizes).
pub(crate) fn check_spec(spec: &ModelSpec) -> Result<(), MlError> {
    spec.validate()
        .map_err(|error| MlError::Spec(error.to_string()))
}

/// Initial parameters: every weight and bias of a layer drawn from `U(-k, k)`, `k = 1/√fan_in`
/// (PyTorch's `nn.Linear` default), from a ChaCha8 stream seeded with `seed`. Layers are drawn
/// in forward order, weights (row-major) before biases, so the result is the same on every
/// machine.
pub fn init_parameters(spec: &ModelSpec, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(spec.parameter_count());
    for (fan_in, fan_out) in spec.layer_shapes() {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        for _ in 0..fan_in * fan_out + fan_out {
            // 53 random bits → uniform in [0, 1), then affine map to [-k, k).
            let unit = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            values.push((bound * (2.0 * unit - 1.0)) as f32);
        }
    }
    values
}

/// Checks an untrusted parameter (or gradient) vector: its length must be the spec's parameter
/// count and every value finite; the first bad index is reported.
pub fn check_tensor(spec: &ModelSpec, values: &[f32]) -> Result<(), MlError> {
    let expected = spec.parameter_count();
    if values.len() != expected {
        return Err(MlError::ParameterCount {
            expected,
            got: values.len(),
        });
    }
    check_finite(values)
}

/// Reports the first non-finite value.
pub(crate) fn check_finite(values: &[f32]) -> Result<(), MlError> {
    // A branch-free pass over everything (it vectorizes); the index is looked up only on failure.
    if values
        .iter()
        .fold(true, |finite, value| finite & value.is_finite())
    {
        return Ok(());
    }
    match values.iter().position(|value| !value.is_finite()) {
        Some(index) => Err(MlError::NonFinite { index }),
        None => Ok(()),
    }
}

/// The common input validation of everything that runs a model on data: a runnable spec,
/// well-formed parameters, a dataset of matching dimensions and in-range, non-empty indices.
pub(crate) fn check_inputs(
    spec: &ModelSpec,
    params: &[f32],
    data: &crate::Dataset,
    indices: &[u32],
) -> Result<(), MlError> {
    check_spec(spec)?;
    check_tensor(spec, params)?;
    check_dataset(spec, data)?;
    data.check_indices(indices)
}

/// The dataset must have the model's input width and no class the model cannot output.
pub(crate) fn check_dataset(spec: &ModelSpec, data: &crate::Dataset) -> Result<(), MlError> {
    if data.feature_count() != spec.input {
        return Err(MlError::Dataset(format!(
            "dataset has {} features, the model expects {}",
            data.feature_count(),
            spec.input
        )));
    }
    if data.class_count() > spec.classes {
        return Err(MlError::Dataset(format!(
            "dataset has {} classes, the model outputs only {}",
            data.class_count(),
            spec.classes
        )));
    }
    Ok(())
}

/// How many samples `indices` names, as the `u32` a fragment output counts them in.
pub(crate) fn sample_count(indices: &[u32]) -> Result<u32, MlError> {
    u32::try_from(indices.len())
        .map_err(|_| MlError::Shape(format!("{} indices do not fit u32", indices.len())))
}
