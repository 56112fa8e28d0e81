//! Following a job with `POST /v1/jobs/{id}/watch`: a long poll answered as each round
//! closes, at once for a job that has ended, and at the (capped) deadline when nothing moves;
//! readable only by those who may read the status; bad input refused.

use crate::common;

use std::time::{Duration, Instant};

use common::{TestNet, adam, expect_error, small_job, wait_for_proven_nodes};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::JobState;
use corex_core::{Hash, JobSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_hears_of_every_round_and_of_the_end_without_polling() {
    let config = CoordinatorConfig {
        max_long_poll_ms: 2_000,
        ..CoordinatorConfig::one_machine()
    };
    let mut net = TestNet::start(config).await;
    net.spawn_node(1);
    net.spawn_node(2);
    let owner = net.client(250);
    wait_for_proven_nodes(&owner, 2, Duration::from_secs(60)).await;
    let spec = JobSpec {
        rounds: 8,
        ..small_job(adam())
    };
    let job = owner.submit_job(&spec).await.unwrap();

    // Each answer comes when the job has moved past what the watcher saw; a round slower
    // than the long-poll limit gives an answer that has not moved, and the watcher asks again.
    let mut status = owner.job_status(&job).await.unwrap();
    let mut answers = 0;
    while status.state == JobState::Running {
        let seen = status.round;
        let asked = Instant::now();
        status = owner.watch_job(&job, seen, 60_000).await.unwrap();
        let waited = asked.elapsed();
        answers += 1;
        assert!(
            status.round >= seen,
            "the round went back: {seen} → {}",
            status.round
        );
        let moved = status.round > seen || status.state != JobState::Running;
        assert!(
            moved || waited >= Duration::from_millis(1_900),
            "answered after {waited:?} at round {seen} without the job moving"
        );
        assert!(
            answers < 100,
            "the watch answers without waiting: {status:?}"
        );
    }
    assert_eq!(status.state, JobState::Finished);
    assert_eq!(status.round, spec.rounds);

    // An ended job is answered at once, whatever round the watcher names.
    let asked = Instant::now();
    let ended = owner.watch_job(&job, 0, 60_000).await.unwrap();
    assert_eq!(ended.state, JobState::Finished);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );

    // Nothing moves on a job nobody computes: the answer comes at the coordinator's limit,
    // not at the minute the watcher asked for.
    net.stop_nodes().await;
    let idle = owner
        .submit_job(&JobSpec {
            seed: spec.seed + 1,
            ..spec.clone()
        })
        .await
        .unwrap();
    let asked = Instant::now();
    let unmoved = owner.watch_job(&idle, 0, 60_000).await.unwrap();
    let waited = asked.elapsed();
    assert_eq!((unmoved.state, unmoved.round), (JobState::Running, 0));
    assert!(
        waited >= Duration::from_millis(1_900) && waited < Duration::from_secs(10),
        "waited {waited:?}"
    );

    // A private job's status is its owner's: a stranger's watch is refused like its read.
    let stranger = net.client(251);
    let error = stranger.watch_job(&idle, 0, 100).await.unwrap_err();
    assert_eq!(error.api_code(), Some("not_job_owner"), "{error}");
    let unknown = Hash::of(b"no such job");
    let error = owner.watch_job(&unknown, 0, 100).await.unwrap_err();
    assert_eq!(error.api_code(), Some("unknown_job"), "{error}");
    let path = format!("/v1/jobs/{idle}/watch");
    expect_error(
        &owner,
        "POST",
        &path,
        b"{\"after_round\": -1}".to_vec(),
        400,
        "malformed_body",
    )
    .await;
    expect_error(
        &owner,
        "POST",
        "/v1/jobs/xyz/watch",
        b"{\"after_round\": 0, \"wait_ms\": 0}".to_vec(),
        400,
        "malformed_id",
    )
    .await;
    net.shutdown().await;
}
