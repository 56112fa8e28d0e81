//! Single-process training on the built-in digits set, for choosing default hyperparameters
//! and timing them.
//!
//! ```text
//! cargo run --release -p corex-ml --example train_digits -- \
//!     [hidden=512,256] [opt=adam|sgd] [lr=0.01] [momentum=0.9] [batch=512] [rounds=60] \
//!     [seed=0] [split_seed=0] [every=10]
//! ```
//!
//! Prints test accuracy every `every` rounds (Trainer path: whole-batch gradients applied by
//! `Trainer::step`), then times `train_reference` over the same plan and reports its accuracy.

use std::collections::HashMap;
use std::time::Instant;

use corex_ml::{
    Dataset, ModelSpec, OptimizerSpec, Trainer, compute_gradient, evaluate, init_parameters,
    train_reference,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: HashMap<String, String> = std::env::args()
        .skip(1)
        .filter_map(|arg| {
            arg.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let get = |key: &str, default: &str| args.get(key).cloned().unwrap_or(default.to_string());
    let hidden: Vec<usize> = get("hidden", "512,256")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let lr: f64 = get("lr", "0.01").parse()?;
    let optimizer = match get("opt", "adam").as_str() {
        "sgd" => OptimizerSpec::Sgd {
            learning_rate: lr,
            momentum: get("momentum", "0.9").parse()?,
        },
        _ => OptimizerSpec::Adam {
            learning_rate: lr,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
        },
    };
    let batch: usize = get("batch", "512").parse()?;
    let rounds: usize = get("rounds", "60").parse()?;
    let seed: u64 = get("seed", "0").parse()?;
    let split_seed: u64 = get("split_seed", "0").parse()?;
    let every: usize = get("every", "10").parse()?;
    let compare = get("compare", "1") == "1";

    let data = Dataset::digits()?;
    let split = data.split(0.2, split_seed);
    let spec = ModelSpec {
        input: data.feature_count(),
        hidden,
        classes: data.class_count(),
    };
    let params = init_parameters(&spec, seed);
    let plan = epoch_batches(&split.train, batch, rounds, seed);
    println!(
        "spec {spec:?}, {} params, {optimizer:?}, batch {batch}, rounds {rounds}, train {} test {}",
        spec.parameter_count(),
        split.train.len(),
        split.test.len()
    );

    let started = Instant::now();
    let mut trainer = Trainer::new(&spec, &params, &optimizer)?;
    for (round, indices) in plan.iter().enumerate() {
        let output = compute_gradient(&spec, &trainer.parameters(), &data, indices)?;
        trainer.step(&output.gradient)?;
        if (round + 1) % every == 0 || round + 1 == rounds {
            let eval = evaluate(&spec, &trainer.parameters(), &data, &split.test)?;
            println!(
                "round {:4}  train loss {:.4}  test loss {:.4}  test acc {:.4}",
                round + 1,
                output.loss,
                eval.loss,
                eval.accuracy
            );
        }
    }
    println!(
        "trainer path: {:.2?} (incl. evaluations)",
        started.elapsed()
    );

    if compare {
        let started = Instant::now();
        let reference = train_reference(&spec, &params, &optimizer, &data, &plan)?;
        let elapsed = started.elapsed();
        let eval = evaluate(&spec, &reference, &data, &split.test)?;
        println!(
            "train_reference: {elapsed:.2?} for {rounds} rounds, test acc {:.4}, test loss {:.4}",
            eval.accuracy, eval.loss
        );
        let distance = rel_l2(&trainer.parameters(), &reference);
        println!("relative L2 trainer vs reference: {distance:.3e}");
    }
    Ok(())
}

/// Full batches drawn from per-epoch seeded shuffles of `pool`.
fn epoch_batches(pool: &[u32], batch: usize, rounds: usize, seed: u64) -> Vec<Vec<u32>> {
    if pool.is_empty() || batch == 0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut queue: Vec<u32> = Vec::new();
    let mut out = Vec::with_capacity(rounds);
    while out.len() < rounds {
        while queue.len() < batch {
            let mut epoch = pool.to_vec();
            for i in (1..epoch.len()).rev() {
                epoch.swap(i, rng.random_range(0..=i));
            }
            queue.extend(epoch);
        }
        out.push(queue.drain(..batch).collect());
    }
    out
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}
