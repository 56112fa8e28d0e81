//! The audit economics, measured by seeded simulation of the real audit draw and rate policy:
//! how likely a node faking a share of its fragments is caught within a horizon, and what
//! share of all compute the audits of honest nodes cost over the same horizon.

use corex_core::Hash;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditPolicy, is_audited};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Population {
    /// Fragments each node computes in the study.
    pub fragments: u32,
    /// Share of its fragments a cheating node fakes, in ppm.
    pub fake_ppm: u32,
    /// Seeded trials with one cheating node each.
    pub trials: u32,
    /// Honest nodes whose audits make up the overhead figure.
    pub honest_nodes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectionStudy {
    /// Share of cheating trials caught within the horizon.
    pub caught: f64,
    /// Mean fragments before the catch, over the caught trials.
    pub mean_fragments_to_catch: f64,
    /// Audited fragments over all fragments, for honest nodes: the compute spent on replays.
    pub audit_overhead: f64,
}

/// One node's run: returns (caught at fragment, audits done).
fn run_node(policy: &AuditPolicy, seed: u64, fragments: u32, faked: &[bool]) -> (Option<u32>, u32) {
    let (mut passed, mut audits) = (0u64, 0u32);
    for index in 0..fragments {
        // Each fragment's result commitment, and the round seed revealed after it.
        let commitment =
            Hash::of_parts(&[b"commitment", &seed.to_le_bytes(), &index.to_le_bytes()]);
        let round_seed =
            Hash::of_parts(&[b"round-seed", &seed.to_le_bytes(), &index.to_le_bytes()]);
        let rate = policy.rate_ppm(passed, 0);
        if is_audited(&round_seed, &commitment, rate) {
            audits += 1;
            if faked[index as usize] {
                return (Some(index + 1), audits);
            }
            passed += 1;
        }
    }
    (None, audits)
}

/// Runs the study; `seed` makes it reproducible.
pub fn study_detection(policy: &AuditPolicy, population: &Population, seed: u64) -> DetectionStudy {
    let n = population.fragments as usize;
    let fake_count =
        (u64::from(population.fragments) * u64::from(population.fake_ppm) / 1_000_000) as usize;
    let mut caught = 0u32;
    let mut catch_sum = 0u64;
    for trial in 0..population.trials {
        let trial_seed = seed ^ (u64::from(trial) << 20);
        // Exactly `fake_count` faked fragments, at seeded positions.
        let mut faked = vec![false; n];
        faked[..fake_count].fill(true);
        faked.shuffle(&mut ChaCha8Rng::seed_from_u64(trial_seed));
        if let (Some(at), _) = run_node(policy, trial_seed, population.fragments, &faked) {
            caught += 1;
            catch_sum += u64::from(at);
        }
    }
    let honest = vec![false; n];
    let audits: u64 = (0..population.honest_nodes)
        .map(|node| {
            u64::from(
                run_node(
                    policy,
                    seed.wrapping_add(0x9e37_79b9 * u64::from(node + 1)),
                    population.fragments,
                    &honest,
                )
                .1,
            )
        })
        .sum();
    let total = u64::from(population.honest_nodes) * u64::from(population.fragments);
    DetectionStudy {
        caught: f64::from(caught) / f64::from(population.trials.max(1)),
        mean_fragments_to_catch: if caught == 0 {
            0.0
        } else {
            catch_sum as f64 / f64::from(caught)
        },
        audit_overhead: if total == 0 {
            0.0
        } else {
            audits as f64 / total as f64
        },
    }
}
