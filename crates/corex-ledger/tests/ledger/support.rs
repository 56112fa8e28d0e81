//! A small world: a coordinator, a few registered nodes, and blocks made on demand. Each
//! block is one millisecond of ledger time after the last; settling jumps to the end of the
//! open epoch.

use corex_core::{Hash, Keypair};
use corex_ledger::{
    Chain, ContributionEntry, DeviceClass, Genesis, LedgerError, Params, SignedTx, TxBody,
};

pub struct World {
    pub coordinator: Keypair,
    pub nodes: Vec<Keypair>,
    pub chain: Chain,
    pub time_ms: u64,
}

/// Ledger time of one test epoch.
pub const EPOCH_MS: u64 = 10_000;

/// Fast rules for tests: ten-second epochs, a seven-epoch half-life (9.4 % released per
/// epoch), a one-epoch lock and two-epoch unbonding.
pub fn test_params() -> Params {
    Params {
        epoch_ms: EPOCH_MS,
        half_life_ms: 7 * EPOCH_MS,
        lock_epochs: 1,
        unbonding_epochs: 2,
        min_advanced_stake: 10,
        ..Params::default()
    }
}

pub fn key(seed: u8) -> Keypair {
    Keypair::from_secret([seed; 32])
}

impl World {
    pub fn new(node_count: u8) -> Self {
        let coordinator = key(200);
        let mut genesis = Genesis::new("corex-test", coordinator.id(), 1_000);
        genesis.params = test_params();
        let mut world = Self {
            coordinator,
            nodes: (1..=node_count).map(key).collect(),
            chain: Chain::new(genesis).unwrap(),
            time_ms: 1_000,
        };
        let registrations: Vec<SignedTx> = world
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                SignedTx::sign(
                    node,
                    &world.chain.genesis_hash(),
                    1,
                    TxBody::RegisterNode {
                        device_fingerprint: Hash::of(&[i as u8]),
                        device_class: DeviceClass::Cpu,
                    },
                )
            })
            .collect();
        world.commit(registrations).unwrap();
        world
    }

    pub fn chain_id(&self) -> Hash {
        self.chain.genesis_hash()
    }

    pub fn next_nonce(&self, key: &Keypair) -> u64 {
        self.chain.state().account(&key.id()).map_or(0, |a| a.nonce) + 1
    }

    pub fn signed(&self, key: &Keypair, body: TxBody) -> SignedTx {
        SignedTx::sign(key, &self.chain_id(), self.next_nonce(key), body)
    }

    /// Puts `txs` in a block; errors with the first refusal (and then nothing is committed).
    pub fn commit(&mut self, txs: Vec<SignedTx>) -> Result<(), LedgerError> {
        self.time_ms += 1;
        let first = txs.first().cloned();
        let Some(proposal) = self.chain.propose(&self.coordinator, txs, self.time_ms)? else {
            // Nothing applied: say why the first was refused.
            return Err(first
                .and_then(|tx| self.chain.check(&tx).err())
                .unwrap_or(LedgerError::ZeroAmount));
        };
        if let Some(refused) = proposal.refused.first() {
            return Err(refused.error.clone());
        }
        self.chain = proposal.next;
        Ok(())
    }

    /// One transaction in its own block.
    pub fn submit(&mut self, key: &Keypair, body: TxBody) -> Result<(), LedgerError> {
        let tx = self.signed(key, body);
        self.commit(vec![tx])
    }

    pub fn record(&mut self, body: TxBody) -> Result<(), LedgerError> {
        let coordinator = self.coordinator.clone();
        self.submit(&coordinator, body)
    }

    /// Records equal compute for every node in the current epoch and settles it.
    pub fn work_epoch(&mut self, units: u128) {
        let entries = self
            .nodes
            .iter()
            .map(|node| ContributionEntry::compute(node.id(), units))
            .collect();
        self.settle(entries);
    }

    /// Records `entries` in the current epoch, with task demand equal to their compute
    /// (release factor 1), and settles it.
    pub fn settle(&mut self, entries: Vec<ContributionEntry>) {
        let task_demand = entries.iter().map(|e| e.compute_units).sum();
        self.record(TxBody::RecordContributions {
            entries,
            task_demand,
        })
        .unwrap();
        self.close_epoch();
    }

    /// Moves ledger time to the end of the open epoch with the coordinator's timer record.
    pub fn close_epoch(&mut self) {
        let epoch = self.chain.state().epoch;
        self.time_ms = self.chain.genesis().epoch_end_ms(epoch) - 1;
        self.record(TxBody::SettleEpoch { epoch }).unwrap();
        assert_eq!(self.chain.state().epoch, epoch + 1);
    }

    /// Works and settles until every node has a spendable balance.
    pub fn fund_everyone(&mut self) {
        for _ in 0..3 {
            self.work_epoch(10);
        }
        for node in &self.nodes {
            assert!(self.chain.state().account(&node.id()).unwrap().balance > 0);
        }
    }

    pub fn balance(&self, key: &Keypair) -> u128 {
        self.chain
            .state()
            .account(&key.id())
            .map_or(0, |a| a.balance)
    }
}
