//! Model export and import as safetensors: one F32 tensor per entry of the model's flat layout
//! (`ModelSpec::layout`: names are the module paths, such as `layers.0.weight` of shape
//! `[fan_in, fan_out]` or `blocks.layers.0.mha.query.weight`), with the model spec as JSON
//! under the metadata key `corex.model_spec` and, for a model trained on standardized
//! features, the statistics as JSON under `corex.standardization`, so that whoever runs the
//! model later standardizes its inputs the same way.

use std::collections::HashMap;

use corex_core::{ModelSpec, Standardization};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::MlError;
use crate::params::{check_spec, check_tensor};

/// Metadata key holding the [`ModelSpec`] as JSON.
pub const MODEL_SPEC_KEY: &str = "corex.model_spec";
/// Metadata key holding the feature [`Standardization`] as JSON, when there is one.
pub const STANDARDIZATION_KEY: &str = "corex.standardization";

fn to_le_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

/// Serialises a model (spec and flat parameters) to safetensors bytes.
pub fn to_safetensors(spec: &ModelSpec, params: &[f32]) -> Result<Vec<u8>, MlError> {
    to_safetensors_with(spec, params, None)
}

/// [`to_safetensors`], with the standardization of the features the model was trained on.
pub fn to_safetensors_with(
    spec: &ModelSpec,
    params: &[f32],
    standardization: Option<&Standardization>,
) -> Result<Vec<u8>, MlError> {
    check_spec(spec)?;
    check_tensor(spec, params)?;
    let spec_json =
        serde_json::to_string(spec).map_err(|error| MlError::Safetensors(error.to_string()))?;
    let mut buffers = Vec::new();
    let mut offset = 0;
    for tensor in spec.layout() {
        let values = &params[offset..offset + tensor.len()];
        offset += tensor.len();
        buffers.push((tensor.name, tensor.shape, to_le_bytes(values)));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.as_str(), view))
                .map_err(|error| MlError::Safetensors(format!("{name}: {error}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut metadata = HashMap::from([(MODEL_SPEC_KEY.to_string(), spec_json)]);
    if let Some(statistics) = standardization {
        let json = serde_json::to_string(statistics)
            .map_err(|error| MlError::Safetensors(error.to_string()))?;
        metadata.insert(STANDARDIZATION_KEY.to_string(), json);
    }
    safetensors::serialize(views, Some(metadata))
        .map_err(|error| MlError::Safetensors(error.to_string()))
}

/// The standardization a model written by [`to_safetensors_with`] carries (`None` when it
/// has none); an unreadable one is an error.
pub fn standardization_of(bytes: &[u8]) -> Result<Option<Standardization>, MlError> {
    let (_, metadata) = SafeTensors::read_metadata(bytes)
        .map_err(|error| MlError::Safetensors(error.to_string()))?;
    let Some(json) = metadata
        .metadata()
        .as_ref()
        .and_then(|map| map.get(STANDARDIZATION_KEY))
    else {
        return Ok(None);
    };
    serde_json::from_str(json)
        .map(Some)
        .map_err(|error| MlError::Safetensors(format!("{STANDARDIZATION_KEY}: {error}")))
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
    let layout = spec.layout();
    if tensors.len() != layout.len() {
        return Err(MlError::Safetensors(format!(
            "expected {} tensors for a {} model, found {}",
            layout.len(),
            spec.family(),
            tensors.len()
        )));
    }
    let mut params = Vec::with_capacity(spec.parameter_count());
    for tensor in &layout {
        read_f32(&tensors, &tensor.name, &tensor.shape, &mut params)?;
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
