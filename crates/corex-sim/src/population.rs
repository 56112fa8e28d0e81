//! Virtual nodes and fragments, drawn from a seeded stream.
//!
//! Speeds (MFLOP/s) are log-uniform within four classes mixed 50 / 35 / 13 / 2 %: edge
//! devices 1–20 GFLOP/s, CPUs 20–500 GFLOP/s, GPUs 2–40 TFLOP/s, HPC servers 50–200 TFLOP/s.
//! A node's true speed differs from its verified one by up to ±10 %. Fragment costs are
//! log-uniform from 5 GFLOP to 200 TFLOP, so that every class has work of its size.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpeedClass {
    Edge,
    Cpu,
    Gpu,
    Hpc,
}

/// One simulated node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VirtualNode {
    pub class: SpeedClass,
    /// What its capability challenge verified (MFLOP/s): what the scheduler sees.
    pub verified_mflops: u64,
    /// What it really computes at (MFLOP/s).
    pub true_mflops: u64,
    /// When it first joins (ms).
    pub joins_ms: u64,
}

/// The nodes and fragment costs of one simulation.
#[derive(Debug, Clone)]
pub struct Population {
    pub nodes: Vec<VirtualNode>,
    pub fragment_costs: Vec<u64>,
}

const CLASSES: [(SpeedClass, u32, f64, f64); 4] = [
    (SpeedClass::Edge, 500, 1e3, 2e4),
    (SpeedClass::Cpu, 350, 2e4, 5e5),
    (SpeedClass::Gpu, 130, 2e6, 4e7),
    (SpeedClass::Hpc, 20, 5e7, 2e8),
];

fn log_uniform(rng: &mut ChaCha8Rng, low: f64, high: f64) -> f64 {
    (low.ln() + rng.random::<f64>() * (high.ln() - low.ln())).exp()
}

impl Population {
    /// `nodes` nodes joining over the first `join_window_ms`, and `fragments` fragments.
    pub fn draw(nodes: u32, fragments: u32, join_window_ms: u64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nodes = (0..nodes)
            .map(|_| {
                let pick = rng.random_range(0..1_000u32);
                let mut cumulative = 0;
                let (class, _, low, high) = CLASSES
                    .iter()
                    .copied()
                    .find(|(_, per_mille, _, _)| {
                        cumulative += per_mille;
                        pick < cumulative
                    })
                    .unwrap_or(CLASSES[0]);
                let verified = log_uniform(&mut rng, low, high);
                let jitter = 0.9 + 0.2 * rng.random::<f64>();
                VirtualNode {
                    class,
                    verified_mflops: verified as u64,
                    true_mflops: ((verified * jitter) as u64).max(1),
                    joins_ms: rng.random_range(0..join_window_ms.max(1)),
                }
            })
            .collect();
        let fragment_costs = (0..fragments)
            .map(|_| log_uniform(&mut rng, 5e3, 2e8) as u64)
            .collect();
        Self {
            nodes,
            fragment_costs,
        }
    }
}
