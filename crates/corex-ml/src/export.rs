//! Model export and import as safetensors: one F32 tensor per weight (`layers.{i}.weight`,
//! shape `[fan_in, fan_out]`) and bias (`layers.{i}.bias`, shape `[fan_out]`), with the model
//! spec as JSON under the metadata key `corex.model_spec`.

use std::collections::HashMap;

use corex_core::ModelSpec;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::MlError;
use crate::params::{check_spec, check_tensor, layer_slots};

/// Metadata key holding the [`ModelSpec`] as JSON.
pub const MODEL_SPEC_KEY: &str = "corex.model_spec";

fn tensor_names(layer: usize) -> (String, String) {
    (
        format!("layers.{layer}.weight"),
        format!("layers.{layer}.bias"),
    )
}

fn to_le_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

/// Serialises a model (spec and flat parameters) to safetensors bytes.
pub fn to_safetensors(spec: &ModelSpec, params: &[f32]) -> Result<Vec<u8>, MlError> {
    check_spec(spec)?;
    check_tensor(spec, params)?;
    let spec_json =
        serde_json::to_string(spec).map_err(|error| MlError::Safetensors(error.to_string()))?;
    let mut buffers = Vec::new();
    for (layer, slot) in layer_slots(spec).iter().enumerate() {
        let (weight_name, bias_name) = tensor_names(layer);
        buffers.push((
            weight_name,
            vec![slot.fan_in, slot.fan_out],
            to_le_bytes(slot.weight(params)),
        ));
        buffers.push((
            bias_name,
            vec![slot.fan_out],
            to_le_bytes(slot.bias(params)),
        ));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.as_str(), view))
                .map_err(|error| MlError::Safetensors(format!("{name}: {error}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([(MODEL_SPEC_KEY.to_string(), spec_json)]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|error| MlError::Safetensors(error.to_string()))
}

/// Reads a model written by [`to_safetensors`] (or any file with the same names, shapes and
/// metadata). Unknown extra tensors, wrong dtypes or shapes and non-finite values are errors.
pub fn from_safetensors(bytes: &[u8]) -> Result<(ModelSpec, Vec<f32>), MlError> {
    let (_, metadata) = SafeTensors::read_metadata(bytes)
        .map_err(|error| MlError::Safetensors(error.to_string()))?;
    let spec_json = metadata
        .metadata()
        .as_ref()
        .and_then(|map| map.get(MODEL_SPEC_KEY))
        .ok_or_else(|| MlError::Safetensors(format!("metadata key {MODEL_SPEC_KEY} is missing")))?;
    let spec: ModelSpec = serde_json::from_str(spec_json)
        .map_err(|error| MlError::Safetensors(format!("{MODEL_SPEC_KEY}: {error}")))?;
    check_spec(&spec)?;

    let tensors =
        SafeTensors::deserialize(bytes).map_err(|error| MlError::Safetensors(error.to_string()))?;
    let slots = layer_slots(&spec);
    if tensors.len() != 2 * slots.len() {
        return Err(MlError::Safetensors(format!(
            "expected {} tensors for {} layers, found {}",
            2 * slots.len(),
            slots.len(),
            tensors.len()
        )));
    }
    let mut params = Vec::with_capacity(spec.parameter_count());
    for (layer, slot) in slots.iter().enumerate() {
        let (weight_name, bias_name) = tensor_names(layer);
        read_f32(
            &tensors,
            &weight_name,
            &[slot.fan_in, slot.fan_out],
            &mut params,
        )?;
        read_f32(&tensors, &bias_name, &[slot.fan_out], &mut params)?;
    }
    check_tensor(&spec, &params)?;
    Ok((spec, params))
}

fn read_f32(
    tensors: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
    out: &mut Vec<f32>,
) -> Result<(), MlError> {
    let view = tensors
        .tensor(name)
        .map_err(|error| MlError::Safetensors(format!("{name}: {error}")))?;
    if view.dtype() != Dtype::F32 {
        return Err(MlError::Safetensors(format!(
            "{name}: dtype {:?}, expected F32",
            view.dtype()
        )));
    }
    if view.shape() != shape {
        return Err(MlError::Safetensors(format!(
            "{name}: shape {:?}, expected {shape:?}",
            view.shape()
        )));
    }
    let data = view.data();
    if data.len() != 4 * shape.iter().product::<usize>() {
        return Err(MlError::Safetensors(format!(
            "{name}: {} bytes for shape {shape:?}",
            data.len()
        )));
    }
    out.extend(
        data.chunks_exact(4)
            .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])),
    );
    Ok(())
}
