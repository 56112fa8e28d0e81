//! What the ledger shows over the API: the chain's summary, an account with its node profile,
//! and the receipt of an included transaction.

use corex_core::{Hash, NodeId};
use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::chain::Chain;
use crate::params::Params;
use crate::reputation::{NodeProfile, Tier, stake_boost_ppm};
use crate::settlement::Settlement;
use crate::state::Supply;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSummary {
    pub chain_id: String,
    /// What every transaction signs over.
    pub genesis_hash: Hash,
    pub coordinator: NodeId,
    pub height: u64,
    pub head: Hash,
    /// The open epoch of ledger time, and when it ends (ms since the Unix epoch).
    pub epoch: u64,
    pub epoch_ends_ms: u64,
    /// Nodes with work recorded in the open epoch, to be paid when it is settled.
    pub unsettled_nodes: u64,
    pub state_root: Hash,
    pub supply: Supply,
    pub params: Params,
    pub last_settlement: Option<Settlement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub profile: NodeProfile,
    pub tier: Tier,
    pub priority: u64,
    pub failure_rate_ppm: u64,
    pub reputation_factor_ppm: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub id: NodeId,
    pub account: Account,
    pub stake_boost_ppm: u128,
    /// Present when the account is a registered node.
    pub node: Option<NodeView>,
}

/// Proof that a transaction is in a stored block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxReceipt {
    pub tx: Hash,
    pub height: u64,
    pub block: Hash,
}

impl Chain {
    pub fn summary(&self) -> LedgerSummary {
        let state = self.state();
        LedgerSummary {
            chain_id: self.genesis().chain_id.clone(),
            genesis_hash: self.genesis_hash(),
            coordinator: self.genesis().coordinator,
            height: self.height(),
            head: self.head(),
            epoch: state.epoch,
            epoch_ends_ms: self.genesis().epoch_end_ms(state.epoch),
            unsettled_nodes: state.epoch_work.len() as u64,
            state_root: state.root(),
            supply: state.supply(),
            params: self.genesis().params.clone(),
            last_settlement: state.last_settlement.clone(),
        }
    }

    pub fn account_view(&self, id: &NodeId) -> Option<AccountView> {
        let params = &self.genesis().params;
        let account = self.state().account(id)?.clone();
        let node = self.state().nodes.get(id).map(|profile| NodeView {
            tier: profile.tier(params),
            priority: profile.priority(account.stake, params),
            failure_rate_ppm: profile.failure_rate_ppm(),
            reputation_factor_ppm: profile.reputation_factor_ppm(params),
            profile: profile.clone(),
        });
        Some(AccountView {
            id: *id,
            stake_boost_ppm: stake_boost_ppm(account.stake, params),
            account,
            node,
        })
    }
}
