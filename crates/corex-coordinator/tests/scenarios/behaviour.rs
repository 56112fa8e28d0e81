//! Behaviour analysis against the running coordinator: a node whose fragments come far slower
//! than its capability challenge showed (a strong machine took the benchmark, a weak one does
//! the work) is flagged, on the node list and as a suspicious event on its ledger profile; an
//! honest node doing the same job is not.

use crate::common;

use std::time::Duration;

use common::{TestNet, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::JobSpec;
use corex_node::{Adversary, NodeConfig};

/// Fragments heavy enough to time: 8,192 samples of the digits MLP (about 8 GFLOP) each, so
/// that they take over `TierPolicy::min_judged_ms` (50 ms) even at the speed a fast machine
/// shows in the capability challenge (up to 160 GFLOP/s; 4,096-sample fragments were left
/// unjudged when the challenge ran at 82 GFLOP/s).
fn job() -> JobSpec {
    JobSpec {
        name: "behaviour".into(),
        rounds: 8,
        global_batch: 8_192,
        fragment_samples: 8_192,
        ..JobSpec::digits_h16()
    }
}

/// Runs the job on one node (computing `slowdown` times slower than it can); returns its
/// behaviour flag and abnormal events on the ledger.
async fn run(adversary: Option<Adversary>, slowdown: u32) -> (Option<String>, u64, Option<u64>) {
    let mut net = TestNet::start(CoordinatorConfig {
        shared_hardware: false,
        ..CoordinatorConfig::one_machine()
    })
    .await;
    net.spawn_node_with(
        1,
        NodeConfig {
            adversary,
            slowdown,
            ..NodeConfig::default()
        },
    );
    let owner = net.client(250);
    let id = owner.submit_job(&job()).await.unwrap();
    wait_for_end(&owner, &id, Duration::from_secs(300)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let node = corex_core::Keypair::from_secret([1; 32]).id();
    let info = owner.nodes().await.unwrap()[&node].clone();
    println!("capability {:?}", info.capability);
    let account = owner.ledger_account(&node).await.unwrap().unwrap();
    let abnormal = account.node.unwrap().profile.abnormal_events;
    net.shutdown().await;
    (info.behaviour_flag, abnormal, info.observed_mflops)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_times_that_contradict_the_benchmark_are_flagged() {
    let (flag, abnormal, observed) = run(None, 1).await;
    println!("honest node: observed {observed:?} MFLOP/s, flag {flag:?}");
    assert!(flag.is_none(), "an honest node was flagged: {flag:?}");
    assert_eq!(abnormal, 0);
    assert!(observed.is_some(), "the honest node's fragments were timed");

    // The scenario binary runs two tests at a time on a 2-core machine: a capability challenge
    // answered while another test computes shows less than the machine can do (22 GFLOP/s
    // against 60 alone), so the switch is made 25× slower than the bait rather than the
    // adversary's default 10×, to stay beyond the 4× contradiction factor whatever runs beside.
    let (flag, abnormal, observed) = run(Some(Adversary::BaitAndSwitch), 25).await;
    println!("bait-and-switch node: observed {observed:?} MFLOP/s, flag {flag:?}");
    let flag = flag.expect("the bait-and-switch node was not flagged");
    assert!(flag.contains("capability challenge"), "{flag}");
    assert_eq!(abnormal, 1, "one suspicious event on the ledger");
}
