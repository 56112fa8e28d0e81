//! The coordinator path (fragments → weighted mean → `Trainer::step`) against the
//! single-process reference loop.

use corex_ml::{
    Dataset, ModelSpec, OptimizerSpec, Trainer, compute_gradient, init_parameters, train_reference,
    weighted_mean,
};

use crate::common::{batches, rel_l2, small_spec, synthetic};

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
                compute_gradient(spec, &trainer.parameters(), data, &batch[w[0]..w[1]]).unwrap()
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
