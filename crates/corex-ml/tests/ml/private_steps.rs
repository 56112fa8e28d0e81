//! DP-SGD local steps: agreement with plain SGD when clipping and noise are off, the clipping
//! bound, the noise, reproducibility and refusals.

use corex_ml::Backend;
use corex_ml::{
    Dataset, MlError, ModelSpec, OptimizerSpec, PrivacySpec, PrivateStepsSpec, compute_gradient,
    compute_private_local_steps, epsilon, init_parameters, poisson_sample,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common::{rel_l2, small_spec, synthetic};

fn plan(steps: u32, local_batch: u32, clip_norm: f64, noise_multiplier: f64) -> PrivateStepsSpec {
    PrivateStepsSpec {
        steps,
        local_batch,
        inner: OptimizerSpec::Sgd {
            learning_rate: 0.5,
            momentum: 0.0,
        },
        privacy: PrivacySpec {
            clip_norm,
            noise_multiplier,
            delta: 1e-5,
        },
    }
}

fn norm(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// `data` with sample `index` turned into an outlier: features scaled by 1000, label moved.
fn with_outlier(data: &Dataset, index: usize) -> Dataset {
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for sample in 0..data.len() {
        let scale = if sample == index { 1000.0 } else { 1.0 };
        features.extend(
            data.feature_rows(&[sample as u32])
                .unwrap()
                .iter()
                .map(|x| x * scale),
        );
        let shift = u32::from(sample == index);
        labels.push((data.label_of(sample).unwrap() + shift) % 3);
    }
    Dataset::from_parts(features, labels, data.feature_count(), 3).unwrap()
}

#[test]
fn without_clipping_or_noise_a_step_is_sgd_on_the_sampled_examples() {
    let data = synthetic(200, 6, 1);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 2);
    let pool: Vec<u32> = (0..100).collect();
    let plan = plan(1, 20, 1e6, 1e-15);
    let sampled = poisson_sample(&pool, 20, &mut ChaCha8Rng::seed_from_u64(11));
    assert!(!sampled.is_empty());
    let output = compute_private_local_steps(
        &spec,
        &params,
        &data,
        &pool,
        &plan,
        &mut ChaCha8Rng::seed_from_u64(11),
    )
    .unwrap()
    .output;
    // The noisy sum is divided by the expected batch 20, not by the |S| samples drawn.
    let scale = 0.5 * sampled.len() as f32 / 20.0;
    let sgd = compute_gradient(&Backend::cpu(), &spec, &params, &data, &sampled).unwrap();
    let expected: Vec<f32> = sgd.gradient.iter().map(|g| g * scale).collect();
    let distance = rel_l2(&output.gradient, &expected);
    assert!(distance < 1e-5, "relative L2 {distance}");
    assert_eq!(output.samples, 100);
    assert_eq!(output.loss, 0.0);
}

#[test]
fn clipping_matches_per_example_autodiff_gradients() {
    let data = synthetic(60, 6, 15);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 16);
    let pool: Vec<u32> = (10..50).collect();
    let gradients: Vec<Vec<f32>> = pool
        .iter()
        .map(|&index| {
            compute_gradient(&Backend::cpu(), &spec, &params, &data, &[index])
                .unwrap()
                .gradient
        })
        .collect();
    let mut norms: Vec<f64> = gradients.iter().map(|g| norm(g)).collect();
    norms.sort_by(f64::total_cmp);
    // About half of the examples get clipped.
    let clip_norm = norms[norms.len() / 2];
    let mut expected = vec![0.0f64; params.len()];
    for gradient in &gradients {
        let factor = (clip_norm / norm(gradient)).min(1.0);
        for (sum, g) in expected.iter_mut().zip(gradient) {
            *sum += factor * f64::from(*g);
        }
    }
    // q = 1: every example is sampled; lr 0.5 over the batch of 40.
    let expected: Vec<f32> = expected.iter().map(|s| (0.5 * s / 40.0) as f32).collect();
    let output = compute_private_local_steps(
        &spec,
        &params,
        &data,
        &pool,
        &plan(1, 40, clip_norm, 1e-15),
        &mut ChaCha8Rng::seed_from_u64(17),
    )
    .unwrap()
    .output;
    let distance = rel_l2(&output.gradient, &expected);
    assert!(distance < 1e-5, "relative L2 {distance}");
}

#[test]
fn one_example_moves_a_step_by_at_most_lr_times_clip_over_batch() {
    let data = with_outlier(&synthetic(20, 6, 3), 0);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 4);
    let step = |clip_norm: f64| {
        let output = compute_private_local_steps(
            &spec,
            &params,
            &data,
            &[0],
            &plan(1, 1, clip_norm, 1e-15),
            &mut ChaCha8Rng::seed_from_u64(5),
        )
        .unwrap()
        .output;
        norm(&output.gradient)
    };
    let bound = 0.5 * 0.25 / 1.0;
    let clipped = step(0.25);
    assert!(clipped <= bound * (1.0 + 1e-5), "{clipped} > {bound}");
    assert!(
        clipped >= bound * 0.999,
        "the outlier's gradient should be clipped: {clipped}"
    );
    assert!(
        step(1e6) > 100.0 * bound,
        "the outlier alone moves the step far"
    );
}

#[test]
fn replacing_one_sampled_example_moves_a_noisy_step_by_at_most_twice_the_bound() {
    let data = synthetic(64, 6, 5);
    let outlier = with_outlier(&data, 5);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 6);
    let pool: Vec<u32> = (0..64).collect();
    let seed = (0..)
        .find(|&seed| poisson_sample(&pool, 16, &mut ChaCha8Rng::seed_from_u64(seed)).contains(&5))
        .unwrap();
    let displacement = |data: &Dataset, plan: &PrivateStepsSpec| {
        compute_private_local_steps(
            &spec,
            &params,
            data,
            &pool,
            plan,
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
        .unwrap()
        .output
        .gradient
    };
    let difference = |plan: &PrivateStepsSpec| {
        let a = displacement(&data, plan);
        let b = displacement(&outlier, plan);
        let gap: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        norm(&gap)
    };
    // Same seed: same sample and same noise, so only the replaced example's term differs.
    let bound = 2.0 * 0.5 * 0.02 / 16.0;
    let clipped = difference(&plan(1, 16, 0.02, 1.0));
    assert!(clipped <= bound * (1.0 + 1e-4), "{clipped} > {bound}");
    let unclipped = difference(&plan(1, 16, 1e6, 1e-15));
    assert!(
        unclipped > 10.0 * bound,
        "unclipped {unclipped}, bound {bound}"
    );
}

#[test]
fn an_empty_sample_takes_a_noise_only_step_of_the_right_deviation() {
    let data = synthetic(200, 6, 7);
    let spec = ModelSpec::mlp(6, vec![64, 32], 3);
    let params = init_parameters(&spec, 8);
    let pool: Vec<u32> = (0..200).collect();
    let seed = (0..)
        .find(|&seed| poisson_sample(&pool, 1, &mut ChaCha8Rng::seed_from_u64(seed)).is_empty())
        .unwrap();
    let (clip_norm, noise_multiplier) = (0.2, 1.5);
    let output = compute_private_local_steps(
        &spec,
        &params,
        &data,
        &pool,
        &plan(1, 1, clip_norm, noise_multiplier),
        &mut ChaCha8Rng::seed_from_u64(seed),
    )
    .unwrap()
    .output;
    // Δ = lr · N(0, (σC)²) / B per coordinate: standardised, mean ≈ 0 and variance ≈ 1.
    let deviation = 0.5 * noise_multiplier * clip_norm / 1.0;
    let standard: Vec<f64> = output
        .gradient
        .iter()
        .map(|d| f64::from(*d) / deviation)
        .collect();
    let count = standard.len() as f64;
    let mean = standard.iter().sum::<f64>() / count;
    let variance = standard.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / count;
    assert!(mean.abs() < 0.08, "mean {mean} over {count} coordinates");
    assert!((variance - 1.0).abs() < 0.1, "variance {variance}");
}

#[test]
fn noise_differs_across_seeds_and_a_seed_reproduces_bits() {
    let data = synthetic(300, 6, 9);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 10);
    let pool: Vec<u32> = (0..250).collect();
    let mut plan = plan(4, 25, 1.0, 1.1);
    plan.inner = OptimizerSpec::Adam {
        learning_rate: 0.01,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
    };
    let run = |seed: u64| {
        compute_private_local_steps(
            &spec,
            &params,
            &data,
            &pool,
            &plan,
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
        .unwrap()
        .output
    };
    let a = run(1);
    assert_eq!(a.gradient.len(), spec.parameter_count());
    assert!(a.gradient.iter().all(|g| g.is_finite()));
    assert_eq!(bits(&a.gradient), bits(&run(1).gradient));
    assert_ne!(bits(&a.gradient), bits(&run(2).gradient));
    let spent = epsilon(
        plan.privacy.noise_multiplier,
        plan.sampling_rate(pool.len()),
        u64::from(plan.steps),
        plan.privacy.delta,
    )
    .unwrap();
    assert!(
        spent.epsilon.is_finite() && spent.epsilon > 0.0,
        "{spent:?}"
    );
}

#[test]
fn poisson_samples_have_the_expected_size() {
    let pool: Vec<u32> = (1000..3000).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let sizes: Vec<usize> = (0..200)
        .map(|_| poisson_sample(&pool, 50, &mut rng).len())
        .collect();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    // Binomial(2000, 0.025): standard deviation ≈ 7, of the mean of 200 draws ≈ 0.5.
    assert!((mean - 50.0).abs() < 2.0, "mean sample size {mean}");
    assert!(sizes.iter().any(|&size| size != 50));
    let full = poisson_sample(&pool, 2000, &mut rng);
    assert_eq!(full, pool);
}

#[test]
fn bad_inputs_are_refused() {
    let data = synthetic(50, 6, 13);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 14);
    let pool: Vec<u32> = (0..40).collect();
    let good = plan(2, 8, 1.0, 1.0);
    let run = |params: &[f32], pool: &[u32], plan: &PrivateStepsSpec| {
        compute_private_local_steps(
            &spec,
            params,
            &data,
            pool,
            plan,
            &mut ChaCha8Rng::seed_from_u64(0),
        )
    };
    assert!(run(&params, &pool, &good).is_ok());
    assert!(matches!(run(&params, &[], &good), Err(MlError::Empty(_))));
    assert_eq!(
        run(&params, &[1, 2, 50], &good),
        Err(MlError::SampleIndex { index: 50, len: 50 })
    );
    let duplicate = run(&params, &[3, 4, 5, 6, 7, 8, 9, 10, 4], &good).unwrap_err();
    assert!(
        duplicate.to_string().contains("sample 4 more than once"),
        "{duplicate}"
    );
    let mut nan = params.clone();
    nan[7] = f32::NAN;
    assert_eq!(
        run(&nan, &pool, &good),
        Err(MlError::NonFinite { index: 7 })
    );
    assert_eq!(
        run(&params[1..], &pool, &good),
        Err(MlError::ParameterCount {
            expected: params.len(),
            got: params.len() - 1
        })
    );
    let too_big = run(&params, &pool[..5], &good).unwrap_err();
    assert!(
        too_big.to_string().contains("exceeds the pool of 5"),
        "{too_big}"
    );
    let mut zero_batch = good.clone();
    zero_batch.local_batch = 0;
    assert!(matches!(
        run(&params, &pool, &zero_batch),
        Err(MlError::Spec(_))
    ));
    let mut zero_steps = good.clone();
    zero_steps.steps = 0;
    assert!(matches!(
        run(&params, &pool, &zero_steps),
        Err(MlError::Spec(_))
    ));
    for (clip_norm, noise_multiplier) in [
        (f64::NAN, 1.0),
        (1.0, 0.0),
        (-1.0, 1.0),
        (1.0, f64::INFINITY),
    ] {
        let bad = plan(2, 8, clip_norm, noise_multiplier);
        assert!(
            matches!(run(&params, &pool, &bad), Err(MlError::Privacy(_))),
            "clip {clip_norm}, noise {noise_multiplier}"
        );
    }
    let mut bad_rate = good;
    bad_rate.inner = OptimizerSpec::Sgd {
        learning_rate: f64::NAN,
        momentum: 0.0,
    };
    assert!(matches!(
        run(&params, &pool, &bad_rate),
        Err(MlError::Spec(_))
    ));
}
