//! A node that dies holding a fragment: its lease expires, or before that a free node takes a
//! copy of the straggler's fragment, and the job completes with the same model as if nothing
//! had happened.

use crate::common;

use std::time::Duration;

use common::{TestNet, adam, small_job, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::{JobState, JobStatus, LeaseResponse};
use corex_core::{Fragment, Hash, JobSpec};
use corex_net::CoordinatorClient;

/// The model `spec` trains on a network of one honest node.
async fn reference_run(spec: &JobSpec) -> JobStatus {
    let mut reference = TestNet::start(CoordinatorConfig::one_machine()).await;
    let owner = reference.client(100);
    let job = owner.submit_job(spec).await.unwrap();
    reference.spawn_node(11);
    let expected = wait_for_end(&owner, &job, Duration::from_secs(120)).await;
    reference.shutdown().await;
    expected
}

/// A network running `spec` where the node of key seed 9 registered and took the first
/// fragment, and has not answered since: the network, the owner's client, the job, that
/// fragment.
async fn with_a_stalled_holder(spec: &JobSpec) -> (TestNet, CoordinatorClient, Hash, Fragment) {
    let net = TestNet::start(CoordinatorConfig::one_machine()).await;
    let owner = net.client(100);
    let job = owner.submit_job(spec).await.unwrap();
    let stalled = net.client(9);
    stalled
        .register(corex_node::device::detect(1, &corex_ml::Backend::cpu()))
        .await
        .unwrap();
    let LeaseResponse::Work { fragment, .. } = stalled.lease(0).await.unwrap() else {
        panic!("a fresh job has work");
    };
    (net, owner, job, *fragment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_fragment_is_reissued_and_the_job_completes() {
    let mut spec = small_job(adam());
    spec.lease_ms = 400;
    let expected = reference_run(&spec).await;

    // The doomed node took a fragment and died in the middle of it.
    let (mut net, owner, job, fragment) = with_a_stalled_holder(&spec).await;
    net.spawn_node(11);
    net.spawn_node(12);
    let status = wait_for_end(&owner, &job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    assert!(
        status.re_issued_fragments >= 1,
        "fragment {} was never re-issued",
        fragment.id
    );
    let dead = corex_core::Keypair::from_secret([9; 32]).id();
    assert!(
        !status.nodes.contains_key(&dead),
        "a dead node earned credit"
    );
    assert_eq!(
        status.model, expected.model,
        "the re-issued run must train the same model"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_holders_fragment_is_copied_long_before_its_lease_expires() {
    let mut spec = small_job(adam());
    // The silent holder's lease outlives the test: only a straggler copy can finish its round.
    spec.lease_ms = 600_000;
    let expected = reference_run(&spec).await;

    let (mut net, owner, job, _) = with_a_stalled_holder(&spec).await;
    net.spawn_node(11);
    let status = wait_for_end(&owner, &job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    assert_eq!(status.re_issued_fragments, 1, "one straggler copy");
    let silent = corex_core::Keypair::from_secret([9; 32]).id();
    assert!(!status.nodes.contains_key(&silent));
    assert_eq!(status.model, expected.model);
    net.shutdown().await;
}
