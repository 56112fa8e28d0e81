//! Data transforms: quantization codes, the seeded random projection (deterministic, Gaussian
//! entries of variance 1/output, distances kept), their bits pinned, and bad parameters
//! refused.

use corex_core::TransformSpec;
use corex_ml::Backend;
use corex_ml::{MlError, WorkSpec, apply_transform, check_result, run_fragment};

use crate::common::{small_spec, synthetic};

fn projection(output: u32, seed: u64) -> TransformSpec {
    TransformSpec::RandomProjection { output, seed }
}

#[test]
fn quantization_clamps_to_the_unit_range_and_codes_each_value() {
    let features = [-0.5, 0.0, 0.24, 0.25, 0.5, 0.749, 0.999, 1.0, 7.0, 0.1];
    let codes = apply_transform(&TransformSpec::Quantize { levels: 4 }, &features, 5).unwrap();
    assert_eq!(codes, [0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 0.0]);
    let binary = apply_transform(&TransformSpec::Quantize { levels: 2 }, &features, 5).unwrap();
    assert_eq!(binary, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
}

#[test]
fn the_projection_is_a_seeded_gaussian_matrix() {
    // Projecting the unit vectors reads the matrix back, row by row.
    let (input, output) = (64, 32);
    let identity: Vec<f32> = (0..input * input)
        .map(|i| if i / input == i % input { 1.0 } else { 0.0 })
        .collect();
    let matrix = apply_transform(&projection(output as u32, 9), &identity, input).unwrap();
    assert_eq!(matrix.len(), input * output);
    let n = matrix.len() as f64;
    let mean = matrix.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let variance = matrix
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let expected = 1.0 / output as f64;
    assert!(mean.abs() < 0.1 * expected.sqrt(), "mean {mean}");
    assert!(
        (variance / expected - 1.0).abs() < 0.1,
        "variance {variance}"
    );
    let again = apply_transform(&projection(output as u32, 9), &identity, input).unwrap();
    assert_eq!(again, matrix, "same seed, same matrix");
    let other = apply_transform(&projection(output as u32, 10), &identity, input).unwrap();
    assert_ne!(other, matrix, "another seed, another matrix");
}

#[test]
fn the_projection_keeps_distances_on_average() {
    let data = synthetic(200, 48, 5);
    let indices: Vec<u32> = (0..200).collect();
    let spec = small_spec(48);
    let work = WorkSpec::Transform {
        transform: projection(24, 1),
    };
    let output = run_fragment(&Backend::cpu(), &work, &spec, &[], &data, &indices).unwrap();
    assert_eq!(output.values.len(), 200 * 24);
    assert_eq!(output.loss, 0.0);
    assert_eq!(check_result(&work, &spec, 200, &output.values), Ok(()));
    let distance = |rows: &[f32], width: usize, a: usize, b: usize| {
        rows[a * width..(a + 1) * width]
            .iter()
            .zip(&rows[b * width..(b + 1) * width])
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum::<f64>()
    };
    let original = data.feature_rows(&indices).unwrap();
    let ratios: Vec<f64> = (0..100)
        .map(|pair| {
            distance(&output.values, 24, pair, 199 - pair)
                / distance(&original, 48, pair, 199 - pair)
        })
        .collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    assert!(
        (mean - 1.0).abs() < 0.15,
        "mean squared-distance ratio {mean}"
    );
}

#[test]
fn transformed_rows_are_pinned_bit_for_bit() {
    // A change to these bits would make old results disagree with new replays: it needs a
    // new transform, not an edit.
    let data = synthetic(64, 16, 3);
    let first: Vec<u32> = (0..64).collect();
    let features = data.feature_rows(&first).unwrap();
    let projected = apply_transform(&projection(8, 42), &features, 16).unwrap();
    let quantized =
        apply_transform(&TransformSpec::Quantize { levels: 16 }, &features, 16).unwrap();
    let hash = |values: &[f32]| {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        blake3::hash(&bytes).to_hex().to_string()
    };
    assert_eq!(
        hash(&projected),
        "788ff79a652b8f16cb0c3071ca30d18562ded82350e3bb443b2f8093fc1ba3d1"
    );
    assert_eq!(
        hash(&quantized),
        "97bec1c2fe239047151e808d47dacfd01041c56b93aff7d506efa17c3468d46f"
    );
}

#[test]
fn bad_transforms_and_shapes_are_refused() {
    let features = [0.5f32; 12];
    assert!(matches!(
        apply_transform(&TransformSpec::Quantize { levels: 1 }, &features, 4),
        Err(MlError::Spec(_))
    ));
    assert!(matches!(
        apply_transform(&projection(0, 1), &features, 4),
        Err(MlError::Spec(_))
    ));
    assert!(matches!(
        apply_transform(&projection(2, 1), &features, 5),
        Err(MlError::Shape(_))
    ));
    let spec = small_spec(4);
    let work = WorkSpec::Transform {
        transform: projection(2, 1),
    };
    assert!(matches!(
        check_result(&work, &spec, 3, &[0.0; 5]),
        Err(MlError::OutputLength { expected: 6, .. })
    ));
}
