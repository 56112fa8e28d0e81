//! The rules of the chain, fixed at genesis: every economic constant, and the genesis record
//! whose hash names the chain. No transaction can change them.

use corex_core::{Hash, NodeId};
use serde::{Deserialize, Serialize};

use crate::amount::{BASE_UNITS_PER_CXT, PPM};
use crate::error::LedgerError;

/// Economic constants. Ratios are in parts per million (ppm); durations in epochs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Share of the remaining pool released per epoch, before the demand factor.
    pub release_ppm: u64,
    /// Bounds of the demand factor `task_demand / compute_supply`.
    pub demand_factor_min_ppm: u64,
    pub demand_factor_max_ppm: u64,
    /// Split of each release: Compute-PoC, staked advanced work; the rest goes to the fund.
    pub compute_share_ppm: u64,
    pub advanced_share_ppm: u64,
    /// Rewards stay locked (and can be voided) for this many epochs.
    pub lock_epochs: u64,
    /// Unbonding takes this many epochs; longer than the lock window.
    pub unbonding_epochs: u64,
    /// Minimum stake, in base units, to be paid for advanced work.
    pub min_advanced_stake: u128,
    /// Stake-Boost: `1 + min(cap, per_sqrt_cxt × √(stake in whole CXT))`.
    pub boost_per_sqrt_cxt_ppm: u64,
    pub boost_cap_ppm: u64,
    /// Share of stake and unbonding stake taken by a hard reject.
    pub slash_ppm: u64,
    /// Hard rejects after which a node is removed.
    pub removal_hard_rejects: u32,
    /// Reputation score: start, ceiling, and moves per verdict.
    pub score_start: u32,
    pub score_max: u32,
    pub score_accept_gain: u32,
    pub score_soft_penalty: u32,
    pub score_suspicious_penalty: u32,
    /// Reputation factor: `floor + score × (1 − floor) / score_max`.
    pub reputation_floor_ppm: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            release_ppm: 2_000,
            demand_factor_min_ppm: 500_000,
            demand_factor_max_ppm: 1_500_000,
            compute_share_ppm: 600_000,
            advanced_share_ppm: 300_000,
            lock_epochs: 4,
            unbonding_epochs: 8,
            min_advanced_stake: 1_000 * BASE_UNITS_PER_CXT,
            boost_per_sqrt_cxt_ppm: 10_000,
            boost_cap_ppm: 1_000_000,
            slash_ppm: 500_000,
            removal_hard_rejects: 3,
            score_start: 500,
            score_max: 1_000,
            score_accept_gain: 1,
            score_soft_penalty: 2,
            score_suspicious_penalty: 20,
            reputation_floor_ppm: 250_000,
        }
    }
}

impl Params {
    pub fn validate(&self) -> Result<(), LedgerError> {
        let bad = |reason: &str| Err(LedgerError::InvalidGenesis(reason.into()));
        let ppm = PPM as u64;
        if self.release_ppm > ppm {
            return bad("release_ppm is over 100%");
        }
        if self.demand_factor_min_ppm > self.demand_factor_max_ppm
            || u128::from(self.release_ppm) * u128::from(self.demand_factor_max_ppm) > PPM * PPM
        {
            return bad("demand factor bounds are inverted or release more than the pool");
        }
        if self.compute_share_ppm + self.advanced_share_ppm > ppm {
            return bad("compute and advanced shares exceed 100%");
        }
        if self.unbonding_epochs <= self.lock_epochs {
            return bad("unbonding must last longer than the reward lock window");
        }
        if self.slash_ppm > ppm || self.reputation_floor_ppm > ppm {
            return bad("a ratio is over 100%");
        }
        if self.score_start > self.score_max || self.score_max == 0 {
            return bad("score_start must be within 1..=score_max");
        }
        if self.removal_hard_rejects == 0 {
            return bad("removal_hard_rejects must be at least 1");
        }
        Ok(())
    }
}

/// What the first block commits to: the chain's name, its coordinator and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub chain_id: String,
    /// The only key whose records (contributions, verdicts, rounds, settlements) are accepted.
    pub coordinator: NodeId,
    pub timestamp_ms: u64,
    pub params: Params,
}

impl Genesis {
    pub fn new(chain_id: impl Into<String>, coordinator: NodeId, timestamp_ms: u64) -> Self {
        Self {
            chain_id: chain_id.into(),
            coordinator,
            timestamp_ms,
            params: Params::default(),
        }
    }

    /// The genesis hash: every transaction signs over it, and block 0 is named by it.
    pub fn hash(&self) -> Hash {
        Hash::of_parts(&[b"corex-genesis-v1", &crate::canonical(self)])
    }
}
