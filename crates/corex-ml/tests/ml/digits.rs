//! End to end on the built-in digits: the gradient job's hyperparameters, trained through the
//! coordinator path (fragments → weighted mean → `Trainer::step`), reach ≥ 95 % test accuracy.

use corex_ml::Backend;
use corex_ml::{
    Dataset, ModelSpec, OptimizerSpec, Trainer, compute_gradient, evaluate, init_parameters,
    weighted_mean,
};

use crate::common::batches;

/// `JobSpec::digits_gradient`: 64 → 512 → 256 → 10, Adam (lr 0.01), 60 rounds of 512 samples.
const HIDDEN: [usize; 2] = [512, 256];
const LEARNING_RATE: f64 = 0.01;
const BATCH: usize = 512;
const ROUNDS: usize = 60;
const FRAGMENTS: usize = 4;

#[test]
fn digits_gradient_job_reaches_95_percent() {
    let data = Dataset::digits().unwrap();
    let split = data.split(0.2, 0);
    let spec = ModelSpec::mlp(data.feature_count(), HIDDEN.to_vec(), data.class_count());
    let optimizer = OptimizerSpec::Adam {
        learning_rate: LEARNING_RATE,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
    };
    let mut trainer = Trainer::new(&spec, &init_parameters(&spec, 0), &optimizer).unwrap();
    let before = evaluate(&spec, &trainer.parameters(), &data, &split.test).unwrap();
    for batch in batches(&split.train, BATCH, ROUNDS, 0) {
        let params = trainer.parameters();
        let outputs: Vec<_> = batch
            .chunks(BATCH.div_ceil(FRAGMENTS))
            .map(|fragment| {
                compute_gradient(&Backend::cpu(), &spec, &params, &data, fragment).unwrap()
            })
            .collect();
        let parts: Vec<(&[f32], u32)> = outputs
            .iter()
            .map(|o| (o.gradient.as_slice(), o.samples))
            .collect();
        trainer.step(&weighted_mean(&parts).unwrap()).unwrap();
    }
    let after = evaluate(&spec, &trainer.parameters(), &data, &split.test).unwrap();
    eprintln!(
        "digits: test accuracy {} → {}, loss {} → {}",
        before.accuracy, after.accuracy, before.loss, after.loss
    );
    assert_eq!(after.samples as usize, split.test.len());
    assert!(after.loss < before.loss);
    assert!(
        after.accuracy >= 0.95,
        "test accuracy {} (loss {})",
        after.accuracy,
        after.loss
    );
}
