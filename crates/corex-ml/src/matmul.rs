//! A dense square matrix product on the compute backend, for capability challenges.

use burn::tensor::{Tensor, TensorData};

use crate::backend::Backend;

use crate::error::MlError;
use crate::model::read_floats;

/// `A · B` on `backend` for row-major `n × n` matrices.
pub fn matmul(backend: &Backend, a: &[f32], b: &[f32], n: usize) -> Result<Vec<f32>, MlError> {
    if a.len() != n * n || b.len() != n * n {
        return Err(MlError::Shape(format!(
            "matmul of {n}×{n} needs {} values per factor, got {} and {}",
            n * n,
            a.len(),
            b.len()
        )));
    }
    let device = backend.device();
    let a = Tensor::<2>::from_data(TensorData::new(a.to_vec(), [n, n]), &device);
    let b = Tensor::<2>::from_data(TensorData::new(b.to_vec(), [n, n]), &device);
    read_floats(a.matmul(b))
}
