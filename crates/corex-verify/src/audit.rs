//! Which results get replayed, decided by randomness nobody could know when they committed.
//!
//! The coordinator makes a hash chain `s_n → s_{n−1} = H(s_n) → … → s_0` from a secret and
//! publishes the anchor `s_0` (on the ledger) before any result exists. Round `k` uses `s_k`,
//! revealed only after the round's results are committed; anyone checks `H(s_k) = s_{k−1}`.
//! A result is audited when `H(s_k ‖ commitment)`, read as a number below 10⁶, falls under the
//! node's audit rate. A node cannot tell in advance which of its fragments will be replayed,
//! and the coordinator cannot pick them either: the chain was fixed before the results.

use corex_core::Hash;
use serde::{Deserialize, Serialize};

use crate::error::VerifyError;

const PPM: u64 = 1_000_000;

/// The coordinator's private side of the chain.
#[derive(Clone)]
pub struct SeedChain {
    /// `seeds[k]` is `s_k`; `seeds[0]` is the public anchor.
    seeds: Vec<Hash>,
}

impl SeedChain {
    /// A chain of `length` reveals from `secret` (which comes from the OS at the edge).
    pub fn new(secret: [u8; 32], length: usize) -> Self {
        let mut seeds = vec![Hash(secret)];
        for _ in 0..length {
            let next = Hash::of_parts(&[b"corex-audit-seed", &seeds[seeds.len() - 1].0]);
            seeds.push(next);
        }
        seeds.reverse();
        Self { seeds }
    }

    pub fn anchor(&self) -> Hash {
        self.seeds[0]
    }

    /// How many reveals the chain holds.
    pub fn len(&self) -> usize {
        self.seeds.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `s_k` for `k ≥ 1`; reveal it only after round `k`'s results are committed.
    pub fn reveal(&self, k: usize) -> Result<Hash, VerifyError> {
        if k == 0 || k >= self.seeds.len() {
            return Err(VerifyError::Parameter(format!(
                "reveal {k} is outside 1..={}",
                self.len()
            )));
        }
        Ok(self.seeds[k])
    }
}

/// Checks that `seed` is the reveal that follows `previous` (the anchor or the last reveal).
pub fn follows(previous: &Hash, seed: &Hash) -> bool {
    Hash::of_parts(&[b"corex-audit-seed", &seed.0]) == *previous
}

/// Whether the result with `commitment` is audited under `seed` at `rate_ppm`.
pub fn is_audited(seed: &Hash, commitment: &Hash, rate_ppm: u32) -> bool {
    let draw = Hash::of_parts(&[b"corex-audit-draw", &seed.0, &commitment.0]);
    let mut word = [0u8; 8];
    word.copy_from_slice(&draw.0[..8]);
    u64::from_le_bytes(word) % PPM < u64::from(rate_ppm)
}

/// Which of a traced result's `segments` an audit of it replays, drawn like the audit itself
/// from the revealed seed and the result's commitment (see `corex_core::trace`).
pub fn audited_segment(seed: &Hash, commitment: &Hash, segments: u32) -> u32 {
    let draw = Hash::of_parts(&[b"corex-audit-segment", &seed.0, &commitment.0]);
    let mut word = [0u8; 8];
    word.copy_from_slice(&draw.0[..8]);
    (u64::from_le_bytes(word) % u64::from(segments.max(1))) as u32
}

/// How often a node's results are audited, from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPolicy {
    /// A node's first results are all audited until it has passed this many audits.
    pub probation_audits: u32,
    /// Rate once on probation no more, before any further passed audit.
    pub new_node_ppm: u32,
    /// Never audit less often than this.
    pub floor_ppm: u32,
    /// Passed audits over which the rate falls from `new_node_ppm` to the floor.
    pub proving_audits: u32,
}

impl Default for AuditPolicy {
    /// Tuned with `corex bench verify` (docs/verification.md): a node faking 5 % of 1,000
    /// fragments is caught with more than 99 % probability while honest nodes' audits cost
    /// under 10 % of compute. The floor alone gives (1 − 0.09)^50 ≈ 0.9 % escape; the new-node
    /// rate catches early cheats.
    fn default() -> Self {
        Self {
            probation_audits: 2,
            new_node_ppm: 250_000,
            floor_ppm: 90_000,
            proving_audits: 10,
        }
    }
}

impl AuditPolicy {
    /// Everything while on probation or after any failed audit; otherwise falling linearly
    /// with passed audits from the new-node rate to the floor.
    pub fn rate_ppm(&self, passed_audits: u64, failed_audits: u64) -> u32 {
        if failed_audits > 0 || passed_audits < u64::from(self.probation_audits) {
            return 1_000_000;
        }
        let passed_audits = passed_audits - u64::from(self.probation_audits);
        if self.proving_audits == 0 {
            return self.new_node_ppm.max(self.floor_ppm);
        }
        let span = u64::from(self.new_node_ppm.saturating_sub(self.floor_ppm));
        let proven = passed_audits.min(u64::from(self.proving_audits));
        let drop = span * proven / u64::from(self.proving_audits);
        (u64::from(self.new_node_ppm) - drop).max(u64::from(self.floor_ppm)) as u32
    }

    /// How many results an honest node returns, in expectation, before its rate stops
    /// falling (the floor; the new-node rate when `proving_audits` is 0): one per probation
    /// audit, then `1 / rate` for each passed audit at each rate on the way down (each audit
    /// is an independent draw at the node's current rate).
    pub fn expected_results_to_lowest_rate(&self) -> f64 {
        let probation = u64::from(self.probation_audits);
        let waits: f64 = (0..u64::from(self.proving_audits))
            .map(|k| self.rate_ppm(probation + k, 0))
            .filter(|&rate| rate > self.floor_ppm)
            .map(|rate| 1_000_000.0 / f64::from(rate))
            .sum();
        f64::from(self.probation_audits) + waits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveals_follow_the_anchor_one_by_one() {
        let chain = SeedChain::new([9; 32], 5);
        let mut previous = chain.anchor();
        for k in 1..=5 {
            let seed = chain.reveal(k).unwrap();
            assert!(follows(&previous, &seed));
            previous = seed;
        }
        assert!(!follows(&chain.anchor(), &chain.reveal(2).unwrap()));
        assert!(chain.reveal(0).is_err() && chain.reveal(6).is_err());
    }

    #[test]
    fn the_floor_takes_the_sum_of_the_waits_at_each_rate() {
        let policy = AuditPolicy::default();
        // Probation: 2 results; then 10 passes at 25 %, 23.4 %, …, 10.6 %.
        let waits: f64 = (0..10).map(|k| 1.0 / (0.25 - 0.016 * f64::from(k))).sum();
        assert!((policy.expected_results_to_lowest_rate() - (2.0 + waits)).abs() < 1e-9);
        let no_proving = AuditPolicy {
            proving_audits: 0,
            ..policy
        };
        assert_eq!(no_proving.expected_results_to_lowest_rate(), 2.0);
    }

    #[test]
    fn the_audited_share_matches_the_rate() {
        let seed = Hash::of(b"seed");
        let audited = (0..100_000u32)
            .filter(|i| is_audited(&seed, &Hash::of(&i.to_le_bytes()), 90_000))
            .count();
        assert!((8_500..9_500).contains(&audited), "{audited}");
    }

    #[test]
    fn segments_are_drawn_evenly() {
        let seed = Hash::of(b"seed");
        let mut counts = [0u32; 4];
        for i in 0..40_000u32 {
            counts[audited_segment(&seed, &Hash::of(&i.to_le_bytes()), 4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (9_500..10_500).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn the_rate_falls_with_proof_and_never_under_the_floor() {
        let policy = AuditPolicy::default();
        assert_eq!(policy.rate_ppm(0, 0), 1_000_000);
        assert_eq!(policy.rate_ppm(2, 0), 250_000);
        assert!(policy.rate_ppm(7, 0) < 250_000);
        assert_eq!(policy.rate_ppm(1_000, 0), 90_000);
        assert_eq!(policy.rate_ppm(1_000, 1), 1_000_000);
    }
}
