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
        store.append(&proposal.block).unwrap();
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
    store.append(&block).unwrap();
    drop(store);
    let error = audit(&path).unwrap_err().to_string();
    assert!(
        error.contains("block 4") && error.contains("state root"),
        "{error}"
    );
}
