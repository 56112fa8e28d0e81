//! Local-steps fragments: determinism, agreement with the reference trainer, refusals.

use corex_ml::Backend;
use corex_ml::{
    OptimizerSpec, WorkSpec, compute_gradient, compute_local_steps, compute_traced_local_steps,
    init_parameters, replay_local_steps, run_fragment, train_reference,
};

use crate::common::{rel_l2, small_spec, synthetic};

fn sgd(learning_rate: f64) -> OptimizerSpec {
    OptimizerSpec::Sgd {
        learning_rate,
        momentum: 0.0,
    }
}

#[test]
fn local_steps_are_bit_identical_on_repeat() {
    let data = synthetic(200, 6, 1);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 7);
    let indices: Vec<u32> = (0..160).collect();
    let a = compute_local_steps(
        &Backend::cpu(),
        &spec,
        &params,
        &data,
        &indices,
        4,
        &sgd(0.1),
    )
    .unwrap();
    let b = compute_local_steps(
        &Backend::cpu(),
        &spec,
        &params,
        &data,
        &indices,
        4,
        &sgd(0.1),
    )
    .unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.gradient), bits(&b.gradient));
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    assert_eq!(a.samples, 160);
}

#[test]
fn one_sgd_step_is_the_learning_rate_times_the_gradient() {
    let data = synthetic(200, 6, 2);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 3);
    let indices: Vec<u32> = (10..90).collect();
    let step = compute_local_steps(
        &Backend::cpu(),
        &spec,
        &params,
        &data,
        &indices,
        1,
        &sgd(0.5),
    )
    .unwrap();
    let gradient = compute_gradient(&Backend::cpu(), &spec, &params, &data, &indices).unwrap();
    let scaled: Vec<f32> = gradient.gradient.iter().map(|g| g * 0.5).collect();
    let distance = rel_l2(&step.gradient, &scaled);
    assert!(distance < 1e-4, "relative L2 {distance}");
    assert_eq!(step.loss.to_bits(), gradient.loss.to_bits());
}

#[test]
fn the_pseudo_gradient_is_the_reference_trainers_displacement() {
    let data = synthetic(300, 6, 4);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 5);
    let indices: Vec<u32> = (0..120).rev().collect();
    let work = WorkSpec::LocalSteps {
        steps: 3,
        inner: OptimizerSpec::Adam {
            learning_rate: 0.01,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
        },
    };
    let output = run_fragment(&Backend::cpu(), &work, &spec, &params, &data, &indices).unwrap();
    let WorkSpec::LocalSteps { inner, .. } = &work else {
        unreachable!()
    };
    let batches: Vec<Vec<u32>> = indices.chunks(40).map(<[u32]>::to_vec).collect();
    let end = train_reference(&spec, &params, inner, &data, &batches).unwrap();
    let displacement: Vec<f32> = params.iter().zip(&end).map(|(w, v)| w - v).collect();
    assert!(rel_l2(&output.values, &displacement) < 1e-6);
}

#[test]
fn more_steps_than_samples_are_refused() {
    let data = synthetic(50, 6, 1);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 1);
    let error = compute_local_steps(
        &Backend::cpu(),
        &spec,
        &params,
        &data,
        &[1, 2, 3],
        4,
        &sgd(0.1),
    )
    .unwrap_err();
    assert!(error.to_string().contains("at least one sample"), "{error}");
}

#[test]
fn each_traced_segment_replays_from_its_checkpoint_to_the_next() {
    let data = synthetic(300, 6, 8);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 9);
    let indices: Vec<u32> = (0..240).collect();
    let bounds = [0, 2, 4, 6, 8];
    let plain = compute_local_steps(
        &Backend::cpu(),
        &spec,
        &params,
        &data,
        &indices,
        8,
        &sgd(0.1),
    )
    .unwrap();
    let traced = compute_traced_local_steps(
        &Backend::cpu(),
        &spec,
        &params,
        &data,
        &indices,
        8,
        &sgd(0.1),
        &bounds[1..4],
    )
    .unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&traced.output.gradient), bits(&plain.gradient));
    assert_eq!(traced.output.loss.to_bits(), plain.loss.to_bits());
    assert_eq!(traced.checkpoints.len(), 3);
    assert_eq!(traced.losses.len(), 8);

    // The chain: the model version, the checkpoints, and `w_start − result` at the end.
    let end: Vec<f32> = params
        .iter()
        .zip(&traced.output.gradient)
        .map(|(w, g)| w - g)
        .collect();
    let mut chain = vec![params.clone()];
    chain.extend(traced.checkpoints.iter().cloned());
    chain.push(end);
    for segment in 0..4 {
        let (from, to) = (bounds[segment], bounds[segment + 1]);
        let (replayed, losses) = replay_local_steps(
            &Backend::cpu(),
            &spec,
            &chain[segment],
            &data,
            &indices,
            8,
            &sgd(0.1),
            from..to,
        )
        .unwrap();
        assert_eq!(
            bits(&losses),
            bits(&traced.losses[from as usize..to as usize])
        );
        if segment < 3 {
            assert_eq!(bits(&replayed), bits(&chain[segment + 1]));
        } else {
            assert!(rel_l2(&replayed, &chain[4]) < 1e-6);
        }
    }
}

#[test]
fn checkpoints_and_ranges_outside_the_steps_are_refused() {
    let data = synthetic(100, 6, 1);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 1);
    let indices: Vec<u32> = (0..80).collect();
    let traced = |stops: &[u32]| {
        compute_traced_local_steps(
            &Backend::cpu(),
            &spec,
            &params,
            &data,
            &indices,
            4,
            &sgd(0.1),
            stops,
        )
    };
    assert!(traced(&[4]).is_err());
    assert!(traced(&[0]).is_err());
    assert!(traced(&[3, 1]).is_err());
    let replay = |range| {
        replay_local_steps(
            &Backend::cpu(),
            &spec,
            &params,
            &data,
            &indices,
            4,
            &sgd(0.1),
            range,
        )
    };
    assert!(replay(2..5).is_err());
    assert!(replay(3..3).is_err());
}
