//! The store keeps every appended block, replays to the same state, and its audit catches a
//! chain that was altered on disk or made from another genesis.

#![allow(clippy::unwrap_used)]

use corex_core::{Hash, Keypair};
use corex_ledger::{Chain, DeviceClass, Genesis, SignedTx, TOTAL_SUPPLY, TxBody};
use corex_ledger_store::{LedgerStore, StoreError, audit};

fn genesis(coordinator: &Keypair) -> Genesis {
    Genesis::new("store-test", coordinator.id(), 5)
}

fn register(chain: &Chain, seed: u8) -> SignedTx {
    SignedTx::sign(
        &Keypair::from_secret([seed; 32]),
        &chain.genesis_hash(),
        1,
        TxBody::RegisterNode {
            device_fingerprint: Hash::of(&[seed]),
            device_class: DeviceClass::Edge,
        },
    )
}

/// Appends `count` blocks of one registration each; returns the final chain.
fn grow(
    store: &LedgerStore,
    mut chain: Chain,
    coordinator: &Keypair,
    seeds: std::ops::Range<u8>,
) -> Chain {
    for seed in seeds {
        let tx = register(&chain, seed);
        let proposal = chain
            .propose(coordinator, vec![tx], 1_000 + u64::from(seed))
            .unwrap()
            .unwrap();
        store.append(&proposal.block, &proposal.next).unwrap();
        chain = proposal.next;
    }
    chain
}

#[test]
fn blocks_survive_reopening_and_audit_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let coordinator = Keypair::from_secret([42; 32]);
    let (store, chain) = LedgerStore::open(&path, &genesis(&coordinator)).unwrap();
    let chain = grow(&store, chain, &coordinator, 1..6);
    drop(store);

    let (store, reopened) = LedgerStore::open(&path, &genesis(&coordinator)).unwrap();
    assert_eq!(reopened.height(), 5);
    assert_eq!(reopened.head(), chain.head());
    assert_eq!(reopened.state().root(), chain.state().root());
    assert_eq!(store.block(3).unwrap().unwrap().header.height, 3);
    assert!(store.block(6).unwrap().is_none());
    drop(store);

    let report = audit(&path).unwrap();
    assert_eq!(report.height, 5);
    assert_eq!(report.transactions, 5);
    assert_eq!(report.nodes, 5);
    assert_eq!(report.supply.total(), TOTAL_SUPPLY);
    assert_eq!(report.supply.pool, TOTAL_SUPPLY);
}

#[test]
fn another_genesis_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let coordinator = Keypair::from_secret([42; 32]);
    drop(LedgerStore::open(&path, &genesis(&coordinator)).unwrap());
    let other = Genesis::new("store-test", Keypair::from_secret([43; 32]).id(), 5);
    assert!(matches!(
        LedgerStore::open(&path, &other),
        Err(StoreError::GenesisMismatch { .. })
    ));
}

#[test]
fn a_block_that_does_not_follow_is_caught_by_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let coordinator = Keypair::from_secret([42; 32]);
    let (store, chain) = LedgerStore::open(&path, &genesis(&coordinator)).unwrap();
    let chain = grow(&store, chain, &coordinator, 1..4);
    // A block signed by the coordinator but built on a forked state: its state root lies.
    let tx = register(&chain, 9);
    let mut block = chain
        .propose(&coordinator, vec![tx], 9_999)
        .unwrap()
        .unwrap()
        .block;
    block.header.state_root = Hash::of(b"not the state");
    block.signature = coordinator.sign(block.header.hash().as_bytes());
    store.append(&block, &chain).unwrap();
    drop(store);
    let error = audit(&path).unwrap_err().to_string();
    assert!(
        error.contains("block 4") && error.contains("state root"),
        "{error}"
    );
}

/// Appends `count` blocks of one coordinator record each, in batches that end at heights
/// divisible by 100; returns the final chain.
fn grow_records(store: &LedgerStore, mut chain: Chain, coordinator: &Keypair, count: u64) -> Chain {
    let mut batch = Vec::new();
    for index in 0..count {
        let body = TxBody::CommitAuditChain {
            anchor: Hash::of(&index.to_le_bytes()),
        };
        let (proposal, left_out) = chain
            .propose_records(coordinator, vec![body], 10_000 + index)
            .unwrap();
        assert!(left_out.is_empty());
        let proposal = proposal.unwrap();
        batch.push(proposal.block);
        chain = proposal.next;
        if chain.height().is_multiple_of(100) || index + 1 == count {
            store.append_batch(&batch, &chain).unwrap();
            batch.clear();
        }
    }
    chain
}

#[test]
fn reopening_resumes_from_the_newest_snapshot_and_a_false_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let coordinator = Keypair::from_secret([1; 32]);
    let (store, chain) = LedgerStore::open(&path, &genesis(&coordinator)).unwrap();
    let chain = grow(&store, chain, &coordinator, 2..12);
    let count = corex_ledger_store::SNAPSHOT_EVERY + 40 - chain.height();
    let chain = grow_records(&store, chain, &coordinator, count);
    drop(store);

    // Resumed at the snapshot and replayed after it: the same chain as a replay from genesis.
    let (store, reopened) = LedgerStore::open(&path, &genesis(&coordinator)).unwrap();
    assert_eq!(reopened.height(), corex_ledger_store::SNAPSHOT_EVERY + 40);
    assert_eq!(
        (reopened.head(), reopened.state().root()),
        (chain.head(), chain.state().root())
    );
    drop(store);
    let audited = audit(&path).unwrap();
    assert_eq!(audited.state_root, reopened.state().root());
    // It goes on from there.
    let (store, reopened) = LedgerStore::open(&path, &genesis(&coordinator)).unwrap();
    let reopened = grow(&store, reopened, &coordinator, 12..14);
    drop(store);
    assert_eq!(audit(&path).unwrap().height, reopened.height());

    // A snapshot whose state is not its block's is refused, not used.
    use redb::ReadableTable;
    let db = redb::Database::open(&path).unwrap();
    let snapshots: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("snapshots");
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(snapshots).unwrap();
        let height = corex_ledger_store::SNAPSHOT_EVERY;
        let stored = table.get(height).unwrap().unwrap().value().to_vec();
        let mut state: corex_ledger::State = serde_json::from_slice(&stored).unwrap();
        state.pool += 1;
        let forged = serde_json::to_vec(&state).unwrap();
        table.insert(height, forged.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let refused = LedgerStore::open(&path, &genesis(&coordinator))
        .err()
        .unwrap();
    assert!(refused.to_string().contains("state root"), "{refused}");
}

/// The explorer's index: each node's verdicts (with the evidence of a hard reject), its work
/// and its payout when the epoch is settled, newest first; kept across reopening.
#[test]
fn the_index_shows_each_nodes_verdicts_work_and_payouts() {
    use corex_ledger::{ContributionEntry, Verdict};
    use corex_ledger_store::NodeEventKind;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let coordinator = Keypair::from_secret([42; 32]);
    let genesis = Genesis::new("index-test", coordinator.id(), 0);
    let epoch_ms = genesis.params.epoch_ms;
    let (store, chain) = LedgerStore::open(&path, &genesis).unwrap();
    let chain = grow(&store, chain, &coordinator, 1..3);
    let honest = Keypair::from_secret([1; 32]).id();
    let cheater = Keypair::from_secret([2; 32]).id();
    let evidence = Hash::of(b"replay");
    let bodies = vec![
        TxBody::RecordContributions {
            entries: vec![
                ContributionEntry::compute(honest, 5_000),
                ContributionEntry {
                    pot_units: 4_000,
                    ..ContributionEntry::compute(honest, 0)
                },
            ],
            task_demand: 6_000,
        },
        TxBody::RecordVerdict {
            node: honest,
            fragment: Hash::of(b"f1"),
            verdict: Verdict::Accept,
        },
        TxBody::RecordVerdict {
            node: cheater,
            fragment: Hash::of(b"f2"),
            verdict: Verdict::HardReject { evidence },
        },
    ];
    let (proposal, _) = chain.propose_records(&coordinator, bodies, 2_000).unwrap();
    let proposal = proposal.unwrap();
    store.append(&proposal.block, &proposal.next).unwrap();
    // A block in the next epoch settles the first.
    let settle = vec![TxBody::SettleEpoch { epoch: 0 }];
    let (proposal, _) = proposal
        .next
        .propose_records(&coordinator, settle, epoch_ms + 1)
        .unwrap();
    let proposal = proposal.unwrap();
    store.append(&proposal.block, &proposal.next).unwrap();
    drop(store);

    let (store, _) = LedgerStore::open(&path, &genesis).unwrap();
    let events = store.node_events(&honest, None, 10).unwrap();
    let kinds: Vec<_> = events.iter().map(|event| &event.kind).collect();
    assert!(
        matches!(kinds[0], NodeEventKind::Payout { epoch: 0, amount, .. } if *amount > 0),
        "{kinds:?}"
    );
    assert!(matches!(
        kinds[1],
        NodeEventKind::Verdict {
            verdict: Verdict::Accept,
            ..
        }
    ));
    assert!(matches!(
        kinds[2],
        NodeEventKind::Work {
            compute_units: 5_000,
            ..
        }
    ));
    assert!(matches!(kinds[3], NodeEventKind::Registered));
    assert_eq!(events.len(), 4);
    assert_eq!(store.node_events(&honest, None, 2).unwrap().len(), 2);
    assert_eq!(store.node_events(&honest, Some(4), 10).unwrap().len(), 3);
    let cheater_events = store.node_events(&cheater, None, 10).unwrap();
    assert!(matches!(
        &cheater_events[0].kind,
        NodeEventKind::Verdict { verdict: Verdict::HardReject { evidence: e }, .. } if *e == evidence
    ));
    let settled = store.settlements(10).unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].settlement.epoch, 0);
    assert_eq!(settled[0].height, 4);
    assert!(settled[0].paid() > 0);
    let blocks = store.blocks_down_from(4, 3).unwrap();
    let heights: Vec<u64> = blocks.iter().map(|block| block.header.height).collect();
    assert_eq!(heights, [4, 3, 2]);
}
