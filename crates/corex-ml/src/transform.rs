//! Data-processing transforms: pure, deterministic functions of a batch of samples, the work
//! of a transform job's fragments. Every value is computed with IEEE arithmetic in a fixed
//! order (and the logarithm of the portable `libm`), so a replay on any machine gives the same
//! bits, and audits compare transformed rows exactly.
//!
//! In: row-major features (`samples × input`). Out: row-major transformed rows
//! (`samples × output width`, see [`TransformSpec::output_width`]).

use corex_core::TransformSpec;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::MlError;

/// Transforms `features` (`samples × input`, row-major) by `transform`.
pub fn apply_transform(
    transform: &TransformSpec,
    features: &[f32],
    input: usize,
) -> Result<Vec<f32>, MlError> {
    transform
        .validate(input)
        .map_err(|error| MlError::Spec(error.to_string()))?;
    if input == 0 || !features.len().is_multiple_of(input) {
        return Err(MlError::Shape(format!(
            "{} feature values are not whole samples of {input} features",
            features.len()
        )));
    }
    Ok(match *transform {
        TransformSpec::Quantize { levels } => quantize(features, levels),
        TransformSpec::RandomProjection { output, seed } => {
            let matrix = projection_matrix(input, output as usize, seed);
            project(features, input, &matrix, output as usize)
        }
    })
}

/// Each value clamped to [0, 1], then to its code `min(⌊x · levels⌋, levels − 1)`.
fn quantize(features: &[f32], levels: u32) -> Vec<f32> {
    let levels = f64::from(levels);
    features
        .iter()
        .map(|&value| {
            let clamped = f64::from(value).clamp(0.0, 1.0);
            (clamped * levels).floor().min(levels - 1.0) as f32
        })
        .collect()
}

/// The `input × output` projection matrix (row-major) of `seed`: standard normal draws (the
/// polar method over a ChaCha8 stream) scaled by `1/√output`, rounded to f32.
fn projection_matrix(input: usize, output: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = 1.0 / (output as f64).sqrt();
    let entries = input * output;
    let mut matrix = Vec::with_capacity(entries);
    while matrix.len() < entries {
        let (first, second) = standard_normal_pair(&mut rng);
        matrix.push((first * scale) as f32);
        if matrix.len() < entries {
            matrix.push((second * scale) as f32);
        }
    }
    matrix
}

/// Two independent standard normal values (Marsaglia's polar method).
fn standard_normal_pair(rng: &mut ChaCha8Rng) -> (f64, f64) {
    loop {
        let u = 2.0 * unit(rng) - 1.0;
        let v = 2.0 * unit(rng) - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            let factor = (-2.0 * libm::log(s) / s).sqrt();
            return (u * factor, v * factor);
        }
    }
}

/// Uniform in [0, 1) from the top 53 bits of the stream.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Each row times `matrix`, accumulated in f64 over the input features in order.
fn project(features: &[f32], input: usize, matrix: &[f32], output: usize) -> Vec<f32> {
    let mut rows = Vec::with_capacity(features.len() / input * output);
    let mut sums = vec![0.0f64; output];
    for row in features.chunks_exact(input) {
        sums.fill(0.0);
        for (&value, weights) in row.iter().zip(matrix.chunks_exact(output)) {
            let value = f64::from(value);
            for (sum, &weight) in sums.iter_mut().zip(weights) {
                *sum += value * f64::from(weight);
            }
        }
        rows.extend(sums.iter().map(|&sum| sum as f32));
    }
    rows
}
