//! The burn module of the MLP family: `Linear → ReLU → … → Linear` (logits), plus the
//! conversions between the module and the flat parameter layout.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use corex_core::ModelSpec;

use crate::error::MlError;
use crate::params::layer_slots;

/// An MLP classifier; `layers[i]` has weight `[fan_in, fan_out]` and bias `[fan_out]`.
#[derive(Module, Debug)]
pub(crate) struct Mlp {
    pub layers: Vec<Linear>,
}

impl Mlp {
    /// Builds the module on `device` from a flat vector that has already passed
    /// [`check_tensor`](crate::check_tensor) for `spec`.
    pub fn from_flat(spec: &ModelSpec, params: &[f32], device: &Device) -> Mlp {
        let layers = layer_slots(spec)
            .iter()
            .map(|slot| Linear {
                weight: Param::from_data(
                    TensorData::new(slot.weight(params).to_vec(), [slot.fan_in, slot.fan_out]),
                    device,
                ),
                bias: Some(Param::from_data(
                    TensorData::new(slot.bias(params).to_vec(), [slot.fan_out]),
                    device,
                )),
            })
            .collect();
        Mlp { layers }
    }

    /// Logits `[batch, classes]` of a `[batch, input]` batch.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        let mut x = input;
        for (index, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if index < last {
                x = relu(x);
            }
        }
        x
    }

    /// Reads the parameters back into the flat layout.
    pub fn to_flat(&self, spec: &ModelSpec) -> Result<Vec<f32>, MlError> {
        let slots = layer_slots(spec);
        if slots.len() != self.layers.len() {
            return Err(MlError::Shape(format!(
                "module has {} layers, the spec {}",
                self.layers.len(),
                slots.len()
            )));
        }
        let mut flat = Vec::with_capacity(spec.parameter_count());
        for (slot, layer) in slots.iter().zip(&self.layers) {
            let bias = layer
                .bias
                .as_ref()
                .ok_or_else(|| MlError::Shape("layer without bias".into()))?;
            append_tensor(&mut flat, layer.weight.val(), slot.weight_len())?;
            append_tensor(&mut flat, bias.val(), slot.fan_out)?;
        }
        Ok(flat)
    }
}

/// Reads a float tensor to the host and appends it, checking its element count. The values are
/// copied out of the tensor's host buffer once, without first becoming a `Vec` of their own.
pub(crate) fn append_tensor<const D: usize>(
    out: &mut Vec<f32>,
    tensor: Tensor<D>,
    expected: usize,
) -> Result<(), MlError> {
    let data = tensor
        .try_into_data()
        .map_err(|error| MlError::Backend(format!("reading a tensor: {error:?}")))?;
    let values = data
        .as_slice::<f32>()
        .map_err(|error| MlError::Backend(format!("tensor is not f32: {error:?}")))?;
    if values.len() != expected {
        return Err(MlError::Shape(format!(
            "tensor has {} values, expected {expected}",
            values.len()
        )));
    }
    out.extend_from_slice(values);
    Ok(())
}

/// Reads a float tensor back to the host as `f32`.
pub(crate) fn read_floats<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, MlError> {
    tensor
        .try_into_data()
        .map_err(|error| MlError::Backend(format!("reading a tensor: {error:?}")))?
        .try_into_vec::<f32>()
        .map_err(|error| MlError::Backend(format!("tensor is not f32: {error:?}")))
}

/// Uploads a gathered batch: features `[n, input]` and integer targets `[n]`.
pub(crate) fn batch_tensors(
    features: Vec<f32>,
    labels: &[u32],
    input: usize,
    device: &Device,
) -> (Tensor<2>, Tensor<1, Int>) {
    let n = labels.len();
    let x = Tensor::<2>::from_data(TensorData::new(features, [n, input]), device);
    let targets: Vec<i64> = labels.iter().map(|&label| i64::from(label)).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), device);
    (x, y)
}
