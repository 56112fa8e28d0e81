//! safetensors export and import.

use corex_ml::{MlError, ModelSpec, from_safetensors, init_parameters, to_safetensors};

#[test]
fn safetensors_round_trip() {
    let spec = ModelSpec::mlp(5, vec![7, 3], 4);
    let params = init_parameters(&spec, 99);
    let bytes = to_safetensors(&spec, &params).unwrap();
    let (read_spec, read_params) = from_safetensors(&bytes).unwrap();
    assert_eq!(read_spec, spec);
    assert_eq!(read_params, params);

    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let weight = tensors.tensor("layers.1.weight").unwrap();
    assert_eq!(weight.shape(), &[7, 3]);
    assert_eq!(weight.dtype(), safetensors::Dtype::F32);
    let bias = tensors.tensor("layers.2.bias").unwrap();
    assert_eq!(bias.shape(), &[4]);
    // layers.0.weight[1][2] is flat element 1 * 7 + 2.
    let first = tensors.tensor("layers.0.weight").unwrap().data();
    let value = f32::from_le_bytes(first[36..40].try_into().unwrap());
    assert_eq!(value, params[9]);
}

#[test]
fn safetensors_garbage_is_an_error() {
    assert!(matches!(
        from_safetensors(b"not a model"),
        Err(MlError::Safetensors(_))
    ));
    assert!(from_safetensors(&[]).is_err());
    let spec = ModelSpec::mlp(2, vec![], 2);
    let bytes = to_safetensors(&spec, &init_parameters(&spec, 1)).unwrap();
    // Truncated buffers and a tensor without spec metadata are rejected.
    assert!(from_safetensors(&bytes[..bytes.len() - 3]).is_err());
    let plain = safetensors::serialize(
        [(
            "layers.0.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0, 0, 0, 0])
                .unwrap(),
        )],
        None,
    )
    .unwrap();
    assert!(matches!(
        from_safetensors(&plain),
        Err(MlError::Safetensors(_))
    ));
    assert!(to_safetensors(&spec, &[1.0]).is_err());
}
