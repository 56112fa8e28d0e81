//! A coordinator restart loses nothing: the ledger that removed a cheater and the audit records
//! are stored, so the restarted coordinator bans the removed node from the start while honest
//! nodes carry on; node agents left running across a restart are recognised (their standing
//! is stored) and go on working; a running job resumes from its last checkpoint and each of
//! its rounds is on the ledger once; ended jobs are served as before; job ids never repeat.

use crate::common;

use std::time::{Duration, Instant};

use common::{TestNet, adam, small_job, wait_for_end, wait_for_proven_nodes};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::JobState;
use corex_core::{JobSpec, Keypair};
use corex_ledger::NodeStatus;
use corex_net::CoordinatorClient;
use corex_node::{Adversary, NodeConfig};

const CHEATER: u8 = 101;

/// The nodes share this machine: no Sybil limits, and only the coordinator replays audits.
fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        shared_hardware: false,
        ..CoordinatorConfig::one_machine()
    }
}

fn job(name: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        rounds: 20,
        ..small_job(adam())
    }
}

/// Three honest nodes (seeds 1..=3) and the cheater, which sends random values.
fn spawn_nodes(net: &mut TestNet) {
    for seed in 1..=3 {
        net.spawn_node(seed);
    }
    net.spawn_node_with(
        CHEATER,
        NodeConfig {
            adversary: Some(Adversary::Random),
            ..NodeConfig::default()
        },
    );
}

/// Waits until the ledger shows `node` removed (the recorder runs behind the rounds).
async fn wait_for_removal(owner: &CoordinatorClient, node: &Keypair) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = owner.ledger_account(&node.id()).await.unwrap();
        let status = view
            .and_then(|view| view.node)
            .map(|node| node.profile.status);
        if status == Some(NodeStatus::Removed) {
            return;
        }
        assert!(Instant::now() < deadline, "cheater not removed: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_the_ledger_removed_gets_no_work_after_a_restart() {
    let mut net = TestNet::start(config()).await;
    spawn_nodes(&mut net);
    let owner = net.client(250);
    let first = owner.submit_job(&job("before-restart")).await.unwrap();
    assert_eq!(
        wait_for_end(&owner, &first, Duration::from_secs(120))
            .await
            .state,
        JobState::Finished
    );
    let cheater = Keypair::from_secret([CHEATER; 32]);
    wait_for_removal(&owner, &cheater).await;
    let refused = net.client(CHEATER).lease(0).await.unwrap_err();
    assert_eq!(refused.api_code(), Some("banned"), "{refused}");

    // A fresh coordinator process on the same data directory.
    let dir = net.shutdown().await;
    let mut net = TestNet::start_in(dir, config()).await;
    let cheater_client = net.client(CHEATER);
    let refused = cheater_client.lease(0).await.unwrap_err();
    assert_eq!(refused.api_code(), Some("banned"), "{refused}");

    // Honest nodes train a new job to the end; the removed node, running again, gets nothing.
    spawn_nodes(&mut net);
    let owner = net.client(250);
    wait_for_proven_nodes(&owner, 3, Duration::from_secs(60)).await;
    let second = owner.submit_job(&job("after-restart")).await.unwrap();
    let status = wait_for_end(&owner, &second, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    assert!(
        !status.nodes.contains_key(&cheater.id()),
        "the removed node contributed: {:?}",
        status.nodes.keys().collect::<Vec<_>>()
    );
    assert_eq!(status.nodes.len(), 3);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_nodes_are_recognised_after_a_restart_and_go_on_working() {
    let mut net = TestNet::start(config()).await;
    for seed in 1..=2 {
        net.spawn_node(seed);
    }
    let owner = net.client(250);
    let first = owner.submit_job(&job("same-spec")).await.unwrap();
    let status = wait_for_end(&owner, &first, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);

    // The same node processes, a new coordinator process: it restores their standing from its
    // store and they go on with no one's help.
    net.restart_server(config()).await;
    let owner = net.client(250);
    // Proven before the restart, proven after it: the capability was stored, not asked again.
    wait_for_proven_nodes(&owner, 2, Duration::from_millis(1)).await;
    let second = owner.submit_job(&job("same-spec")).await.unwrap();
    assert_ne!(
        second, first,
        "the same spec from the same owner gets a new id"
    );
    let status = wait_for_end(&owner, &second, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    assert_eq!(status.nodes.len(), 2, "both nodes came back: {status:?}");
    let dir = net.shutdown().await;
    for job in [first, second] {
        let report = dir
            .path()
            .join("jobs")
            .join(job.to_hex())
            .join("report.json");
        assert!(report.exists(), "{} kept its report", job.short());
    }
}

/// Waits until `job` has completed at least `round` rounds.
async fn wait_for_round(owner: &CoordinatorClient, job: &corex_core::Hash, round: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while owner.job_status(job).await.unwrap().round < round {
        assert!(Instant::now() < deadline, "round {round} never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_resumes_after_a_restart_and_each_round_is_recorded_once() {
    let mut net = TestNet::start(config()).await;
    for seed in 1..=2 {
        net.spawn_node(seed);
    }
    let owner = net.client(250);
    wait_for_proven_nodes(&owner, 2, Duration::from_secs(60)).await;
    let finished = owner.submit_job(&job("finished-before")).await.unwrap();
    wait_for_end(&owner, &finished, Duration::from_secs(120)).await;
    let weights_before = owner.download_weights(&finished).await.unwrap();
    let running = owner.submit_job(&job("running-across")).await.unwrap();
    wait_for_round(&owner, &running, 6).await;
    let before = owner.job_status(&running).await.unwrap();

    net.restart_server(config()).await;
    let owner = net.client(250);
    // The ended job is served as it was; the running one is where its checkpoint left it.
    let served = owner.job_status(&finished).await.unwrap();
    assert_eq!(served.state, JobState::Finished);
    assert_eq!(
        owner.download_weights(&finished).await.unwrap(),
        weights_before
    );
    let resumed = owner.job_status(&running).await.unwrap();
    assert_eq!(resumed.state, JobState::Running, "{resumed:?}");
    assert!(
        resumed.round + 1 >= before.round,
        "resumed at round {} after {} had closed",
        resumed.round,
        before.round
    );
    let status = wait_for_end(&owner, &running, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished, "{status:?}");
    let report = owner.job_report(&running).await.unwrap();
    assert_eq!(report.rounds.len(), 20);
    assert!(
        report
            .rounds
            .iter()
            .enumerate()
            .all(|(index, round)| round.round as usize == index),
        "rounds in order, none twice"
    );

    // The ledger: one round record per closed round of each job, and a clean audit.
    let dir = net.shutdown().await;
    let (store, chain) =
        corex_ledger_store::LedgerStore::open_or_init(&dir.path().join("ledger.redb"), || {
            unreachable!("the ledger exists")
        })
        .unwrap();
    for job in [finished, running] {
        let mut recorded = Vec::new();
        for height in 0..=chain.height() {
            let Some(block) = store.block(height).unwrap() else {
                continue;
            };
            for tx in &block.txs {
                if let corex_ledger::TxBody::RecordRound { job: of, round, .. } = &tx.body
                    && *of == job
                {
                    recorded.push(*round);
                }
            }
        }
        assert_eq!(recorded, (0..20).collect::<Vec<_>>(), "{}", job.short());
    }
}
