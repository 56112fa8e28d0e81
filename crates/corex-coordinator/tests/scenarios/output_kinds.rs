//! Jobs of output work through the network (real TLS, node agents as tasks). An inference job
//! at a finished training job's weights returns exactly the logits of a single-process forward
//! pass, and the accuracy of their predicted classes; a transform job's outputs blob is the
//! single-process transform's, bit for bit; nodes returning random results are caught by
//! audits and the outputs stay the clean run's; results of the wrong length or with NaN are
//! refused; specs naming weights that are missing or of another model are refused.

use crate::common;

use std::time::Duration;

use common::{TestNet, adam, small_job, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::chunk::{CHUNK_SIZE, Manifest};
use corex_core::messages::{
    ApiError, JobOutputs, JobState, LeaseResponse, ResultHeader, ResultReport,
};
use corex_core::result_frame::encode_result;
use corex_core::tensor::{bytes_to_f32s, f32s_to_bytes};
use corex_core::{Hash, JobSpec, Keypair, TransformSpec, WorkSpec};
use corex_ml::Dataset;
use corex_net::{CoordinatorClient, NetError};
use corex_node::Adversary;

const DIGITS: u32 = 1797;

/// A pass over the 1,797 digits: 4 rounds of 512 samples in fragments of 64.
fn output_job(work: WorkSpec) -> JobSpec {
    JobSpec {
        name: "outputs".into(),
        work,
        rounds: 4,
        global_batch: 512,
        fragment_samples: 64,
        eval_every: 4,
        ..small_job(adam())
    }
}

fn projection() -> WorkSpec {
    WorkSpec::Transform {
        transform: TransformSpec::RandomProjection {
            output: 12,
            seed: 5,
        },
    }
}

/// Runs `spec` to its end on `owner`'s coordinator; its outputs, values and indices.
async fn outputs_of(owner: &CoordinatorClient, spec: &JobSpec) -> (JobOutputs, Vec<f32>, Vec<u32>) {
    let job = owner.submit_job(spec).await.unwrap();
    let status = wait_for_end(owner, &job, Duration::from_secs(180)).await;
    assert_eq!(status.state, JobState::Finished);
    let outputs = owner.job_outputs(&job).await.unwrap();
    assert_eq!(
        owner.job_report(&job).await.unwrap().outputs,
        Some(outputs.clone())
    );
    let values = bytes_to_f32s(&owner.fetch_blob(&outputs.values).await.unwrap()).unwrap();
    let indices: Vec<u32> = owner
        .fetch_blob(&outputs.indices)
        .await
        .unwrap()
        .chunks_exact(4)
        .map(|bytes| u32::from_le_bytes(bytes.try_into().unwrap()))
        .collect();
    assert_eq!(values.len() as u64, outputs.rows * u64::from(outputs.width));
    assert_eq!(
        indices,
        (0..DIGITS).collect::<Vec<_>>(),
        "one pass, in order"
    );
    (outputs, values, indices)
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|value| value.to_bits()).collect()
}

/// The blob name a coordinator gives `values`.
fn blob_name(values: &[f32]) -> Hash {
    Manifest::of(&f32s_to_bytes(values), CHUNK_SIZE).hash
}

/// The single-process transform of every digit.
fn transformed_digits(work: &WorkSpec) -> Vec<f32> {
    let WorkSpec::Transform { transform } = work else {
        panic!("not a transform: {work:?}")
    };
    let digits = Dataset::digits().unwrap();
    let all: Vec<u32> = (0..DIGITS).collect();
    let features = digits.feature_rows(&all).unwrap();
    corex_ml::apply_transform(transform, &features, 64).unwrap()
}

fn api_error(error: NetError) -> (u16, ApiError) {
    match error {
        NetError::Api { status, error, .. } => (status, error),
        other => panic!("expected an API refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_and_transforms_over_the_network_are_the_single_process_results() {
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    for seed in 1..=3 {
        net.spawn_node(seed);
    }
    let owner = net.client(250);

    // Train, then predict with the trained weights, named by their blob.
    let training = small_job(adam());
    let trained = owner.submit_job(&training).await.unwrap();
    wait_for_end(&owner, &trained, Duration::from_secs(180)).await;
    let safetensors = owner.download_weights(&trained).await.unwrap();
    let weights = Manifest::of(&safetensors, CHUNK_SIZE).hash;
    let (model, parameters) = corex_ml::from_safetensors(&safetensors).unwrap();
    let inference = output_job(WorkSpec::Inference {
        weights: Some(weights),
    });
    let (outputs, logits, indices) = outputs_of(&owner, &inference).await;
    let digits = Dataset::digits().unwrap();
    let expected = corex_ml::predict(
        &corex_ml::Backend::cpu(),
        &model,
        &parameters,
        &digits,
        &indices,
    )
    .unwrap();
    assert_eq!(outputs.width, 10);
    assert_eq!(bits(&logits), bits(&expected), "the forward pass's logits");
    let labels: Vec<u32> = indices
        .iter()
        .filter_map(|&i| digits.label_of(i as usize))
        .collect();
    let scored = corex_ml::score_predictions(&expected, &labels, 10).unwrap();
    let accuracy = outputs.prediction_accuracy.unwrap();
    assert_eq!(accuracy, scored.accuracy);
    assert!(accuracy > 0.5, "trained weights predict: {accuracy}");
    println!(
        "inference at trained weights: {} rows, prediction accuracy {:.2}%",
        outputs.rows,
        accuracy * 100.0
    );

    // A transform's outputs are the single-process transform's bits, under the same name.
    for work in [
        projection(),
        WorkSpec::Transform {
            transform: TransformSpec::Quantize { levels: 4 },
        },
    ] {
        let (outputs, rows, _) = outputs_of(&owner, &output_job(work.clone())).await;
        let expected = transformed_digits(&work);
        assert_eq!(bits(&rows), bits(&expected), "{work:?}");
        assert_eq!(outputs.values, blob_name(&expected), "{work:?}");
        assert_eq!(outputs.prediction_accuracy, None);
    }

    // Weights that are not published, not a model, or of another model are refused.
    let mut other_model = output_job(WorkSpec::Inference {
        weights: Some(weights),
    });
    other_model.model = corex_core::ModelSpec::mlp(64, vec![16], 10);
    let status = owner.job_status(&trained).await.unwrap();
    for (work, model, expected) in [
        (Some(Hash::of(b"nowhere")), None, "not published"),
        (Some(status.model), None, "not a model's safetensors"),
        (Some(weights), Some(other_model.model.clone()), "of model"),
    ] {
        let mut spec = output_job(WorkSpec::Inference { weights: work });
        if let Some(model) = model {
            spec.model = model;
        }
        let (status, error) = api_error(owner.submit_job(&spec).await.unwrap_err());
        assert_eq!((status, error.error.as_str()), (422, "invalid_spec"));
        assert!(error.message.contains(expected), "{}", error.message);
    }
    let too_long = JobSpec {
        rounds: 5,
        ..output_job(projection())
    };
    let (_, error) = api_error(owner.submit_job(&too_long).await.unwrap_err());
    assert!(
        error.message.contains("at most 4 rounds"),
        "{}",
        error.message
    );
    // A training job has weights and no outputs; an output job the reverse.
    let (status, error) = api_error(owner.job_outputs(&trained).await.unwrap_err());
    assert_eq!((status, error.error.as_str()), (404, "no_outputs"));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheating_nodes_are_caught_and_the_outputs_stay_the_clean_runs() {
    let inference = output_job(WorkSpec::Inference { weights: None });
    let digits = Dataset::digits().unwrap();
    let parameters = corex_ml::init_parameters(&inference.model, inference.seed);
    let all: Vec<u32> = (0..DIGITS).collect();
    let clean = [
        (
            inference.clone(),
            corex_ml::predict(
                &corex_ml::Backend::cpu(),
                &inference.model,
                &parameters,
                &digits,
                &all,
            )
            .unwrap(),
        ),
        (output_job(projection()), transformed_digits(&projection())),
    ];
    let cheaters = [101u8, 102].map(|seed| Keypair::from_secret([seed; 32]).id());
    for (spec, expected) in clean {
        // A fresh network each time: cheaters are banned after 3 failed audits.
        // Every node proven first: a short job can end before a late cheater gets work.
        let cheating = [(101, Adversary::Random), (102, Adversary::Scaled)];
        let (net, owner) =
            common::start_with_cheaters(CoordinatorConfig::one_machine(), 3, &cheating).await;
        let job = owner.submit_job(&spec).await.unwrap();
        let status = wait_for_end(&owner, &job, Duration::from_secs(180)).await;
        assert_eq!(status.state, JobState::Finished);
        let outputs = owner.job_outputs(&job).await.unwrap();
        let rows = bytes_to_f32s(&owner.fetch_blob(&outputs.values).await.unwrap()).unwrap();
        assert_eq!(
            bits(&rows),
            bits(&expected),
            "{:?}: the clean outputs",
            spec.work
        );
        let report = owner.job_report(&job).await.unwrap();
        net.shutdown().await;
        let rejected = |node: &corex_core::NodeId| status.nodes.get(node).map_or(0, |c| c.rejected);
        let honest_rejects: u64 = status
            .nodes
            .keys()
            .filter(|node| !cheaters.contains(node))
            .map(rejected)
            .sum();
        let flagged = report
            .rounds
            .iter()
            .flat_map(|round| &round.results)
            .filter(|result| {
                matches!(
                    &result.verdict,
                    corex_core::messages::ResultVerdict::Accepted { flag: Some(_), .. }
                )
            })
            .count();
        println!(
            "{:?}: cheating results rejected {:?}, honest rejects {honest_rejects}, flags {flagged}",
            spec.work,
            cheaters.map(|cheater| rejected(&cheater))
        );
        for cheater in &cheaters {
            assert!(
                rejected(cheater) >= 1,
                "{:?}: a cheater was not caught",
                spec.work
            );
        }
        assert_eq!(honest_rejects, 0);
        assert_eq!(
            flagged, 0,
            "outputs are not screened by gradient statistics"
        );
    }
}

/// A result for `fragment` signed by `key`, framed.
fn result_body(key: &Keypair, fragment: &corex_core::Fragment, values: &[f32]) -> Vec<u8> {
    let tensor = f32s_to_bytes(values);
    let report = ResultReport {
        loss: 0.0,
        samples: fragment.indices.len() as u32,
        compute_ms: 1,
    };
    let header = ResultHeader::signed(key, fragment.id, fragment.model, Hash::of(&tensor), report);
    encode_result(&header, tensor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_results_of_the_wrong_length_or_with_nan_are_refused() {
    let net = TestNet::start(CoordinatorConfig::one_machine()).await;
    let owner = net.client(250);
    let spec = output_job(projection());
    let job = owner.submit_job(&spec).await.unwrap();
    let (key, node) = common::hand_driven_node(&net, 1).await;
    let LeaseResponse::Work { fragment, .. } = node.lease(0).await.unwrap() else {
        panic!("a fresh job has work");
    };
    let digits = Dataset::digits().unwrap();
    let honest = corex_ml::run_fragment(
        &corex_ml::Backend::cpu(),
        &spec.work,
        &spec.model,
        &[],
        &digits,
        &fragment.indices,
    )
    .unwrap();
    assert_eq!(honest.values.len(), fragment.indices.len() * 12);
    let refused = |body: Vec<u8>| {
        let node = &node;
        async move { api_error(node.call("POST", "/v1/results", body).await.unwrap_err()) }
    };
    let gradient_sized = vec![0.5; spec.model.parameter_count()];
    let one_more = [honest.values.as_slice(), &[1.0]].concat();
    let wrongs: [&[f32]; 3] = [&honest.values[1..], &one_more, &gradient_sized];
    for wrong in wrongs {
        let (status, error) = refused(result_body(&key, &fragment, wrong)).await;
        assert_eq!((status, error.error.as_str()), (422, "wrong_shape"));
        assert!(error.message.contains("need 768"), "{}", error.message);
    }
    let mut poisoned = honest.values.clone();
    poisoned[30] = f32::NAN;
    let (status, error) = refused(result_body(&key, &fragment, &poisoned)).await;
    assert_eq!((status, error.error.as_str()), (422, "non_finite"));
    assert!(error.message.contains("index 30"), "{}", error.message);
    // Nothing changed: the honest result is still taken.
    node.call(
        "POST",
        "/v1/results",
        result_body(&key, &fragment, &honest.values),
    )
    .await
    .unwrap();
    let (status, error) = api_error(owner.job_outputs(&job).await.unwrap_err());
    assert_eq!((status, error.error.as_str()), (409, "job_not_finished"));
    let (status, error) = api_error(owner.download_weights(&job).await.unwrap_err());
    assert_eq!((status, error.error.as_str()), (404, "no_weights"));
    net.shutdown().await;
}
