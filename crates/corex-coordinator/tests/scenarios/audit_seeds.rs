//! Audit seeds on a running coordinator: with three-reveal seed chains, two concurrent jobs
//! roll over many chains, and the ledger records every round of both (a reveal refused, or a
//! round whose seed it did not know, would leave rounds out). Each new chain's anchor was on
//! the ledger before its first reveal, and none is derivable from what was revealed.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestNet, adam, small_job, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::Hash;
use corex_core::messages::JobState;
use corex_ledger::TxBody;
use corex_ledger_store::LedgerStore;

const ROUNDS: u32 = 8;

async fn wait_if_still_open(error: &corex_ledger_store::StoreError) {
    assert!(error.to_string().contains("already open"), "{error}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_roll_over_short_seed_chains_and_every_round_is_recorded() {
    let mut net = TestNet::start(CoordinatorConfig {
        audit_chain_length: 3,
        ..CoordinatorConfig::one_machine()
    })
    .await;
    for seed in 1..=3 {
        net.spawn_node(seed);
    }
    let owner = net.client(50);
    let mut jobs = Vec::new();
    for name in ["first", "second"] {
        let spec = corex_core::JobSpec {
            name: name.into(),
            rounds: ROUNDS,
            seed: jobs.len() as u64,
            ..small_job(adam())
        };
        jobs.push(owner.submit_job(&spec).await.unwrap());
    }
    for job in &jobs {
        let status = wait_for_end(&owner, job, Duration::from_secs(120)).await;
        assert_eq!(status.state, JobState::Finished);
    }
    // Let the recorder write the last rounds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = net.shutdown().await;

    let path = dir.path().join("ledger.redb");
    // The server's last tasks let go of the ledger file shortly after it stopped.
    let mut tries = 0;
    let genesis = loop {
        match corex_ledger_store::audit(&path) {
            Ok(audit) => break audit.genesis,
            Err(error) if tries < 100 => {
                tries += 1;
                wait_if_still_open(&error).await;
            }
            Err(error) => panic!("the ledger does not audit: {error}"),
        }
    };
    let (store, chain) = LedgerStore::open(&path, &genesis).unwrap();
    for job in &jobs {
        assert_eq!(
            chain.state().rounds[job].round,
            ROUNDS - 1,
            "every round recorded"
        );
    }
    assert!(chain.state().audit.pending.is_empty());
    // Walk the blocks: anchors, reveals and rounds in ledger order.
    let mut anchors = Vec::new();
    let mut revealed: Vec<Hash> = Vec::new();
    let mut recorded = 0;
    let mut pending: BTreeMap<Hash, Hash> = BTreeMap::new();
    let mut interleaved = 0;
    for height in 1..=chain.height() {
        for tx in store.block(height).unwrap().unwrap().txs {
            match tx.body {
                TxBody::CommitAuditChain { anchor } => anchors.push((anchor, revealed.len())),
                TxBody::RevealAuditSeed { job, seed } => {
                    // Every reveal follows the last one or the newest committed anchor.
                    let last = revealed.last().copied();
                    assert!(
                        last.is_some_and(|last| corex_verify::follows(&last, &seed))
                            || anchors
                                .last()
                                .is_some_and(|(a, _)| corex_verify::follows(a, &seed)),
                        "a reveal at height {height} follows nothing committed"
                    );
                    revealed.push(seed);
                    pending.insert(job, seed);
                }
                TxBody::RecordRound { job, .. } => {
                    recorded += 1;
                    if pending.len() > 1 {
                        interleaved += 1;
                    }
                    pending.remove(&job);
                }
                _ => {}
            }
        }
    }
    println!(
        "{recorded} rounds, {} reveals, {} anchors; {interleaved} rounds recorded while the other job's reveal was pending",
        revealed.len(),
        anchors.len()
    );
    assert_eq!(recorded, 2 * ROUNDS as usize);
    assert_eq!(revealed.len(), recorded);
    // Three reveals per chain: the 16 reveals used 6 chains, each anchor committed ahead
    // (the first at start, and one more at the last chain's first reveal).
    assert!(anchors.len() >= 6, "{} anchors", anchors.len());
    // No anchor is a hash of a seed revealed before it was committed (the old rule drew the
    // next chain from the last reveal).
    for (anchor, revealed_before) in &anchors {
        for seed in &revealed[..*revealed_before] {
            assert!(!corex_verify::follows(anchor, seed));
            let next_secret = Hash::of_parts(&[b"corex-next-chain", &seed.0]);
            assert_ne!(*anchor, next_secret);
            assert_ne!(
                *anchor,
                corex_verify::SeedChain::new(next_secret.0, 3).anchor()
            );
        }
    }
}
