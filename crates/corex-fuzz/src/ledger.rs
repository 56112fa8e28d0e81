//! Ledger transactions and blocks, decoded from JSON (as the API and the block store read
//! them) and applied to a chain with funded, staked and unbonding accounts, registered nodes,
//! recorded work and an audit seed chain in flight.
//!
//! The input is tried as a [`SignedTx`] and as a [`Block`]. A transaction goes through the
//! chain's signed check and, so that mutated transactions reach the state machine, through
//! `apply_verified` (as if its signature held). A block is replayed in full (`apply_block`) and,
//! without signatures, as its epoch advance and transactions one by one. Oracle: no panic;
//! whatever applies leaves the total supply at exactly 100,000,000 CXT; whatever is refused
//! changes nothing; a transaction the signed path accepts, the unsigned path accepts too.

use std::sync::OnceLock;

use corex_core::{Hash, Keypair, NodeId};
use corex_ledger::{
    Block, Chain, ContributionEntry, DeviceClass, Genesis, Params, SignedTx, TxBody, Verdict,
};
use corex_verify::SeedChain;

/// The chain every input is applied to, and the valid next transactions and blocks.
struct Base {
    chain: Chain,
    next_txs: Vec<SignedTx>,
    next_blocks: Vec<Block>,
}

fn coordinator() -> Keypair {
    Keypair::from_secret([1; 32])
}

fn node(index: u8) -> Keypair {
    Keypair::from_secret([10 + index; 32])
}

/// The job whose reveal is pending on the base chain, and the audit seed chain.
fn job() -> Hash {
    Hash::of(b"fuzz job")
}

fn seed_chain() -> SeedChain {
    SeedChain::new([9; 32], 4)
}

pub fn ledger(data: &[u8]) {
    let base = base();
    if let Ok(tx) = serde_json::from_slice::<SignedTx>(data) {
        apply_tx(&base.chain, &tx);
    }
    if let Ok(block) = serde_json::from_slice::<Block>(data) {
        replay_block(&base.chain, &block);
        apply_unsigned(&base.chain, &block);
    }
}

fn apply_tx(chain: &Chain, tx: &SignedTx) {
    let signed = chain.check(tx);
    let mut state = chain.state().clone();
    match state.apply_verified(chain.genesis(), tx) {
        Ok(()) => state
            .check_supply()
            .expect("supply conserved after a transaction"),
        Err(error) => {
            assert!(
                signed.is_err(),
                "signed path accepted what unsigned refused: {error}"
            );
            assert_eq!(
                state,
                *chain.state(),
                "a refused transaction changed the state"
            );
        }
    }
}

fn replay_block(chain: &Chain, block: &Block) {
    let mut replayed = chain.clone();
    match replayed.apply_block(block) {
        Ok(()) => {
            replayed
                .state()
                .check_supply()
                .expect("supply conserved after a block");
            assert_eq!(replayed.height(), chain.height() + 1);
            assert_eq!(replayed.head(), block.header.hash());
        }
        Err(_) => {
            assert_eq!(
                replayed.state(),
                chain.state(),
                "a refused block changed the state"
            );
            assert_eq!(replayed.head(), chain.head());
        }
    }
}

fn apply_unsigned(chain: &Chain, block: &Block) {
    let genesis = chain.genesis();
    let mut state = chain.state().clone();
    if state
        .advance_to(genesis, block.header.timestamp_ms)
        .is_err()
    {
        assert_eq!(
            state,
            *chain.state(),
            "a refused epoch advance changed the state"
        );
        return;
    }
    state
        .check_supply()
        .expect("supply conserved after settling epochs");
    for tx in &block.txs {
        let before = state.clone();
        match state.apply_verified(genesis, tx) {
            Ok(()) => state
                .check_supply()
                .expect("supply conserved after a transaction"),
            Err(_) => assert_eq!(state, before, "a refused transaction changed the state"),
        }
    }
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(build_base)
}

/// Adds the block of `txs` (signed transactions) at `timestamp_ms`, replayed as a store would.
fn add_block(chain: &mut Chain, txs: Vec<SignedTx>, timestamp_ms: u64) {
    let proposal = chain
        .propose(&coordinator(), txs, timestamp_ms)
        .expect("the coordinator proposes")
        .expect("a transaction applies");
    assert!(proposal.refused.is_empty(), "{:?}", proposal.refused);
    chain
        .apply_block(&proposal.block)
        .expect("the block replays");
}

/// Adds a block of the coordinator's records at `timestamp_ms`.
fn add_records(chain: &mut Chain, bodies: Vec<TxBody>, timestamp_ms: u64) {
    let (proposal, left_out) = chain
        .propose_records(&coordinator(), bodies, timestamp_ms)
        .expect("the coordinator proposes");
    assert!(left_out.is_empty(), "{left_out:?}");
    let block = proposal.expect("a record applies").block;
    chain.apply_block(&block).expect("the block replays");
}

/// `key`'s next transaction on `chain`.
fn next_tx(chain: &Chain, key: &Keypair, body: TxBody) -> SignedTx {
    let nonce = chain.state().account(&key.id()).map_or(0, |a| a.nonce) + 1;
    SignedTx::sign(key, &chain.genesis_hash(), nonce, body)
}

fn balance(chain: &Chain, id: &NodeId) -> u128 {
    chain.state().account(id).map_or(0, |a| a.balance)
}

/// Devnet rules (2 s epochs, rewards locked 30 epochs, unbonding 60): three nodes register and
/// work, epoch 0 pays them, the rewards vest, then they stake, transfer and unbond; the audit
/// chain is committed and its first seed revealed for [`job`].
fn build_base() -> Base {
    let coordinator = coordinator();
    let mut genesis = Genesis::new("corex-fuzz", coordinator.id(), 0);
    genesis.params = Params::devnet();
    let mut chain = Chain::new(genesis).expect("valid genesis");
    let nodes: Vec<Keypair> = (0..3).map(node).collect();
    let register = |chain: &Chain, key: &Keypair| {
        let body = TxBody::RegisterNode {
            device_fingerprint: Hash::of(&key.id().0),
            device_class: DeviceClass::Cpu,
        };
        next_tx(chain, key, body)
    };
    let registrations = nodes.iter().map(|key| register(&chain, key)).collect();
    add_block(&mut chain, registrations, 1_000);
    let work = TxBody::RecordContributions {
        entries: nodes
            .iter()
            .zip(1..)
            .map(|(key, units)| ContributionEntry::compute(key.id(), units * 1_000_000_000_000))
            .collect(),
        task_demand: 6_000_000_000_000,
    };
    let anchor = TxBody::CommitAuditChain {
        anchor: seed_chain().anchor(),
    };
    add_records(&mut chain, vec![anchor, work], 1_200);
    add_records(&mut chain, vec![TxBody::SettleEpoch { epoch: 0 }], 2_500);
    add_records(&mut chain, vec![TxBody::SettleEpoch { epoch: 30 }], 62_100);
    let [first, second, third] = [0, 1, 2].map(|index| &nodes[index]);
    let paid = balance(&chain, &first.id());
    assert!(paid > 0, "epoch 0 paid the nodes");
    let moves = vec![
        next_tx(&chain, first, TxBody::Stake { amount: paid / 2 }),
        next_tx(
            &chain,
            second,
            TxBody::Transfer {
                to: third.id(),
                amount: balance(&chain, &second.id()) / 3,
            },
        ),
        next_tx(&chain, third, TxBody::Stake { amount: paid / 4 }),
    ];
    add_block(&mut chain, moves, 62_200);
    let unbond = next_tx(&chain, first, TxBody::BeginUnbonding { amount: paid / 8 });
    add_block(&mut chain, vec![unbond], 62_300);
    let reveal = TxBody::RevealAuditSeed {
        job: job(),
        seed: seed_chain().reveal(1).expect("a chain of four"),
    };
    add_records(&mut chain, vec![reveal], 62_400);
    let next_txs = next_txs(&chain, &nodes);
    let next_blocks = next_blocks(&chain, &next_txs);
    Base {
        chain,
        next_txs,
        next_blocks,
    }
}

/// One valid next transaction of every kind (the withdrawal is refused: nothing has matured).
fn next_txs(chain: &Chain, nodes: &[Keypair]) -> Vec<SignedTx> {
    let coordinator = coordinator();
    let (first, second) = (&nodes[0], &nodes[1]);
    let record = |body| next_tx(chain, &coordinator, body);
    vec![
        next_tx(
            chain,
            second,
            TxBody::Transfer {
                to: first.id(),
                amount: 1_000,
            },
        ),
        next_tx(chain, second, TxBody::Stake { amount: 5_000 }),
        next_tx(chain, first, TxBody::BeginUnbonding { amount: 7 }),
        next_tx(chain, first, TxBody::Withdraw),
        next_tx(
            chain,
            &node(7),
            TxBody::RegisterNode {
                device_fingerprint: Hash::of(b"new device"),
                device_class: DeviceClass::Gpu,
            },
        ),
        record(TxBody::RecordContributions {
            entries: vec![ContributionEntry::compute(second.id(), 123_456)],
            task_demand: 200_000,
        }),
        record(TxBody::RecordVerdict {
            node: first.id(),
            fragment: Hash::of(b"fragment"),
            verdict: Verdict::HardReject {
                evidence: Hash::of(b"evidence"),
            },
        }),
        record(TxBody::RecordVerdict {
            node: second.id(),
            fragment: Hash::of(b"fragment 2"),
            verdict: Verdict::Accept,
        }),
        record(TxBody::RecordRound {
            job: job(),
            round: 0,
            model: Hash::of(b"model"),
            results_root: Hash::of(b"results"),
            audit_seed: seed_chain().reveal(1).expect("a chain of four"),
        }),
        record(TxBody::RevealAuditSeed {
            job: Hash::of(b"another job"),
            seed: seed_chain().reveal(2).expect("a chain of four"),
        }),
        record(TxBody::CommitAuditChain {
            anchor: SeedChain::new([8; 32], 4).anchor(),
        }),
        record(TxBody::SettleEpoch { epoch: 30 }),
    ]
}

/// Valid next blocks: transactions of three signers in the next epoch, and three of the
/// coordinator's records far enough ahead that the unbonding has matured.
fn next_blocks(chain: &Chain, txs: &[SignedTx]) -> Vec<Block> {
    let coordinator = coordinator();
    let signers = vec![txs[0].clone(), txs[2].clone(), txs[4].clone()];
    let proposed = chain
        .propose(&coordinator, signers, 64_000)
        .expect("the coordinator proposes")
        .expect("a transaction applies");
    assert!(proposed.refused.is_empty(), "{:?}", proposed.refused);
    let bodies = txs[5..8].iter().map(|tx| tx.body.clone()).collect();
    let (records, left_out) = chain
        .propose_records(&coordinator, bodies, 400_000)
        .expect("the coordinator proposes");
    assert!(left_out.is_empty(), "{left_out:?}");
    vec![proposed.block, records.expect("a record applies").block]
}

/// JSON of the next transactions and blocks.
pub(crate) fn seeds() -> Vec<Vec<u8>> {
    let base = base();
    let txs = base.next_txs.iter().map(serde_json::to_vec);
    let blocks = base.next_blocks.iter().map(serde_json::to_vec);
    txs.chain(blocks)
        .map(|json| json.expect("ledger types encode"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_blocks_replay_and_most_seed_transactions_apply() {
        let base = base();
        for block in &base.next_blocks {
            base.chain
                .clone()
                .apply_block(block)
                .expect("a seed block replays");
        }
        let applied = base
            .next_txs
            .iter()
            .filter(|tx| base.chain.check(tx).is_ok())
            .count();
        assert_eq!(applied, base.next_txs.len() - 1, "all but the withdrawal");
        for seed in seeds() {
            ledger(&seed);
        }
    }
}
