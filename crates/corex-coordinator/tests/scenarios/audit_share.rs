//! A node's audit record outlives the job it was earned in: on one coordinator, the same
//! nodes' second job is audited at the rate their passed audits earned, not from probation
//! again, so short jobs after the first cost less in replays.

use std::time::Duration;

use crate::common;
use common::{TestNet, adam, small_job, wait_for_end, wait_for_proven_nodes};
use corex_coordinator::CoordinatorConfig;
use corex_core::JobSpec;
use corex_core::messages::{JobState, ResultVerdict};
use corex_net::CoordinatorClient;

/// Runs `spec` to its end; the share of its results that were audited.
async fn audited_share(owner: &CoordinatorClient, spec: &JobSpec) -> f64 {
    let id = owner.submit_job(spec).await.unwrap();
    let status = wait_for_end(owner, &id, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    let report = owner.job_report(&id).await.unwrap();
    let results: Vec<_> = report
        .rounds
        .iter()
        .flat_map(|round| &round.results)
        .collect();
    let audited = results
        .iter()
        .filter(|result| {
            matches!(
                result.verdict,
                ResultVerdict::Accepted { audited: true, .. }
            )
        })
        .count();
    audited as f64 / results.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proven_nodes_next_job_is_audited_at_its_earned_rate() {
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    for seed in 1..=4 {
        net.spawn_node(seed);
    }
    let owner = net.client(250);
    wait_for_proven_nodes(&owner, 4, Duration::from_secs(60)).await;
    let spec = JobSpec {
        rounds: 40,
        eval_every: 40,
        ..small_job(adam())
    };
    let first = audited_share(&owner, &spec).await;
    let second = audited_share(
        &owner,
        &JobSpec {
            name: "the same nodes again".into(),
            seed: spec.seed + 1,
            ..spec
        },
    )
    .await;
    net.shutdown().await;
    println!(
        "audited share: first job {:.1} %, second job {:.1} %",
        first * 100.0,
        second * 100.0
    );
    assert!(
        second < first,
        "the second job was audited as much as the first: {second} against {first}"
    );
}
