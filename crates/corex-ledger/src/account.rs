//! Accounts: spendable balance, stake, unbonding stake and locked rewards, with a nonce.

use serde::{Deserialize, Serialize};

/// Stake on its way out: withdrawable from `release_epoch`, slashable until then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unbonding {
    pub amount: u128,
    pub release_epoch: u64,
}

/// A reward that vests at `unlock_epoch` unless a hard reject voids it first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedReward {
    pub amount: u128,
    pub unlock_epoch: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: u128,
    /// Transactions this account has signed.
    pub nonce: u64,
    pub stake: u128,
    pub unbonding: Vec<Unbonding>,
    pub locked: Vec<LockedReward>,
}

impl Account {
    pub fn unbonding_total(&self) -> u128 {
        self.unbonding.iter().map(|u| u.amount).sum()
    }

    pub fn locked_total(&self) -> u128 {
        self.locked.iter().map(|r| r.amount).sum()
    }

    /// Every base unit this account holds in any form.
    pub fn holdings(&self) -> u128 {
        self.balance + self.stake + self.unbonding_total() + self.locked_total()
    }
}
