//! Device tiers, task priority and behaviour analysis, pure. A tier says which class of work a
//! node is trusted with. It comes from what the node has shown: the speed its verified
//! fragments show, or before any, the speed its capability challenge showed. Online time,
//! reputation and stake decide whether a fast node is trusted with heavy work yet. Priority
//! orders nodes that ask for work at the same time.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceTier {
    Edge,
    Cpu,
    Gpu,
    Hpc,
}

/// What the coordinator knows about a node, in integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    /// Verified speed in MFLOP/s (see [`verified_speed`]).
    pub verified_mflops: u64,
    /// Milliseconds since the node registered, while it kept answering.
    pub online_ms: u64,
    /// Ledger reputation score, 0 ..= 1000.
    pub reputation: u32,
    /// Whole CXT staked.
    pub stake_cxt: u64,
}

/// Thresholds of the tiers and of trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierPolicy {
    /// Below this speed a node is an edge device.
    pub cpu_from_mflops: u64,
    /// From this speed, a GPU-class node.
    pub gpu_from_mflops: u64,
    /// From this speed, an HPC-class node (a multi-GPU server).
    pub hpc_from_mflops: u64,
    /// A node is trusted with GPU and HPC work once it has been online this long with at
    /// least `trusted_reputation`, or has staked `trusted_stake_cxt`; until then it works in
    /// the CPU tier at most.
    pub trusted_online_ms: u64,
    pub trusted_reputation: u32,
    pub trusted_stake_cxt: u64,
    /// Fragments computed this many times slower than the capability challenge showed are
    /// flagged by [`TierPolicy::behaviour`].
    pub contradiction_factor: u64,
    /// Only fragments the verified speed needs at least this long for are judged: on shorter
    /// ones the round trip, not the compute, sets the time.
    pub min_judged_ms: u64,
}

impl Default for TierPolicy {
    fn default() -> Self {
        Self {
            cpu_from_mflops: 20_000,
            gpu_from_mflops: 2_000_000,
            hpc_from_mflops: 50_000_000,
            trusted_online_ms: 3_600_000,
            trusted_reputation: 500,
            trusted_stake_cxt: 1_000,
            contradiction_factor: 4,
            min_judged_ms: 50,
        }
    }
}

/// What a node's fragment times say about its verified speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Too few timed fragments to say.
    Unknown,
    /// Observed speed is no more than the factor below the verified one.
    Consistent { observed_mflops: u64 },
    /// Fragments come far slower than the challenge showed: the challenge was answered by
    /// stronger hardware than does the work, or the node slows down once measured. (Faster
    /// is no contradiction: the challenge's time includes a round trip, so it bounds the
    /// speed from below.)
    Contradicts { observed_mflops: u64 },
}

/// Fewest timed fragments before behaviour is judged.
const MIN_TIMED_FRAGMENTS: usize = 5;

impl TierPolicy {
    pub fn tier(&self, standing: &Standing) -> DeviceTier {
        let by_speed = match standing.verified_mflops {
            speed if speed >= self.hpc_from_mflops => DeviceTier::Hpc,
            speed if speed >= self.gpu_from_mflops => DeviceTier::Gpu,
            speed if speed >= self.cpu_from_mflops => DeviceTier::Cpu,
            _ => DeviceTier::Edge,
        };
        let trusted = (standing.online_ms >= self.trusted_online_ms
            && standing.reputation >= self.trusted_reputation)
            || standing.stake_cxt >= self.trusted_stake_cxt;
        if trusted {
            by_speed
        } else {
            by_speed.min(DeviceTier::Cpu)
        }
    }

    /// Lease order among nodes asking at once, highest first: tier, then reputation raised
    /// by stake (`reputation × (1000 + min(500, 10 × ⌊√stake⌋)) / 1000`), then online minutes.
    pub fn priority(&self, standing: &Standing) -> u64 {
        let tier = self.tier(standing) as u64;
        let boost = 1_000 + (10 * standing.stake_cxt.isqrt()).min(500);
        let reputation = u64::from(standing.reputation.min(1_000)) * boost / 1_000;
        let online_minutes = (standing.online_ms / 60_000).min((1 << 24) - 1);
        (tier << 48) | (reputation << 24) | online_minutes
    }

    /// Compares the speed a node's fragments show, `(cost MFLOP, milliseconds from lease
    /// to result)` each, with the speed its capability challenge verified. Fragments too
    /// light to time (under `min_judged_ms` at the verified speed) are left out; the observed
    /// speed is the median of the rest, so one slow network moment does not flag a node.
    ///
    /// How much of its matrix-product speed a node reaches on real work depends on the work
    /// and the device (a convolution net on a CPU, small kernels on a GPU: a few percent), so
    /// where peers on the same backend have been observed, `peer_efficiency_ppm` (the median of
    /// their observed over verified speeds, parts per million) sets the expectation: a node
    /// contradicts its challenge only if it is the factor below its verified speed *and* the
    /// factor below its peers' efficiency. Without peers the verified speed alone decides.
    pub fn behaviour(
        &self,
        verified_mflops: u64,
        timed: &[(u64, u64)],
        peer_efficiency_ppm: Option<u64>,
    ) -> Behaviour {
        let judged_from = u128::from(verified_mflops) * u128::from(self.min_judged_ms) / 1_000;
        let mut speeds: Vec<u64> = timed
            .iter()
            .filter(|(cost, _)| u128::from(*cost) >= judged_from)
            .map(|&(cost, ms)| (u128::from(cost) * 1_000 / u128::from(ms.max(1))) as u64)
            .collect();
        if speeds.len() < MIN_TIMED_FRAGMENTS || verified_mflops == 0 {
            return Behaviour::Unknown;
        }
        speeds.sort_unstable();
        let observed_mflops = speeds[speeds.len() / 2];
        let factor = self.contradiction_factor.max(1);
        let below_peers = peer_efficiency_ppm.is_none_or(|peers| {
            efficiency_ppm(observed_mflops, verified_mflops).saturating_mul(factor) < peers
        });
        if observed_mflops.saturating_mul(factor) < verified_mflops && below_peers {
            Behaviour::Contradicts { observed_mflops }
        } else {
            Behaviour::Consistent { observed_mflops }
        }
    }
}

/// Observed over verified speed, parts per million.
pub fn efficiency_ppm(observed_mflops: u64, verified_mflops: u64) -> u64 {
    (u128::from(observed_mflops) * 1_000_000 / u128::from(verified_mflops.max(1))) as u64
}

/// The speed a node is credited with: what its verified fragments show once they show
/// anything (audits check that work), before that what its capability challenge showed.
pub fn verified_speed(challenge_mflops: u64, observed_mflops: Option<u64>) -> u64 {
    observed_mflops.unwrap_or(challenge_mflops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_sets_the_tier_and_trust_unlocks_the_heavy_ones() {
        let policy = TierPolicy::default();
        let new_gpu = Standing {
            verified_mflops: 10_000_000,
            ..Standing::default()
        };
        assert_eq!(
            policy.tier(&new_gpu),
            DeviceTier::Cpu,
            "new: CPU tier at most"
        );
        let proven = Standing {
            online_ms: 2 * 3_600_000,
            reputation: 600,
            ..new_gpu
        };
        assert_eq!(policy.tier(&proven), DeviceTier::Gpu);
        let staked = Standing {
            stake_cxt: 5_000,
            ..new_gpu
        };
        assert_eq!(policy.tier(&staked), DeviceTier::Gpu);
        let phone = Standing {
            verified_mflops: 3_000,
            stake_cxt: 1_000_000,
            ..Standing::default()
        };
        assert_eq!(policy.tier(&phone), DeviceTier::Edge, "stake buys no speed");
        assert!(policy.priority(&proven) > policy.priority(&new_gpu));
        assert!(policy.priority(&staked) > policy.priority(&new_gpu));
    }

    #[test]
    fn fragment_times_that_contradict_the_benchmark_are_flagged() {
        let policy = TierPolicy::default();
        // Verified 10 GFLOP/s; 1,000 MFLOP fragments taking ~100 ms agree, and faster is fine.
        let honest: Vec<(u64, u64)> = [95, 100, 104, 99, 2_000].map(|ms| (1_000, ms)).to_vec();
        assert_eq!(
            policy.behaviour(10_000, &honest, None),
            Behaviour::Consistent {
                observed_mflops: 10_000
            }
        );
        let quick: Vec<(u64, u64)> = [10; 5].map(|ms| (1_000, ms)).to_vec();
        assert!(matches!(
            policy.behaviour(10_000, &quick, None),
            Behaviour::Consistent { .. }
        ));
        // Fragments too light to time (10 MFLOP: 1 ms at the verified speed) are not judged.
        let light: Vec<(u64, u64)> = [50; 8].map(|ms| (10, ms)).to_vec();
        assert_eq!(policy.behaviour(10_000, &light, None), Behaviour::Unknown);
        // The same fragments taking 2 s each: the challenge was answered by faster hardware.
        let slow: Vec<(u64, u64)> = [2_000; 6].map(|ms| (1_000, ms)).to_vec();
        assert!(matches!(
            policy.behaviour(10_000, &slow, None),
            Behaviour::Contradicts {
                observed_mflops: 500
            }
        ));
        // Peers reach 5 % of their challenges' speed on this work too: no contradiction; peers
        // at 40 % (this node at 5 %, 8× lower) make it one.
        assert!(matches!(
            policy.behaviour(10_000, &slow, Some(50_000)),
            Behaviour::Consistent { .. }
        ));
        assert!(matches!(
            policy.behaviour(10_000, &slow, Some(400_000)),
            Behaviour::Contradicts { .. }
        ));
        assert_eq!(efficiency_ppm(500, 10_000), 50_000);
        assert_eq!(
            policy.behaviour(10_000, &slow[..3], None),
            Behaviour::Unknown
        );
        assert_eq!(verified_speed(10_000, Some(500)), 500);
        assert_eq!(verified_speed(10_000, None), 10_000);
    }
}
