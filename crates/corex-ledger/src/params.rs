//! The rules of the chain, fixed at genesis: every economic constant, and the genesis record
//! whose hash names the chain. No transaction can change them. Epochs are spans of ledger
//! time (block timestamps) counted from the genesis timestamp, never rounds or jobs.

use corex_core::{Hash, NodeId};
use serde::{Deserialize, Serialize};

use crate::amount::{BASE_UNITS_PER_CXT, PPM};
use crate::emission::{PPQ, release_per_epoch_ppq};
use crate::error::LedgerError;

/// One hour of ledger time.
const HOUR_MS: u64 = 3_600_000;
/// Four Julian years (4 × 365.25 days) of ledger time: the default half-life, Bitcoin's
/// halving period.
pub const FOUR_YEARS_MS: u64 = 4 * 36_525 * 24 * HOUR_MS / 100;

/// Economic constants. Ratios are in parts per million (ppm); durations in epochs of ledger
/// time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Length of an epoch in ledger time: epoch `e` holds the blocks stamped within
    /// `[genesis + e·epoch_ms, genesis + (e+1)·epoch_ms)`; the first block past it settles it.
    pub epoch_ms: u64,
    /// The pool's half-life in ledger time while every epoch is worked at a demand factor of
    /// 1: each such epoch releases `1 − 2^(−epoch_ms / half_life_ms)` of what remains.
    pub half_life_ms: u64,
    /// Bounds of the demand factor `task_demand / compute_supply`.
    pub demand_factor_min_ppm: u64,
    pub demand_factor_max_ppm: u64,
    /// Split of each release: Compute-PoC, staked advanced work; the rest goes to the fund.
    pub compute_share_ppm: u64,
    pub advanced_share_ppm: u64,
    /// Rewards stay locked (and can be voided) for this many epochs of ledger time.
    pub lock_epochs: u64,
    /// Unbonding takes this many epochs of ledger time; longer than the lock window.
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
    /// The main rules: one-hour epochs, a four-year half-life (the pool is 50 % released after
    /// 4 years, 96.9 % after 20, like Bitcoin's issuance at its halvings), rewards locked for a
    /// day and unbonding over a week.
    fn default() -> Self {
        Self {
            epoch_ms: HOUR_MS,
            half_life_ms: FOUR_YEARS_MS,
            demand_factor_min_ppm: 500_000,
            demand_factor_max_ppm: 1_500_000,
            compute_share_ppm: 600_000,
            advanced_share_ppm: 300_000,
            lock_epochs: 24,
            unbonding_epochs: 168,
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
    /// A devnet's rules: the same half-life in two-second epochs, so that a job of a few
    /// seconds crosses epoch boundaries and its nodes are paid; rewards lock for six seconds
    /// and unbonding takes twelve.
    pub fn devnet() -> Self {
        Self {
            epoch_ms: 2_000,
            lock_epochs: 3,
            unbonding_epochs: 6,
            ..Self::default()
        }
    }

    /// The share of the pool an epoch releases at a demand factor of 1, in parts per 10¹⁸.
    pub fn release_per_epoch_ppq(&self) -> Result<u128, LedgerError> {
        release_per_epoch_ppq(self.epoch_ms, self.half_life_ms).ok_or_else(|| {
            LedgerError::InvalidGenesis("epoch_ms must be within 1..=half_life_ms".into())
        })
    }

    pub fn validate(&self) -> Result<(), LedgerError> {
        let bad = |reason: &str| Err(LedgerError::InvalidGenesis(reason.into()));
        let ppm = PPM as u64;
        let release = self.release_per_epoch_ppq()?;
        if self.demand_factor_min_ppm > self.demand_factor_max_ppm
            || release * u128::from(self.demand_factor_max_ppm) > PPQ * PPM
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

    /// The epoch a block stamped `timestamp_ms` falls in (blocks never precede genesis).
    pub fn epoch_at(&self, timestamp_ms: u64) -> u64 {
        timestamp_ms.saturating_sub(self.timestamp_ms) / self.params.epoch_ms.max(1)
    }

    /// When epoch `epoch` ends: the first ledger time of epoch `epoch + 1`.
    pub fn epoch_end_ms(&self, epoch: u64) -> u64 {
        epoch
            .saturating_add(1)
            .saturating_mul(self.params.epoch_ms)
            .saturating_add(self.timestamp_ms)
    }

    /// The genesis hash: every transaction signs over it, and block 0 is named by it.
    pub fn hash(&self) -> Hash {
        Hash::of_parts(&[b"corex-genesis-v1", &crate::canonical(self)])
    }
}
