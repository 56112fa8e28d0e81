//! A small world: a coordinator, a few registered nodes, and blocks made on demand.

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

/// Fast rules for tests: big releases, a one-epoch lock and two-epoch unbonding.
pub fn test_params() -> Params {
    Params {
        release_ppm: 100_000,
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
        self.time_ms += 1_000;
        let proposal = self
            .chain
            .propose(&self.coordinator, txs, self.time_ms)?
            .ok_or(LedgerError::ZeroAmount)?;
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
    pub fn work_epoch(&mut self, units: u64) {
        let entries = self
            .nodes
            .iter()
            .map(|node| ContributionEntry::compute(node.id(), units))
            .collect();
        self.settle(entries, 100);
    }

    /// Records `entries` in the current epoch and settles it with compute supply and task
    /// demand both `load` (release factor 1).
    pub fn settle(&mut self, entries: Vec<ContributionEntry>, load: u64) {
        let epoch = self.chain.state().epoch;
        self.record(TxBody::RecordContributions { epoch, entries })
            .unwrap();
        self.record(TxBody::SettleEpoch {
            epoch,
            compute_supply: load,
            task_demand: load,
        })
        .unwrap();
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
