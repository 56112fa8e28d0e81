//! Fragment gradients: determinism, aggregation and agreement with finite differences.

use corex_ml::Backend;
use corex_ml::{ModelSpec, compute_gradient, init_parameters, weighted_mean};

use crate::common::{rel_l2, small_spec, synthetic};

#[test]
fn gradient_is_bit_identical_on_repeat() {
    let data = synthetic(200, 6, 1);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 7);
    let indices: Vec<u32> = (0..150).collect();
    let a = compute_gradient(&Backend::cpu(), &spec, &params, &data, &indices).unwrap();
    let b = compute_gradient(&Backend::cpu(), &spec, &params, &data, &indices).unwrap();
    assert_eq!(a.samples, 150);
    assert_eq!(a.gradient.len(), spec.parameter_count());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.gradient), bits(&b.gradient));
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    assert!(a.gradient.iter().any(|g| *g != 0.0));
}

#[test]
fn union_gradient_is_weighted_mean_of_parts() {
    let data = synthetic(300, 6, 2);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 3);
    let first: Vec<u32> = (0..70).collect();
    let second: Vec<u32> = (70..250).rev().collect();
    let union: Vec<u32> = first.iter().chain(&second).copied().collect();
    let whole = compute_gradient(&Backend::cpu(), &spec, &params, &data, &union).unwrap();
    let a = compute_gradient(&Backend::cpu(), &spec, &params, &data, &first).unwrap();
    let b = compute_gradient(&Backend::cpu(), &spec, &params, &data, &second).unwrap();
    let mean = weighted_mean(&[(&a.gradient, a.samples), (&b.gradient, b.samples)]).unwrap();
    let distance = rel_l2(&mean, &whole.gradient);
    eprintln!("union vs weighted mean of parts: {distance:.3e}");
    assert!(distance < 1e-5, "relative L2 {distance}");
    let mean_loss = (a.loss * 70.0 + b.loss * 180.0) / 250.0;
    assert!((mean_loss - whole.loss).abs() < 1e-5 * whole.loss.abs().max(1.0));
}

#[test]
fn weighted_mean_weights_by_sample_count() {
    let a = [1.0f32, 2.0];
    let b = [4.0f32, -1.0];
    let mean = weighted_mean(&[(&a, 1), (&b, 2)]).unwrap();
    assert_eq!(mean, vec![3.0, 0.0]);
}

/// Loss of the mean cross-entropy computed independently on the host in f64.
fn host_loss(spec: &ModelSpec, params: &[f64], data: &corex_ml::Dataset, indices: &[u32]) -> f64 {
    let mut total = 0.0;
    for &index in indices {
        let mut x: Vec<f64> = data
            .feature_rows(&[index])
            .unwrap()
            .iter()
            .map(|v| f64::from(*v))
            .collect();
        let mut offset = 0;
        let ModelSpec::Mlp(mlp) = spec else {
            unreachable!("host_loss computes MLPs")
        };
        let shapes = mlp.layer_shapes();
        for (layer, (fan_in, fan_out)) in shapes.iter().enumerate() {
            let mut y: Vec<f64> =
                params[offset + fan_in * fan_out..offset + fan_in * fan_out + fan_out].to_vec();
            for (i, xi) in x.iter().enumerate() {
                for (o, yo) in y.iter_mut().enumerate() {
                    *yo += xi * params[offset + i * fan_out + o];
                }
            }
            offset += fan_in * fan_out + fan_out;
            if layer + 1 < shapes.len() {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            x = y;
        }
        let max = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        total += lse - x[data.label_of(index as usize).unwrap() as usize];
    }
    total / indices.len() as f64
}

#[test]
fn gradient_matches_finite_differences() {
    let data = synthetic(40, 4, 5);
    let spec = ModelSpec::mlp(4, vec![5], 3);
    let params = init_parameters(&spec, 11);
    let indices: Vec<u32> = (0..40).collect();
    let output = compute_gradient(&Backend::cpu(), &spec, &params, &data, &indices).unwrap();
    let base: Vec<f64> = params.iter().map(|v| f64::from(*v)).collect();
    let loss = host_loss(&spec, &base, &data, &indices);
    assert!(
        (loss - f64::from(output.loss)).abs() < 1e-5,
        "{loss} vs {}",
        output.loss
    );
    let h = 1e-5;
    // First-layer weights, a first-layer bias, output weights and an output bias.
    for coordinate in [0, 7, 19, 21, 24, 30, 37, spec.parameter_count() - 1] {
        let mut plus = base.clone();
        plus[coordinate] += h;
        let mut minus = base.clone();
        minus[coordinate] -= h;
        let estimate = (host_loss(&spec, &plus, &data, &indices)
            - host_loss(&spec, &minus, &data, &indices))
            / (2.0 * h);
        let got = f64::from(output.gradient[coordinate]);
        assert!(
            (got - estimate).abs() < 1e-4 + 1e-3 * estimate.abs(),
            "coordinate {coordinate}: autodiff {got}, finite difference {estimate}"
        );
    }
}
