//! Segment audits of traced local-steps results against a running coordinator: honest
//! results pass by replaying one segment of their steps; a node that skips a segment's steps
//! is caught when an audit picks that segment (and then replayed whole and hard-rejected); and
//! revealed checkpoints are checked like any result before they count.

use crate::common;

use std::time::Duration;

use common::{
    TestNet, expect_error, signed_header, small_job, start_with_cheaters, traced_fragment,
    wait_for_end,
};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::{JobState, LeaseResponse, ResultVerdict};
use corex_core::result_frame::encode_result;
use corex_core::tensor::{bytes_to_f32s, f32s_to_bytes};
use corex_core::trace::StepTrace;
use corex_core::{Fragment, Hash, JobSpec, Keypair, OptimizerSpec, WorkSpec};
use corex_ml::Dataset;
use corex_net::CoordinatorClient;
use corex_node::{Adversary, NodeConfig};

/// Nodes share this machine here; only the coordinator replays audits.
fn coordinator_audits() -> CoordinatorConfig {
    CoordinatorConfig {
        shared_hardware: false,
        ..CoordinatorConfig::one_machine()
    }
}

/// Local steps over traced fragments: 8 SGD steps on 512 samples, 4 segments of 2 steps.
fn traced_job(rounds: u32, fragments_per_round: u32) -> JobSpec {
    JobSpec {
        name: "traced-local-steps".into(),
        rounds,
        global_batch: 512 * fragments_per_round,
        fragment_samples: 512,
        work: WorkSpec::LocalSteps {
            steps: 8,
            inner: OptimizerSpec::Sgd {
                learning_rate: 0.1,
                momentum: 0.0,
            },
        },
        ..small_job(OptimizerSpec::Sgd {
            learning_rate: 1.0,
            momentum: 0.0,
        })
    }
}

/// What a run of 4 honest and 2 skip-segment nodes showed.
struct SegmentRun {
    honest_audited: usize,
    by_segment: usize,
    by_node: usize,
    caught: usize,
}

async fn run_with_skippers(config: CoordinatorConfig) -> SegmentRun {
    // The job takes about a second: a skipper that joined late would get no work at all.
    let skippers = &[(101, Adversary::SkipSegment), (102, Adversary::SkipSegment)];
    let (net, owner) = start_with_cheaters(config, 4, skippers).await;
    let job = owner.submit_job(&traced_job(60, 6)).await.unwrap();
    let status = wait_for_end(&owner, &job, Duration::from_secs(300)).await;
    assert_eq!(status.state, JobState::Finished);
    let report = owner.job_report(&job).await.unwrap();
    let cheaters = [net.client(101).id(), net.client(102).id()];
    let mut cheater_results = 0;
    let mut run = SegmentRun {
        honest_audited: 0,
        by_segment: 0,
        by_node: 0,
        caught: 0,
    };
    for result in report.rounds.iter().flat_map(|round| &round.results) {
        let cheater = cheaters.contains(&result.node);
        cheater_results += usize::from(cheater);
        match &result.verdict {
            ResultVerdict::Rejected { reason, .. } | ResultVerdict::Discarded { reason, .. } => {
                assert!(cheater, "an honest result was rejected: {reason}");
                run.caught += 1;
            }
            ResultVerdict::Accepted { audited: true, .. } if !cheater => {
                run.honest_audited += 1;
                run.by_segment += usize::from(result.audited_steps.is_some());
                run.by_node +=
                    usize::from(result.audited_steps.is_some() && result.audited_by.is_some());
            }
            ResultVerdict::Accepted { .. } => {}
        }
        if let Some([first, end]) = result.audited_steps {
            assert_eq!(end - first, 2, "a segment is 2 of the 8 steps");
        }
    }
    // No node replay of a segment was judged wrong: the auditors are honest.
    for audit in report.rounds.iter().flat_map(|round| &round.audits) {
        assert!(
            matches!(audit.verdict, ResultVerdict::Accepted { .. }),
            "{audit:?}"
        );
    }
    net.shutdown().await;
    println!(
        "honest audits {}, {} settled by a segment ({} replayed by nodes); {cheater_results} skippers' results, skipped segments caught {} times",
        run.honest_audited, run.by_segment, run.by_node, run.caught
    );
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_settle_honest_audits_and_catch_skipped_steps() {
    let run = run_with_skippers(coordinator_audits()).await;
    assert!(
        run.by_segment * 10 >= run.honest_audited * 9,
        "unflagged honest audits are settled by segments: {} of {}",
        run.by_segment,
        run.honest_audited
    );
    assert_eq!(run.by_node, 0, "only the coordinator replays here");
    assert!(run.caught >= 1, "no skipped segment was caught");
}

/// With nodes allowed to audit each other (as on a devnet), proven nodes replay the segments
/// from the checkpoints the coordinator publishes for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proven_nodes_replay_segments_from_published_checkpoints() {
    let run = run_with_skippers(CoordinatorConfig::one_machine()).await;
    assert!(run.by_node >= 1, "no segment was replayed by a node");
    assert!(run.by_segment * 10 >= run.honest_audited * 9);
    assert!(run.caught >= 1, "no skipped segment was caught");
}

/// Nodes that keep no checkpoints decline every reveal: each audited result is replayed whole
/// at once, and no round waits for the audit deadline (a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_its_checkpoints_declines_and_the_round_goes_on() {
    let mut net = TestNet::start(coordinator_audits()).await;
    for seed in 1..=3 {
        net.spawn_node_with(
            seed,
            NodeConfig {
                checkpoint_budget_bytes: 0,
                ..NodeConfig::default()
            },
        );
    }
    let owner = net.client(250);
    let spec = JobSpec {
        lease_ms: 60_000,
        ..traced_job(6, 3)
    };
    let started = std::time::Instant::now();
    let job = owner.submit_job(&spec).await.unwrap();
    let status = wait_for_end(&owner, &job, Duration::from_secs(50)).await;
    assert_eq!(status.state, JobState::Finished);
    let report = owner.job_report(&job).await.unwrap();
    let mut audited = 0;
    for result in report.rounds.iter().flat_map(|round| &round.results) {
        assert!(
            matches!(result.verdict, ResultVerdict::Accepted { .. }),
            "{result:?}"
        );
        if matches!(
            result.verdict,
            ResultVerdict::Accepted { audited: true, .. }
        ) {
            audited += 1;
            assert_eq!(result.audited_steps, None, "no segment could be replayed");
        }
    }
    assert!(
        audited >= 6,
        "new nodes' first results are all audited: {audited}"
    );
    println!(
        "{audited} audited results replayed whole; job done in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Declining what nobody asked for is refused.
    let node = net.client(1);
    let unknown = node.decline_reveal(&Hash::of(b"no such fragment")).await;
    assert_eq!(unknown.unwrap_err().api_code(), Some("unknown_fragment"));
    let done = report.rounds[0].results[0].fragment;
    let closed = node.decline_reveal(&done).await;
    assert_eq!(closed.unwrap_err().api_code(), Some("reveal_not_asked"));
    let malformed = node
        .call("POST", "/v1/reveals/decline", b"{".to_vec())
        .await;
    assert_eq!(malformed.unwrap_err().api_code(), Some("malformed_body"));
    net.shutdown().await;
}

/// A signed, framed result from `key` for `fragment` (id `id`), with `values` as its tensor.
fn framed(
    key: &Keypair,
    id: Hash,
    model: Hash,
    values_bytes: Vec<u8>,
    loss: f32,
    samples: u32,
    trace: Option<StepTrace>,
) -> Vec<u8> {
    let header = signed_header(
        key,
        id,
        model,
        Hash::of(&values_bytes),
        loss,
        samples,
        trace,
    );
    encode_result(&header, values_bytes)
}

async fn expect_refused(client: &CoordinatorClient, body: Vec<u8>, status: u16, code: &str) {
    expect_error(client, "POST", "/v1/results", body, status, code).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_and_reveals_are_checked_before_they_count() {
    let spec = traced_job(2, 1);
    let mut net = TestNet::start(coordinator_audits()).await;
    let owner = net.client(250);
    let job = owner.submit_job(&spec).await.unwrap();
    let (key, other_key) = (Keypair::from_secret([1; 32]), Keypair::from_secret([2; 32]));
    let (node, other) = (net.client(1), net.client(2));
    let device = corex_node::device::detect(1, &corex_ml::Backend::cpu());
    node.register(device.clone()).await.unwrap();
    other.register(device).await.unwrap();

    let LeaseResponse::Work { fragment, .. } = node.lease(0).await.unwrap() else {
        panic!("a fresh job has work");
    };
    let model = fragment.model;
    let parameters = bytes_to_f32s(&node.fetch_blob(&model).await.unwrap()).unwrap();
    let dataset = Dataset::digits().unwrap();
    let (traced, trace, bounds) = traced_fragment(&spec, &parameters, &dataset, &fragment.indices);
    let interior = &bounds[1..bounds.len() - 1];
    let result = |trace: StepTrace, loss: f32| {
        framed(
            &key,
            fragment.id,
            model,
            f32s_to_bytes(&traced.output.gradient),
            loss,
            traced.output.samples,
            Some(trace),
        )
    };

    // Traces that do not fit the fragment, or disagree with the reported loss.
    let mut short = trace.clone();
    short.checkpoints.pop();
    expect_refused(&node, result(short, traced.output.loss), 422, "bad_trace").await;
    expect_refused(
        &node,
        result(trace.clone(), traced.output.loss + 0.5),
        422,
        "bad_trace",
    )
    .await;
    // A NaN step loss cannot even be written in the JSON header.
    let mut poisoned = trace.clone();
    poisoned.losses[3] = f32::NAN;
    expect_refused(
        &node,
        result(poisoned, traced.output.loss),
        400,
        "malformed_body",
    )
    .await;

    // The honest traced result; the node is new, so it is audited, and asked for checkpoints.
    node.call("POST", "/v1/results", result(trace, traced.output.loss))
        .await
        .unwrap();
    let LeaseResponse::Reveal {
        fragment: asked_for,
        model: asked_model,
        steps: asked,
        leaves: asked_leaves,
        feedback: asked_chunks,
    } = node.lease(0).await.unwrap()
    else {
        panic!("the audited submitter is asked for checkpoints");
    };
    assert_eq!((asked_for, asked_model), (fragment.id, model));
    assert!(
        asked_chunks.is_empty(),
        "an uncompressed result has no feedback states"
    );
    assert!(
        asked_leaves.is_empty(),
        "a segment's checkpoints come whole"
    );
    assert!(!asked.is_empty() && asked.iter().all(|step| interior.contains(step)));
    let checkpoint = |step: u32| {
        let position = interior.iter().position(|s| *s == step).unwrap();
        traced.checkpoints[position].clone()
    };
    let honest: Vec<f32> = asked.iter().flat_map(|&step| checkpoint(step)).collect();
    let reveal_id = Fragment::derive_reveal_id(&fragment.id);
    let reveal = |key: &Keypair, values: &[f32]| {
        framed(key, reveal_id, model, f32s_to_bytes(values), 0.0, 0, None)
    };

    // Only the submitter may reveal, only what it committed to, in the asked size.
    expect_refused(&other, reveal(&other_key, &honest), 403, "reveal_not_asked").await;
    let mut wrong = honest.clone();
    wrong[0] += 1.0;
    expect_refused(&node, reveal(&key, &wrong), 422, "checkpoint_mismatch").await;
    expect_refused(&node, reveal(&key, &honest[1..]), 422, "wrong_shape").await;
    let mut infinite = honest.clone();
    infinite[5] = f32::INFINITY;
    expect_refused(&node, reveal(&key, &infinite), 422, "non_finite").await;

    // The committed checkpoints settle the audit and close the round.
    node.call("POST", "/v1/results", reveal(&key, &honest))
        .await
        .unwrap();
    expect_refused(&node, reveal(&key, &honest), 404, "unknown_fragment").await;
    net.spawn_node(3);
    let status = wait_for_end(&owner, &job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Finished);
    let report = owner.job_report(&job).await.unwrap();
    let first = &report.rounds[0].results[0];
    assert_eq!(first.node, key.id());
    assert_eq!(
        first.verdict,
        ResultVerdict::Accepted {
            audited: true,
            flag: None
        }
    );
    let [start, end] = first.audited_steps.unwrap();
    assert!(bounds.windows(2).any(|w| w == [start, end]));
    net.shutdown().await;
}
