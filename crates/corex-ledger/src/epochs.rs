//! Ledger time: before a block's transactions apply, every epoch that ended before the
//! block's timestamp is settled, in order. The first settles the work recorded in it (vesting,
//! release, payouts; `settlement`); the ones after it saw no block, so nothing was recorded in
//! them and they release nothing: their share stays in the pool, which keeps decaying only in
//! epochs that someone worked. Their vesting and unbonding deadlines still pass. So how much
//! leaves the pool over a span of ledger time depends on which epochs had work (and on the
//! bounded demand factor), never on how many blocks, rounds or jobs they held.

use crate::account::LockedReward;
use crate::error::LedgerError;
use crate::params::Genesis;
use crate::reputation::{NodeStatus, stake_boost_ppm};
use crate::settlement::{EpochLoad, Participant, settle};
use crate::state::State;

impl State {
    /// Settles every epoch that ended before `timestamp_ms`; nothing changes on error.
    pub fn advance_to(&mut self, genesis: &Genesis, timestamp_ms: u64) -> Result<(), LedgerError> {
        let target = genesis.epoch_at(timestamp_ms);
        if target <= self.epoch {
            return Ok(());
        }
        self.settle_current(genesis)?;
        // The epochs between saw no block: nothing to release, only deadlines to pass.
        if target > self.epoch {
            self.vest(target - 1);
            self.epoch = target;
        }
        Ok(())
    }

    /// Settles the open epoch: vests what matured, releases its share of the pool to the work
    /// recorded in it, and opens the next epoch.
    fn settle_current(&mut self, genesis: &Genesis) -> Result<(), LedgerError> {
        let epoch = self.epoch;
        let params = &genesis.params;
        let participants: Vec<Participant> = self
            .epoch_work
            .iter()
            .filter_map(|(node, work)| {
                let profile = self.nodes.get(node)?;
                if profile.status == NodeStatus::Removed {
                    return None;
                }
                let stake = self.accounts.get(node).map_or(0, |a| a.stake);
                Some(Participant {
                    node: *node,
                    work: work.clone(),
                    reputation_ppm: profile.reputation_factor_ppm(params),
                    boost_ppm: stake_boost_ppm(stake, params),
                    stake,
                })
            })
            .collect();
        let settlement = if participants.is_empty() {
            None
        } else {
            Some(settle(
                epoch,
                self.pool,
                params,
                self.epoch_load,
                &participants,
            )?)
        };
        let leaving = settlement.as_ref().map_or(0, |s| s.leaves_pool());
        if leaving > self.pool {
            return Err(LedgerError::Overflow("settlement exceeds the pool"));
        }
        // From here on nothing can fail.
        self.vest(epoch);
        if let Some(settlement) = settlement {
            let unlock_epoch = epoch + params.lock_epochs;
            for (node, amount) in &settlement.payouts {
                self.accounts
                    .entry(*node)
                    .or_default()
                    .locked
                    .push(LockedReward {
                        amount: *amount,
                        unlock_epoch,
                    });
            }
            self.pool -= leaving;
            self.fund += settlement.to_fund;
            self.last_settlement = Some(settlement);
        }
        self.epoch_work.clear();
        self.epoch_load = EpochLoad::default();
        self.epoch = epoch + 1;
        Ok(())
    }

    /// Moves every locked reward with `unlock_epoch ≤ epoch` to its account's balance.
    fn vest(&mut self, epoch: u64) {
        for (node, account) in &mut self.accounts {
            let vested: u128 = account
                .locked
                .iter()
                .filter(|r| r.unlock_epoch <= epoch)
                .map(|r| r.amount)
                .sum();
            if vested > 0 {
                account.locked.retain(|r| r.unlock_epoch > epoch);
                account.balance += vested;
                if let Some(profile) = self.nodes.get_mut(node) {
                    profile.rewards_claimed += vested;
                }
            }
        }
    }

    /// Whether a block at `timestamp_ms` would settle something: an epoch with recorded work
    /// has ended, or a locked reward has matured.
    pub fn settlement_due(&self, genesis: &Genesis, timestamp_ms: u64) -> bool {
        let target = genesis.epoch_at(timestamp_ms);
        target > self.epoch
            && (!self.epoch_work.is_empty()
                || self
                    .accounts
                    .values()
                    .flat_map(|account| &account.locked)
                    .any(|reward| reward.unlock_epoch < target))
    }
}
