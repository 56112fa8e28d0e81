//! Timed probes of a backend, for `corex node bench` and `corex node --backend auto`: a square
//! matrix product forced to finish (its whole result read back to the host), and a pass over a
//! buffer in the device's own memory. Inputs are on the device before the clock starts, so
//! neither times an upload.

use std::time::{Duration, Instant};

use burn::tensor::{Tensor, TensorData};

use crate::backend::Backend;
use crate::error::MlError;
use crate::model::read_floats;

/// How long `A·B` of the seeded challenge matrices of size `n` takes on `backend`, read back.
pub fn time_matmul(backend: &Backend, n: usize, seed: u64) -> Result<Duration, MlError> {
    let device = backend.device();
    let (a, b) = corex_verify::challenge_matrices(seed, n);
    let a = Tensor::<2>::from_data(TensorData::new(a, [n, n]), &device);
    let b = Tensor::<2>::from_data(TensorData::new(b, [n, n]), &device);
    settle(&a)?;
    settle(&b)?;
    let started = Instant::now();
    let product = read_floats(a.matmul(b))?;
    let elapsed = started.elapsed();
    std::hint::black_box(product);
    Ok(elapsed.max(Duration::from_nanos(1)))
}

/// How long reading `values` f32 of device memory and writing them back changed takes: the
/// bytes moved are `8 × values`.
pub fn time_device_pass(backend: &Backend, values: usize, seed: u64) -> Result<Duration, MlError> {
    let device = backend.device();
    let source = Tensor::<1>::from_data(TensorData::new(vec![1.0f32; values], [values]), &device);
    settle(&source)?;
    let started = Instant::now();
    // Only one value comes back: the time is the device's pass, not a transfer.
    let passed = source.add_scalar(seed as f32).slice(0..1);
    let first = read_floats(passed)?;
    let elapsed = started.elapsed();
    std::hint::black_box(first);
    Ok(elapsed.max(Duration::from_nanos(1)))
}

/// Waits until a tensor's data is on its device (by reading one value of it back).
fn settle<const D: usize>(tensor: &Tensor<D>) -> Result<(), MlError> {
    let one = tensor.clone().flatten::<1>(0, D - 1).slice(0..1);
    read_floats(one).map(drop)
}
