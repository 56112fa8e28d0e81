//! The coordinator path (fragments → weighted mean → `Trainer::step`) against the
//! single-process reference loop.

use corex_ml::Backend;
use corex_ml::{
    Dataset, ModelSpec, OptimizerSpec, Trainer, compute_gradient, init_parameters, train_reference,
    weighted_mean,
};

use crate::common::{batches, rel_l2, small_spec, synthetic};
use crate::families::{cnn, lm};

/// Runs the distributed path: each batch cut into uneven fragments whose gradients are
/// aggregated by sample-weighted mean and applied by the trainer.
fn train_fragmented(
    spec: &ModelSpec,
    params: &[f32],
    optimizer: &OptimizerSpec,
    data: &Dataset,
    plan: &[Vec<u32>],
) -> Vec<f32> {
    let mut trainer = Trainer::new(spec, params, optimizer).unwrap();
    for batch in plan {
        let cuts = [0, batch.len() / 5, batch.len() / 2 + 3, batch.len()];
        let outputs: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                compute_gradient(
                    &Backend::cpu(),
                    spec,
                    &trainer.parameters(),
                    data,
                    &batch[w[0]..w[1]],
                )
                .unwrap()
            })
            .collect();
        let parts: Vec<(&[f32], u32)> = outputs
            .iter()
            .map(|o| (o.gradient.as_slice(), o.samples))
            .collect();
        trainer.step(&weighted_mean(&parts).unwrap()).unwrap();
    }
    trainer.parameters()
}

fn check_equivalence(optimizer: OptimizerSpec) {
    let data = synthetic(400, 8, 9);
    let spec = small_spec(8);
    let params = init_parameters(&spec, 21);
    let pool: Vec<u32> = (0..400).collect();
    let plan = batches(&pool, 96, 20, 4);
    let reference = train_reference(&spec, &params, &optimizer, &data, &plan).unwrap();
    let fragmented = train_fragmented(&spec, &params, &optimizer, &data, &plan);
    let moved = rel_l2(&reference, &params);
    assert!(
        moved > 0.05,
        "training barely moved the parameters ({moved})"
    );
    let distance = rel_l2(&fragmented, &reference);
    eprintln!("{optimizer:?}: moved {moved:.3}, fragmented vs reference {distance:.3e}");
    assert!(distance < 1e-4, "{optimizer:?}: relative L2 {distance}");
}

#[test]
fn sgd_momentum_matches_reference() {
    check_equivalence(OptimizerSpec::Sgd {
        learning_rate: 0.2,
        momentum: 0.9,
    });
}

#[test]
fn plain_sgd_matches_reference() {
    check_equivalence(OptimizerSpec::Sgd {
        learning_rate: 0.5,
        momentum: 0.0,
    });
}

#[test]
fn adam_matches_reference() {
    check_equivalence(OptimizerSpec::Adam {
        learning_rate: 0.01,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
    });
}

#[test]
fn plain_sgd_step_is_textbook() {
    let spec = small_spec(4);
    let params = init_parameters(&spec, 1);
    let gradient: Vec<f32> = (0..params.len()).map(|i| (i % 7) as f32 - 3.0).collect();
    let optimizer = OptimizerSpec::Sgd {
        learning_rate: 0.25,
        momentum: 0.0,
    };
    let mut trainer = Trainer::new(&spec, &params, &optimizer).unwrap();
    trainer.step(&gradient).unwrap();
    let expected: Vec<f32> = params
        .iter()
        .zip(&gradient)
        .map(|(p, g)| p - 0.25 * g)
        .collect();
    assert!(rel_l2(&trainer.parameters(), &expected) < 1e-7);
}

/// Nesterov momentum (DiLoCo's outer optimizer) with a constant gradient `g`: the first step
/// moves `lr (1 + μ) g`, the second `lr (1 + μ + μ²) g` (heavy ball: `lr g`, then
/// `lr (1 + μ) g`); each fragment path matches the reference loop.
#[test]
fn nesterov_steps_are_textbook_and_match_the_reference() {
    let spec = small_spec(4);
    let params = init_parameters(&spec, 1);
    let gradient: Vec<f32> = (0..params.len()).map(|i| (i % 7) as f32 - 3.0).collect();
    let (rate, momentum) = (0.25f32, 0.9f32);
    let optimizer = OptimizerSpec::Nesterov {
        learning_rate: f64::from(rate),
        momentum: f64::from(momentum),
    };
    let mut trainer = Trainer::new(&spec, &params, &optimizer).unwrap();
    let mut expected = params.clone();
    for factor in [1.0 + momentum, 1.0 + momentum + momentum * momentum] {
        trainer.step(&gradient).unwrap();
        for (w, g) in expected.iter_mut().zip(&gradient) {
            *w -= rate * factor * g;
        }
        assert!(rel_l2(&trainer.parameters(), &expected) < 1e-6);
    }
    check_equivalence(optimizer);
}

#[test]
fn rejected_gradient_leaves_trainer_untouched() {
    let spec = small_spec(4);
    let params = init_parameters(&spec, 1);
    let optimizer = OptimizerSpec::Adam {
        learning_rate: 0.01,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
    };
    let mut trainer = Trainer::new(&spec, &params, &optimizer).unwrap();
    let mut gradient = vec![0.5f32; params.len()];
    gradient[3] = f32::NAN;
    assert_eq!(
        trainer.step(&gradient),
        Err(corex_ml::MlError::NonFinite { index: 3 })
    );
    assert!(trainer.step(&gradient[1..]).is_err());
    assert_eq!(trainer.parameters(), params);
    gradient[3] = 0.5;
    trainer.step(&gradient).unwrap();
    assert_ne!(trainer.parameters(), params);
}

/// Three steps of `gradients` from `params`, the trainer saved and restored after `saved_after`
/// of them (when given), for a model of each family.
fn steps_with_restart(
    spec: &ModelSpec,
    optimizer: &OptimizerSpec,
    gradients: &[Vec<f32>],
    saved_after: Option<usize>,
) -> Vec<f32> {
    let params = init_parameters(spec, 5);
    let mut trainer = Trainer::new(spec, &params, optimizer).unwrap();
    for (step, gradient) in gradients.iter().enumerate() {
        if saved_after == Some(step) {
            let state = trainer.state().unwrap();
            drop(trainer);
            trainer = Trainer::restore(spec, optimizer, state).unwrap();
        }
        trainer
            .step_at_rate(gradient, 0.01 / (step + 1) as f64)
            .unwrap();
    }
    trainer.parameters()
}

#[test]
fn a_restored_trainer_steps_to_the_same_bits_as_the_original() {
    let adam = OptimizerSpec::Adam {
        learning_rate: 0.01,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
    };
    let momentum = OptimizerSpec::Sgd {
        learning_rate: 0.1,
        momentum: 0.9,
    };
    let specs = [small_spec(6), cnn(), lm()];
    for spec in &specs {
        let count = spec.parameter_count();
        let gradients: Vec<Vec<f32>> = (0..3)
            .map(|step| {
                (0..count)
                    .map(|i| ((i * 7 + step * 13) % 11) as f32 / 11.0 - 0.5)
                    .collect()
            })
            .collect();
        for optimizer in [&adam, &momentum] {
            let straight = steps_with_restart(spec, optimizer, &gradients, None);
            for saved_after in 1..3 {
                let restored = steps_with_restart(spec, optimizer, &gradients, Some(saved_after));
                assert_eq!(
                    restored, straight,
                    "{spec:?} {optimizer:?}: restored after step {saved_after}"
                );
            }
        }
    }
}

#[test]
fn a_state_of_another_model_is_refused() {
    let optimizer = OptimizerSpec::Sgd {
        learning_rate: 0.1,
        momentum: 0.9,
    };
    let small = small_spec(4);
    let state = Trainer::new(&small, &init_parameters(&small, 1), &optimizer)
        .unwrap()
        .state()
        .unwrap();
    assert!(Trainer::restore(&small_spec(6), &optimizer, state.clone()).is_err());
    let mut missing_tensor = state;
    missing_tensor.param_ids.pop();
    assert!(Trainer::restore(&small, &optimizer, missing_tensor).is_err());
}

#[test]
fn a_scheduled_rate_is_the_rate_the_step_uses() {
    let spec = small_spec(4);
    let params = init_parameters(&spec, 1);
    let optimizer = OptimizerSpec::Sgd {
        learning_rate: 0.25,
        momentum: 0.0,
    };
    let mut trainer = Trainer::new(&spec, &params, &optimizer).unwrap();
    trainer.step_at_rate(&vec![1.0; params.len()], 0.0).unwrap();
    assert_eq!(trainer.parameters(), params);
    trainer.step_at_rate(&vec![1.0; params.len()], 0.5).unwrap();
    let expected: Vec<f32> = params.iter().map(|p| p - 0.5).collect();
    assert!(rel_l2(&trainer.parameters(), &expected) < 1e-7);
}
