//! Reputation profiles: what a node has done and failed, the score that follows from it, the
//! tier and task priority that follow from the score, and the reputation factor in rewards.

use corex_core::Hash;
use serde::{Deserialize, Serialize};

use crate::amount::{BASE_UNITS_PER_CXT, PPM, isqrt};
use crate::params::Params;
use crate::tx::{DeviceClass, SoftReason, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Active,
    /// Removed after repeated hard rejects: its work is no longer recorded or paid.
    Removed,
}

/// Reputation tiers, by score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Probation,
    Standard,
    Trusted,
    Proven,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProfile {
    pub device_fingerprint: Hash,
    pub device_class: DeviceClass,
    pub registered_epoch: u64,
    pub tasks_done: u64,
    /// Soft rejects: timeouts and infrastructure faults, and suspicious results.
    pub failures: u64,
    pub hard_rejects: u32,
    /// Suspicious soft rejects and hard rejects.
    pub abnormal_events: u64,
    /// Rewards that have vested into the balance.
    pub rewards_claimed: u128,
    /// Rewards voided by hard rejects.
    pub rewards_voided: u128,
    /// Stake and unbonding stake taken by slashing.
    pub slashed: u128,
    pub score: u32,
    pub status: NodeStatus,
}

impl NodeProfile {
    pub fn new(
        device_fingerprint: Hash,
        device_class: DeviceClass,
        epoch: u64,
        params: &Params,
    ) -> Self {
        Self {
            device_fingerprint,
            device_class,
            registered_epoch: epoch,
            tasks_done: 0,
            failures: 0,
            hard_rejects: 0,
            abnormal_events: 0,
            rewards_claimed: 0,
            rewards_voided: 0,
            slashed: 0,
            score: params.score_start,
            status: NodeStatus::Active,
        }
    }

    /// Failed verdicts over all verdicts, in ppm.
    pub fn failure_rate_ppm(&self) -> u64 {
        let failed = self.failures + u64::from(self.hard_rejects);
        let total = self.tasks_done + failed;
        if total == 0 {
            0
        } else {
            (u128::from(failed) * PPM / u128::from(total)) as u64
        }
    }

    /// Applies a verdict's effect on counters and score (slashing is the state's job).
    pub fn record(&mut self, verdict: &Verdict, params: &Params) {
        match verdict {
            Verdict::Accept => {
                self.tasks_done += 1;
                self.score = (self.score + params.score_accept_gain).min(params.score_max);
            }
            Verdict::SoftReject { reason } => {
                self.failures += 1;
                let penalty = match reason {
                    SoftReason::Timeout | SoftReason::Infrastructure | SoftReason::Unhelpful => {
                        params.score_soft_penalty
                    }
                    SoftReason::Suspicious => {
                        self.abnormal_events += 1;
                        params.score_suspicious_penalty
                    }
                };
                self.score = self.score.saturating_sub(penalty);
            }
            Verdict::HardReject { .. } => {
                self.hard_rejects += 1;
                self.abnormal_events += 1;
                self.score = 0;
                if self.hard_rejects >= params.removal_hard_rejects {
                    self.status = NodeStatus::Removed;
                }
            }
        }
    }

    pub fn tier(&self, params: &Params) -> Tier {
        let fifth = params.score_max / 5;
        match self.score {
            s if s < fifth => Tier::Probation,
            s if s < fifth * 5 / 2 => Tier::Standard,
            s if s < fifth * 4 => Tier::Trusted,
            _ => Tier::Proven,
        }
    }

    /// `floor + score × (1 − floor) / score_max`, in ppm.
    pub fn reputation_factor_ppm(&self, params: &Params) -> u128 {
        let floor = u128::from(params.reputation_floor_ppm);
        floor + u128::from(self.score) * (PPM - floor) / u128::from(params.score_max)
    }

    /// Task priority: score scaled by Stake-Boost; removed nodes get none.
    pub fn priority(&self, stake: u128, params: &Params) -> u64 {
        if self.status == NodeStatus::Removed {
            return 0;
        }
        (u128::from(self.score) * stake_boost_ppm(stake, params) / PPM) as u64
    }
}

/// Stake-Boost in ppm: `1 + min(cap, per_sqrt_cxt × ⌊√(stake in whole CXT)⌋)`. Sublinear and
/// capped; it multiplies contribution, so stake with no work earns nothing.
pub fn stake_boost_ppm(stake: u128, params: &Params) -> u128 {
    let whole_cxt = stake / BASE_UNITS_PER_CXT;
    let boost = u128::from(params.boost_per_sqrt_cxt_ppm).saturating_mul(isqrt(whole_cxt));
    PPM + boost.min(u128::from(params.boost_cap_ppm))
}
