//! Epoch settlement, the published rule (docs/economics.md has the same formulas):
//!
//! ```text
//! release_ppq = 10¹⁸ − 2^(−epoch_ms / half_life_ms)               (emission.rs)
//! factor  = clamp(task_demand / compute_supply, min, max)        (1 when supply is 0)
//! release = ⌊⌊pool × release_ppq / 10¹⁸⌋ × factor_ppm / 10⁶⌋      (0 when nobody worked)
//! compute_budget  = ⌊release × compute_share_ppm / 10⁶⌋
//! advanced_budget = ⌊release × advanced_share_ppm / 10⁶⌋
//! fund            = release − compute_budget − advanced_budget
//! weightᵢ = ⌊⌊workᵢ × reputationᵢ / 10⁶⌋ × boostᵢ / 10⁶⌋    (work = Σ units × quality_ppm)
//! payoutᵢ = ⌊budget × weightᵢ / Σ weight⌋
//! ```
//!
//! Advanced work is paid only to nodes staking at least `min_advanced_stake`. A budget with no
//! weight is not released; rounding dust stays in the pool. Pure: the state applies the result.

use corex_core::NodeId;
use serde::{Deserialize, Serialize};

use crate::amount::{PPM, mul_div};
use crate::emission::PPQ;
use crate::error::LedgerError;
use crate::params::Params;

/// A node's quality-weighted work in the epoch being settled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochWork {
    /// Σ compute_units × quality_ppm.
    pub compute: u128,
    /// Σ (pot_units + verification_units) × quality_ppm.
    pub advanced: u128,
}

/// What settlement needs to know about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub node: NodeId,
    pub work: EpochWork,
    pub reputation_ppm: u128,
    pub boost_ppm: u128,
    pub stake: u128,
}

/// The load of the epoch being settled, in FLOPs: the demand factor's inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochLoad {
    /// Compute the network delivered: Σ compute units recorded.
    pub compute_supply: u128,
    /// Work jobs asked for: every judged result's cost, accepted or not.
    pub task_demand: u128,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The epoch this settled.
    pub epoch: u64,
    pub factor_ppm: u128,
    pub release: u128,
    pub to_fund: u128,
    /// Per node, in node order; nodes that earned nothing are left out.
    pub payouts: Vec<(NodeId, u128)>,
    /// Released budget that rounding left unpaid; it stays in the pool.
    pub dust: u128,
}

impl Settlement {
    /// Everything that leaves the pool: payouts and the fund's share.
    pub fn leaves_pool(&self) -> u128 {
        self.payouts.iter().map(|(_, amount)| amount).sum::<u128>() + self.to_fund
    }
}

pub fn demand_factor_ppm(params: &Params, load: EpochLoad) -> u128 {
    // A ratio too large for u128 is far above any bound.
    let ratio = match load.compute_supply {
        0 => PPM,
        supply => mul_div(load.task_demand, PPM, supply).unwrap_or(u128::MAX),
    };
    ratio.clamp(
        u128::from(params.demand_factor_min_ppm),
        u128::from(params.demand_factor_max_ppm),
    )
}

/// Settles epoch `epoch`; `participants` must be sorted by node and hold only active nodes.
pub fn settle(
    epoch: u64,
    pool: u128,
    params: &Params,
    load: EpochLoad,
    participants: &[Participant],
) -> Result<Settlement, LedgerError> {
    let overflow = |what| LedgerError::Overflow(what);
    let weight = |work: u128, p: &Participant| -> Result<u128, LedgerError> {
        let reputed = mul_div(work, p.reputation_ppm, PPM).ok_or(overflow("weight"))?;
        mul_div(reputed, p.boost_ppm, PPM).ok_or(overflow("weight"))
    };
    let mut compute_weights = Vec::with_capacity(participants.len());
    let mut advanced_weights = Vec::with_capacity(participants.len());
    for participant in participants {
        compute_weights.push(weight(participant.work.compute, participant)?);
        let eligible = participant.stake >= params.min_advanced_stake;
        advanced_weights.push(if eligible {
            weight(participant.work.advanced, participant)?
        } else {
            0
        });
    }
    let sum = |weights: &[u128]| {
        weights
            .iter()
            .try_fold(0u128, |total, w| total.checked_add(*w))
            .ok_or(overflow("total weight"))
    };
    let compute_total = sum(&compute_weights)?;
    let advanced_total = sum(&advanced_weights)?;
    let factor_ppm = demand_factor_ppm(params, load);
    if compute_total == 0 && advanced_total == 0 {
        return Ok(Settlement {
            epoch,
            factor_ppm,
            ..Settlement::default()
        });
    }
    let base = mul_div(pool, params.release_per_epoch_ppq()?, PPQ).ok_or(overflow("release"))?;
    let release = mul_div(base, factor_ppm, PPM).ok_or(overflow("release"))?;
    let compute_budget =
        mul_div(release, u128::from(params.compute_share_ppm), PPM).ok_or(overflow("split"))?;
    let advanced_budget =
        mul_div(release, u128::from(params.advanced_share_ppm), PPM).ok_or(overflow("split"))?;
    let to_fund = release - compute_budget - advanced_budget;

    let mut payouts = Vec::new();
    let mut paid = 0u128;
    for (index, participant) in participants.iter().enumerate() {
        let mut amount = 0u128;
        if compute_total > 0 {
            amount += mul_div(compute_budget, compute_weights[index], compute_total)
                .ok_or(overflow("payout"))?;
        }
        if advanced_total > 0 {
            amount += mul_div(advanced_budget, advanced_weights[index], advanced_total)
                .ok_or(overflow("payout"))?;
        }
        if amount > 0 {
            paid += amount;
            payouts.push((participant.node, amount));
        }
    }
    // Budgets with no weight were never released.
    let released_budgets = (if compute_total > 0 { compute_budget } else { 0 })
        + (if advanced_total > 0 {
            advanced_budget
        } else {
            0
        });
    Ok(Settlement {
        epoch,
        factor_ppm,
        release: released_budgets + to_fund,
        to_fund,
        payouts,
        dust: released_budgets - paid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::{BASE_UNITS_PER_CXT, TOTAL_SUPPLY};

    fn node(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    fn participant(i: u8, compute: u128, stake: u128) -> Participant {
        Participant {
            node: node(i),
            work: EpochWork {
                compute,
                advanced: 0,
            },
            reputation_ppm: PPM,
            boost_ppm: PPM,
            stake,
        }
    }

    fn load(supply: u128, demand: u128) -> EpochLoad {
        EpochLoad {
            compute_supply: supply,
            task_demand: demand,
        }
    }

    #[test]
    fn payouts_follow_work_and_never_exceed_the_release() {
        let params = Params::default();
        let people = [participant(1, 3 * PPM, 0), participant(2, PPM, 0)];
        let s = settle(0, TOTAL_SUPPLY, &params, load(10, 10), &people).unwrap();
        assert_eq!(s.payouts.len(), 2);
        let (a, b) = (s.payouts[0].1, s.payouts[1].1);
        assert!(a.abs_diff(3 * b) <= 3);
        assert!(s.leaves_pool() <= s.release);
        assert_eq!(s.leaves_pool() + s.dust, s.release);
    }

    #[test]
    fn staking_alone_earns_nothing() {
        let params = Params::default();
        let people = [participant(1, 0, 50_000 * BASE_UNITS_PER_CXT)];
        let s = settle(0, TOTAL_SUPPLY, &params, load(10, 10), &people).unwrap();
        assert!(s.payouts.is_empty());
        assert_eq!(s.release, 0);
    }

    #[test]
    fn the_demand_factor_is_bounded() {
        let params = Params::default();
        assert_eq!(demand_factor_ppm(&params, load(100, 1)), 500_000);
        assert_eq!(demand_factor_ppm(&params, load(1, 100)), 1_500_000);
        assert_eq!(demand_factor_ppm(&params, load(100, 120)), 1_200_000);
        assert_eq!(demand_factor_ppm(&params, load(1, u128::MAX)), 1_500_000);
        assert_eq!(demand_factor_ppm(&params, load(0, 5)), PPM);
    }
}
