//! The one generic parameter codec and batch path every family shares.
//!
//! [`Network`] is any family's burn module. [`Network::from_flat`] builds the family's
//! skeleton and fills its parameters, in burn's visiting order, from the flat vector;
//! [`Network::to_flat`] and [`Network::gradient_flat`] read parameters or their gradients back
//! in the same order. That order is `ModelSpec::layout`'s (checked by shape at every load, and
//! name by name in a test), so aggregation, audits, transfers and exports never look at a
//! family. [`Batch`] turns a dataset's samples into the family's input and one target per
//! logits row, so that every loss is the mean cross-entropy over rows.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Int, Tensor, TensorData};
use corex_core::ModelSpec;

use crate::dataset::{Dataset, Samples};
use crate::error::MlError;
use crate::families::{ByteLm, Cnn, Mlp};

/// Any family's module. One value lives per computation (never in a collection), so the size
/// of its largest variant costs nothing worth a box, which burn's derive would not see through.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Network {
    Mlp(Mlp),
    Cnn(Cnn),
    Transformer(ByteLm),
}

/// A family's input for a batch of samples.
pub(crate) enum BatchInput {
    Features(Tensor<2>),
    Images(Tensor<4>),
    Tokens(Tensor<2, Int>),
}

/// A batch: the input and the target class of each logits row the network yields.
pub(crate) struct Batch {
    pub input: BatchInput,
    pub targets: Tensor<1, Int>,
}

impl Network {
    /// Builds `spec`'s module on `device` from a flat vector that has already passed
    /// [`check_tensor`](crate::check_tensor) for `spec`.
    pub fn from_flat(spec: &ModelSpec, params: &[f32], device: &Device) -> Result<Self, MlError> {
        let skeleton = match spec {
            ModelSpec::Mlp(mlp) => Self::Mlp(Mlp::skeleton(mlp, device)),
            ModelSpec::Cnn(cnn) => Self::Cnn(Cnn::skeleton(cnn, device)),
            ModelSpec::Transformer(lm) => Self::Transformer(ByteLm::skeleton(lm, device)),
        };
        let mut loader = FlatLoader {
            values: params,
            offset: 0,
            device: device.clone(),
            error: None,
        };
        let network = skeleton.map(&mut loader);
        if let Some(error) = loader.error {
            return Err(error);
        }
        if loader.offset != params.len() {
            return Err(MlError::ParameterCount {
                expected: loader.offset,
                got: params.len(),
            });
        }
        Ok(network)
    }

    /// The parameters in the flat layout.
    pub fn to_flat(&self, spec: &ModelSpec) -> Result<Vec<f32>, MlError> {
        let mut reader = FlatReader {
            out: Vec::with_capacity(spec.parameter_count()),
            gradients: None,
            error: None,
        };
        self.visit(&mut reader);
        reader.finish(spec)
    }

    /// The gradients of every parameter (after `backward`), in the flat layout.
    pub fn gradient_flat(&self, spec: &ModelSpec, grads: &Gradients) -> Result<Vec<f32>, MlError> {
        let mut reader = FlatReader {
            out: Vec::with_capacity(spec.parameter_count()),
            gradients: Some(grads),
            error: None,
        };
        self.visit(&mut reader);
        reader.finish(spec)
    }

    /// Logits `[rows, classes]`: one row per sample, or per position of each window.
    pub fn forward(&self, input: BatchInput) -> Result<Tensor<2>, MlError> {
        Ok(match (self, input) {
            (Self::Mlp(mlp), BatchInput::Features(x)) => mlp.forward(x),
            (Self::Cnn(cnn), BatchInput::Images(x)) => cnn.forward(x),
            (Self::Transformer(lm), BatchInput::Tokens(x)) => lm.forward(x),
            _ => return Err(MlError::Shape("batch does not fit the model family".into())),
        })
    }
}

/// Fills each parameter from the next slice of the flat vector.
struct FlatLoader<'a> {
    values: &'a [f32],
    offset: usize,
    device: Device,
    error: Option<MlError>,
}

impl ModuleMapper for FlatLoader<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape = param.lazy_shape();
        let count = shape.num_elements();
        let Some(values) = self.values.get(self.offset..self.offset + count) else {
            self.error.get_or_insert(MlError::ParameterCount {
                expected: self.offset + count,
                got: self.values.len(),
            });
            return param;
        };
        self.offset += count;
        Param::from_data(TensorData::new(values.to_vec(), shape), &self.device)
    }
}

/// Appends each parameter (or its gradient) to the flat vector.
struct FlatReader<'a> {
    out: Vec<f32>,
    gradients: Option<&'a Gradients>,
    error: Option<MlError>,
}

impl ModuleVisitor for FlatReader<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.error.is_some() {
            return;
        }
        let value = param.val();
        let expected = value.shape().num_elements();
        let tensor = match self.gradients {
            None => value,
            Some(grads) => match value.grad(grads) {
                Some(gradient) => gradient,
                None => {
                    self.error = Some(MlError::Backend("a parameter has no gradient".into()));
                    return;
                }
            },
        };
        if let Err(error) = append_tensor(&mut self.out, tensor, expected) {
            self.error = Some(error);
        }
    }
}

impl FlatReader<'_> {
    fn finish(self, spec: &ModelSpec) -> Result<Vec<f32>, MlError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.out.len() != spec.parameter_count() {
            return Err(MlError::ParameterCount {
                expected: spec.parameter_count(),
                got: self.out.len(),
            });
        }
        Ok(self.out)
    }
}

impl Batch {
    /// The batch of the samples `indices` (checked against `spec` and `data` beforehand).
    pub fn gather(
        spec: &ModelSpec,
        data: &Dataset,
        indices: &[u32],
        device: &Device,
    ) -> Result<Self, MlError> {
        let n = indices.len();
        if let (ModelSpec::Transformer(lm), Samples::Text { bytes }) = (spec, &data.samples) {
            let context = lm.context;
            let mut tokens = Vec::with_capacity(n * context);
            let mut targets = Vec::with_capacity(n * context);
            for &start in indices {
                let window = &bytes[start as usize..start as usize + context + 1];
                tokens.extend(window[..context].iter().map(|&byte| i64::from(byte)));
                targets.extend(window[1..].iter().map(|&byte| i64::from(byte)));
            }
            return Ok(Self {
                input: BatchInput::Tokens(Tensor::from_data(
                    TensorData::new(tokens, [n, context]),
                    device,
                )),
                targets: Tensor::from_data(TensorData::new(targets, [n * context]), device),
            });
        }
        let (features, labels) = data.gather(indices);
        let targets: Vec<i64> = labels.iter().map(|&label| i64::from(label)).collect();
        let targets = Tensor::from_data(TensorData::new(targets, [n]), device);
        let input = match spec {
            ModelSpec::Mlp(mlp) => BatchInput::Features(Tensor::from_data(
                TensorData::new(features, [n, mlp.input]),
                device,
            )),
            ModelSpec::Cnn(cnn) => BatchInput::Images(Tensor::from_data(
                TensorData::new(features, [n, cnn.channels, cnn.height, cnn.width]),
                device,
            )),
            ModelSpec::Transformer(_) => {
                return Err(MlError::Dataset(
                    "a language model trains on a text dataset".into(),
                ));
            }
        };
        Ok(Self { input, targets })
    }
}

/// The target class of every logits row of `indices`, on the host: labels, or each window's
/// next bytes.
pub(crate) fn host_targets(spec: &ModelSpec, data: &Dataset, indices: &[u32]) -> Vec<u32> {
    match (spec, &data.samples) {
        (ModelSpec::Transformer(lm), Samples::Text { bytes }) => indices
            .iter()
            .flat_map(|&start| {
                bytes[start as usize + 1..start as usize + lm.context + 1]
                    .iter()
                    .map(|&byte| u32::from(byte))
            })
            .collect(),
        _ => indices
            .iter()
            .filter_map(|&index| data.label_of(index as usize))
            .collect(),
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

#[cfg(test)]
mod tests {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::{Device, Tensor};
    use corex_core::{CnnSpec, ModelSpec, TransformerSpec};

    use super::Network;
    use crate::init_parameters;

    /// Collects each float parameter's module path (enum variants left out) and shape.
    #[derive(Default)]
    struct Paths {
        stack: Vec<String>,
        seen: Vec<(String, Vec<usize>)>,
    }

    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            if !container_type.starts_with("Enum:") {
                self.stack.push(name.to_string());
            }
        }

        fn exit_module(&mut self, _name: &str, container_type: &str) {
            if !container_type.starts_with("Enum:") {
                self.stack.pop();
            }
        }

        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.seen
                .push((self.stack.join("."), param.lazy_shape().to_vec()));
        }
    }

    pub(crate) fn families() -> Vec<ModelSpec> {
        vec![
            ModelSpec::mlp(12, vec![8, 6], 3),
            ModelSpec::Cnn(CnnSpec {
                channels: 1,
                height: 8,
                width: 8,
                conv: vec![4, 6],
                kernel: 3,
                hidden: vec![10],
                classes: 5,
            }),
            ModelSpec::Transformer(TransformerSpec {
                layers: 2,
                width: 16,
                heads: 2,
                context: 8,
                ff: Some(24),
            }),
        ]
    }

    #[test]
    fn burn_visits_parameters_in_the_layout_order_under_the_layout_names() {
        for spec in families() {
            let params = init_parameters(&spec, 1);
            let network = Network::from_flat(&spec, &params, &Device::flex()).unwrap();
            let mut paths = Paths::default();
            network.visit(&mut paths);
            let expected: Vec<(String, Vec<usize>)> = spec
                .layout()
                .into_iter()
                .map(|tensor| (tensor.name, tensor.shape))
                .collect();
            assert_eq!(paths.seen, expected, "{}", spec.family());
            assert_eq!(network.to_flat(&spec).unwrap(), params, "{}", spec.family());
        }
    }
}
