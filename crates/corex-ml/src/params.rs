//! The flat parameter layout (see the crate header), seeded initialisation and validation of
//! untrusted parameter or gradient vectors, and of a dataset against a model.

use corex_core::{MlpSpec, ModelSpec, ParamInit};
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

/// The layer slots of an MLP, in forward order.
pub(crate) fn layer_slots(spec: &MlpSpec) -> Vec<LayerSlot> {
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

/// Initial parameters: every tensor of [`ModelSpec::layout`] in order, element by element
/// (row-major), from one ChaCha8 stream seeded with `seed`: uniform tensors draw 53 random bits
/// per value mapped to `[-bound, bound)` (linear and convolution weights and biases:
/// `bound = 1/√fan_in`, PyTorch's default), norms start at 1 (scales) and 0 (shifts) without
/// drawing. The result is the same on every machine; for an MLP it is the historic one.
pub fn init_parameters(spec: &ModelSpec, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(spec.parameter_count());
    for tensor in spec.layout() {
        let count = tensor.len();
        match tensor.init {
            ParamInit::Uniform { bound } => {
                for _ in 0..count {
                    let unit = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
                    values.push((bound * (2.0 * unit - 1.0)) as f32);
                }
            }
            ParamInit::Ones => values.extend(std::iter::repeat_n(1.0, count)),
            ParamInit::Zeros => values.extend(std::iter::repeat_n(0.0, count)),
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
/// well-formed parameters, a dataset the family can read and in-range, non-empty indices
/// (whole windows for a language model).
pub(crate) fn check_inputs(
    spec: &ModelSpec,
    params: &[f32],
    data: &crate::Dataset,
    indices: &[u32],
) -> Result<(), MlError> {
    check_spec(spec)?;
    check_tensor(spec, params)?;
    check_dataset(spec, data)?;
    data.check_indices_within(indices, spec.window().unwrap_or(1))
}

/// The dataset must be of a kind the family reads, with the model's input shape and no class
/// the model cannot output.
pub fn check_dataset(spec: &ModelSpec, data: &crate::Dataset) -> Result<(), MlError> {
    use crate::DatasetKind;
    let mismatch = |what: String| Err(MlError::Dataset(what));
    match (spec, data.kind()) {
        (ModelSpec::Transformer(lm), DatasetKind::Text) => {
            if data.len() <= lm.context {
                return mismatch(format!(
                    "a text of {} bytes holds no window of {} bytes",
                    data.len(),
                    lm.context + 1
                ));
            }
            return Ok(());
        }
        (ModelSpec::Transformer(_), kind) => {
            return mismatch(format!("a language model reads text, not {kind:?} data"));
        }
        (ModelSpec::Cnn(cnn), DatasetKind::Images) => {
            let shape = data.image_shape();
            let wanted = (cnn.channels, cnn.height, cnn.width);
            if shape.map(|s| (s.channels, s.height, s.width)) != Some(wanted) {
                return mismatch(format!(
                    "the images are {shape:?}, the model expects {wanted:?} (channels, height, width)"
                ));
            }
        }
        (ModelSpec::Cnn(_), kind) => {
            return mismatch(format!("a cnn reads images, not {kind:?} data"));
        }
        (ModelSpec::Mlp(_), DatasetKind::Text) => {
            return mismatch("an mlp reads feature vectors, not text".into());
        }
        (ModelSpec::Mlp(mlp), _) => {
            if data.feature_count() != mlp.input {
                return mismatch(format!(
                    "dataset has {} features, the model expects {}",
                    data.feature_count(),
                    mlp.input
                ));
            }
        }
    }
    if data.class_count() > spec.classes() {
        return mismatch(format!(
            "dataset has {} classes, the model outputs only {}",
            data.class_count(),
            spec.classes()
        ));
    }
    Ok(())
}

/// How many samples `indices` names, as the `u32` a fragment output counts them in.
pub(crate) fn sample_count(indices: &[u32]) -> Result<u32, MlError> {
    u32::try_from(indices.len())
        .map_err(|_| MlError::Shape(format!("{} indices do not fit u32", indices.len())))
}
