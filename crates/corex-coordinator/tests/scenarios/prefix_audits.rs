//! Prefix audits of traced local steps under an inner optimizer with state (Adam), against a
//! running coordinator: an audit replays the steps up to a drawn segment's end from the round's
//! model, with a fresh Adam as the node began, and compares a seeded sample of leaves of the
//! node's checkpoint there, opened against the root it committed. Honest language-model
//! results pass by prefixes (replayed by other nodes); a node that skips a segment of its steps
//! is caught; opened leaves that do not match the commitment, or come without their paths, are
//! refused before they count.

use crate::common;

use std::time::Duration;

use common::{
    TestNet, adam, expect_error, hand_driven_node, signed_header, small_job, start_with_cheaters,
    traced_fragment, wait_for_end,
};
use corex_coordinator::CoordinatorConfig;
use corex_core::feedback_state::{LEAF_VALUES, leaf_range, state_paths};
use corex_core::messages::{JobState, LeaseResponse, ResultHeader, ResultVerdict};
use corex_core::result_frame::encode_result;
use corex_core::tensor::{bytes_to_f32s, f32s_to_bytes};
use corex_core::{
    DatasetSource, DatasetSpec, Fragment, Hash, JobSpec, Keypair, ModelSpec, OptimizerSpec,
    TransformerSpec, WorkSpec,
};
use corex_ml::Dataset;
use corex_node::Adversary;

/// 8 steps of a fresh Adam per fragment (4 segments of 2 steps) over `samples` samples: far
/// under the floor of segment audits, which prefix audits do not have.
fn adam_steps(base: JobSpec, samples: u32, rounds: u32, fragments_per_round: u32) -> JobSpec {
    JobSpec {
        rounds,
        global_batch: samples * fragments_per_round,
        fragment_samples: samples,
        work: WorkSpec::LocalSteps {
            steps: 8,
            inner: adam(),
        },
        optimizer: OptimizerSpec::Sgd {
            learning_rate: 1.0,
            momentum: 0.0,
        },
        ..base
    }
}

fn language_model_job() -> JobSpec {
    let base = small_job(adam());
    JobSpec {
        name: "lm-prefix-audits".into(),
        model: ModelSpec::Transformer(TransformerSpec {
            layers: 1,
            width: 32,
            heads: 4,
            context: 16,
            ff: None,
        }),
        dataset: DatasetSpec {
            test_fraction: 0.1,
            ..base.dataset.clone()
        },
        eval_every: 20,
        ..adam_steps(base, 32, 20, 6)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_settle_honest_language_model_audits_and_catch_skipped_steps() {
    // Nodes audit each other once proven, as on a devnet.
    let skippers = &[(101, Adversary::SkipSegment), (102, Adversary::SkipSegment)];
    let (net, owner) = start_with_cheaters(CoordinatorConfig::one_machine(), 4, skippers).await;
    let text = Dataset::synthetic_text(40_000, 10).unwrap();
    let uploaded = owner.upload_dataset(&text.to_bytes()).await.unwrap();
    let mut spec = language_model_job();
    spec.dataset.source = DatasetSource::Uploaded {
        dataset: uploaded.dataset,
    };
    let job = owner.submit_job(&spec).await.unwrap();
    let status = wait_for_end(&owner, &job, Duration::from_secs(300)).await;
    assert_eq!(status.state, JobState::Finished);
    let report = owner.job_report(&job).await.unwrap();
    let cheaters = [101, 102].map(|seed| net.client(seed).id());
    let (mut honest_audited, mut by_prefix, mut by_node, mut caught) = (0, 0, 0, 0);
    for result in report.rounds.iter().flat_map(|round| &round.results) {
        let cheater = cheaters.contains(&result.node);
        if let Some([first, end]) = result.audited_steps {
            assert_eq!(first, 0, "an Adam job's audits replay prefixes");
            assert!([2, 4, 6].contains(&end), "a prefix ends inside: {end}");
        }
        match &result.verdict {
            ResultVerdict::Rejected { reason, .. } | ResultVerdict::Discarded { reason, .. } => {
                assert!(cheater, "an honest result was rejected: {reason}");
                caught += 1;
            }
            ResultVerdict::Accepted { audited: true, .. } if !cheater => {
                honest_audited += 1;
                by_prefix += usize::from(result.audited_steps.is_some());
                by_node +=
                    usize::from(result.audited_steps.is_some() && result.audited_by.is_some());
            }
            ResultVerdict::Accepted { .. } => {}
        }
    }
    net.shutdown().await;
    println!(
        "honest audits {honest_audited}: {by_prefix} settled by a prefix ({by_node} replayed by nodes), the rest whole; skippers caught {caught} times"
    );
    // Three of four draws end inside the fragment (about 3/4 of unflagged audits: 17 to 27 of
    // 23 to 32 in nine runs); the fourth is the whole fragment.
    assert!(
        by_prefix * 3 >= honest_audited && honest_audited >= 12,
        "{by_prefix} of {honest_audited} honest audits settled by prefixes"
    );
    assert!(by_node >= 1, "no prefix was replayed by a node");
    assert!(caught >= 1, "no skipped segment was caught");
}

/// A framed reveal of `values` by `key` for `fragment` at `model`, with checkpoint paths.
fn reveal(
    key: &Keypair,
    fragment: &Hash,
    model: Hash,
    values: &[f32],
    paths: Option<Vec<Vec<Hash>>>,
) -> Vec<u8> {
    let bytes = f32s_to_bytes(values);
    let header = ResultHeader {
        checkpoint_paths: paths,
        ..signed_header(
            key,
            Fragment::derive_reveal_id(fragment),
            model,
            Hash::of(&bytes),
            0.0,
            0,
            None,
        )
    };
    encode_result(&header, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opened_checkpoint_leaves_must_match_the_commitment() {
    // The coordinator replays audits itself; the one node here is hand-driven.
    let mut net = TestNet::start(CoordinatorConfig {
        shared_hardware: false,
        ..CoordinatorConfig::one_machine()
    })
    .await;
    let mut spec = adam_steps(small_job(adam()), 64, 8, 1);
    spec.name = "digits-prefix-audits".into();
    let owner = net.client(250);
    let job = owner.submit_job(&spec).await.unwrap();
    let (key, node) = hand_driven_node(&net, 1).await;
    let dataset = Dataset::digits().unwrap();
    // A new node's results are all audited; a quarter of the draws are the whole fragment (no
    // reveal), so submit round after round until one asks for a prefix's end.
    let mut asked = None;
    for _ in 0..spec.rounds {
        let fragment = loop {
            match node.lease(0).await.unwrap() {
                LeaseResponse::Work { fragment, .. } => break fragment,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let parameters = bytes_to_f32s(&node.fetch_blob(&fragment.model).await.unwrap()).unwrap();
        let (traced, trace, bounds) =
            traced_fragment(&spec, &parameters, &dataset, &fragment.indices);
        let interior = &bounds[1..bounds.len() - 1];
        let bytes = f32s_to_bytes(&traced.output.gradient);
        let header = signed_header(
            &key,
            fragment.id,
            fragment.model,
            Hash::of(&bytes),
            traced.output.loss,
            traced.output.samples,
            Some(trace),
        );
        node.call("POST", "/v1/results", encode_result(&header, bytes))
            .await
            .unwrap();
        if let LeaseResponse::Reveal {
            fragment: asked_for,
            steps: asked_steps,
            leaves,
            ..
        } = node.lease(0).await.unwrap()
        {
            assert_eq!(asked_for, fragment.id);
            let [end] = asked_steps[..] else {
                panic!("a prefix asks for its end only: {asked_steps:?}")
            };
            let at = interior.iter().position(|step| *step == end).unwrap();
            asked = Some((fragment, end, leaves, traced.checkpoints[at].clone()));
            break;
        }
    }
    let (fragment, end, leaves, checkpoint) = asked.expect("no prefix drawn in 8 rounds");
    let parameters = checkpoint.len();
    assert!(!leaves.is_empty() && leaves.is_sorted());
    let opened: Vec<f32> = leaves
        .iter()
        .flat_map(|leaf| checkpoint[leaf_range(parameters, *leaf)].to_vec())
        .collect();
    let paths = state_paths(&checkpoint, &leaves);
    let model = fragment.model;
    let refused =
        |body, status, code| expect_error(&node, "POST", "/v1/results", body, status, code);

    // Whole checkpoints, or leaves without their paths, are not what was asked.
    refused(
        reveal(&key, &fragment.id, model, &checkpoint, None),
        422,
        "wrong_shape",
    )
    .await;
    refused(
        reveal(&key, &fragment.id, model, &opened, None),
        422,
        "wrong_shape",
    )
    .await;
    // A value moved, or the paths of other leaves: the leaves do not open the root.
    let mut moved = opened.clone();
    moved[LEAF_VALUES / 2] += 1e-3;
    let body = reveal(&key, &fragment.id, model, &moved, Some(paths.clone()));
    refused(body, 422, "checkpoint_mismatch").await;
    let mut swapped = paths.clone();
    swapped.reverse();
    let body = reveal(&key, &fragment.id, model, &opened, Some(swapped));
    refused(body, 422, "checkpoint_mismatch").await;

    // The committed leaves settle the audit by the prefix.
    let honest = reveal(&key, &fragment.id, model, &opened, Some(paths));
    node.call("POST", "/v1/results", honest).await.unwrap();
    net.spawn_node(3);
    let status = wait_for_end(&owner, &job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Finished);
    let report = owner.job_report(&job).await.unwrap();
    let result = report
        .rounds
        .iter()
        .flat_map(|round| &round.results)
        .find(|result| result.fragment == fragment.id)
        .unwrap();
    assert_eq!(
        result.verdict,
        ResultVerdict::Accepted {
            audited: true,
            flag: None
        }
    );
    assert_eq!(result.audited_steps, Some([0, end]));
    net.shutdown().await;
}
