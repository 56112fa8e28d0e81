//! Shared fixtures: a small synthetic dataset, batch plans and the relative L2 distance.

use corex_ml::{Dataset, ModelSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` samples of `d` features in 3 classes, roughly separable, deterministic in `seed`.
pub fn synthetic(n: usize, d: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut features = Vec::with_capacity(n * d);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let label = rng.random_range(0..3u32);
        for j in 0..d {
            let centre = if j % 3 == label as usize { 1.0 } else { 0.0 };
            features.push(centre + rng.random_range(-0.8f32..0.8));
        }
        labels.push(label);
    }
    Dataset::from_parts(features, labels, d, 3).unwrap()
}

pub fn small_spec(d: usize) -> ModelSpec {
    ModelSpec::mlp(d, vec![16, 8], 3)
}

/// Relative L2 distance `‖a − b‖ / ‖b‖`, in f64.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

/// `rounds` batches of `batch` indices drawn from `pool`, reshuffled every epoch with `seed`
/// (a partial tail is folded into the next epoch's order, so every batch is full).
pub fn batches(pool: &[u32], batch: usize, rounds: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut queue: Vec<u32> = Vec::new();
    let mut out = Vec::with_capacity(rounds);
    while out.len() < rounds {
        while queue.len() < batch {
            let mut epoch = pool.to_vec();
            for i in (1..epoch.len()).rev() {
                let j = rng.random_range(0..=i);
                epoch.swap(i, j);
            }
            queue.extend(epoch);
        }
        out.push(queue.drain(..batch).collect());
    }
    out
}
