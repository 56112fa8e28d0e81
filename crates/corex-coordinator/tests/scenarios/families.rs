//! The new model families through the running coordinator (real TLS sockets, nodes fetching
//! the uploaded dataset as a blob): a byte-level transformer and a CNN trained with gradient
//! fragments and mean aggregation end where single-process training on the same batches and
//! seed ends; and CSV features spanning many orders of magnitude, standardized on the training
//! split, train as well as the same data standardized beforehand.

use crate::common;

use std::time::Duration;

use common::{TestNet, adam, relative_l2, single_process_training, small_job, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::JobState;
use corex_core::{
    CnnSpec, DatasetSource, DatasetSpec, FeatureScaling, JobSpec, ModelSpec, TransformerSpec,
};
use corex_ml::Dataset;

/// A small job of `model` on an uploaded dataset (the source is filled in after the upload).
fn job_of(model: ModelSpec, rounds: u32, global_batch: u32, fragment_samples: u32) -> JobSpec {
    JobSpec {
        name: format!("small-{}", model.family()),
        model,
        rounds,
        global_batch,
        fragment_samples,
        eval_every: rounds,
        ..small_job(adam())
    }
}

/// Uploads `data`, runs `spec` on it on three nodes and returns the trained weights and the
/// final status.
async fn train_through_the_network(
    mut spec: JobSpec,
    data: &Dataset,
) -> (Vec<f32>, corex_core::messages::JobStatus) {
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    for seed in 1..=3 {
        net.spawn_node(seed);
    }
    let owner = net.client(100);
    let uploaded = owner.upload_dataset(&data.to_bytes()).await.unwrap();
    spec.dataset.source = DatasetSource::Uploaded {
        dataset: uploaded.dataset,
    };
    let job = owner.submit_job(&spec).await.unwrap();
    let status = wait_for_end(&owner, &job, Duration::from_secs(240)).await;
    assert_eq!(status.state, JobState::Finished, "{status:?}");
    let (model, trained) =
        corex_ml::from_safetensors(&owner.download_weights(&job).await.unwrap()).unwrap();
    assert_eq!(model, spec.model);
    net.shutdown().await;
    (trained, status)
}

/// Trains `spec` through the network and in one process; asserts the final weights are within
/// `bound` relative L2.
async fn network_matches_single_process(spec: JobSpec, data: Dataset, bound: f64) {
    let (trained, _) = train_through_the_network(spec.clone(), &data).await;
    let (initial, reference) = single_process_training(&spec, &data);
    let error = relative_l2(&trained, &reference);
    println!(
        "{}: relative L2 between network and single-process training: {error:.3e}",
        spec.model.family()
    );
    assert!(error < bound, "network training drifted: {error:.3e}");
    assert!(
        relative_l2(&initial, &reference) > 1e-2,
        "training must have moved the weights"
    );
}

fn small_language_model_job(optimizer: corex_core::OptimizerSpec) -> JobSpec {
    let model = ModelSpec::Transformer(TransformerSpec {
        layers: 2,
        width: 32,
        heads: 4,
        context: 16,
        ff: None,
    });
    JobSpec {
        dataset: DatasetSpec {
            test_fraction: 0.1,
            ..small_job(adam()).dataset
        },
        optimizer,
        ..job_of(model, 10, 48, 16)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transformer_through_the_network_equals_single_process() {
    let sgd = corex_core::OptimizerSpec::Sgd {
        learning_rate: 0.1,
        momentum: 0.9,
    };
    let text = Dataset::synthetic_text(30_000, 3).unwrap();
    network_matches_single_process(small_language_model_job(sgd), text, 1e-4).await;
}

/// Under Adam the fragments' mean gradient still equals the whole batch's to ~2e-7 relative L2
/// (tests/ml/families.rs), but Adam divides by `√v + ε` with ε = 1e-8: a parameter whose
/// gradient is at rounding level (a byte the batch barely touches) moves by up to the full
/// learning rate on rounding noise alone, so ten steps spread a 1e-7 difference to ~3e-4
/// (1e-6 ε: ~4e-6; SGD: ~6e-8). The network is exact; Adam's ε is what amplifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transformer_under_adam_through_the_network_tracks_single_process() {
    let text = Dataset::synthetic_text(30_000, 3).unwrap();
    network_matches_single_process(small_language_model_job(adam()), text, 1e-3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cnn_through_the_network_equals_single_process() {
    let model = ModelSpec::Cnn(CnnSpec {
        channels: 1,
        height: 12,
        width: 12,
        conv: vec![6, 8],
        kernel: 3,
        hidden: vec![16],
        classes: 3,
    });
    let spec = job_of(model, 10, 96, 32);
    let images = Dataset::synthetic_images(600, 12, 4).unwrap();
    network_matches_single_process(spec, images, 1e-4).await;
}

/// Two overlapping classes that only the tiny features (around 10⁻³) separate, beside features
/// around 10³ and 10⁶ that are noise: unscaled, the large features drown the signal.
fn wide_range_csv(rows: usize) -> (String, String) {
    // A 64-bit LCG (Knuth's MMIX constants): reproducible noise without a dependency.
    let mut state = 17u64;
    let mut uniform = |low: f64, high: f64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        low + (high - low) * ((state >> 11) as f64 / (1u64 << 53) as f64)
    };
    let mut raw = String::from("tiny_a,tiny_b,big,huge,label\n");
    let mut values = Vec::new();
    for _ in 0..rows {
        let label = u32::from(uniform(0.0, 1.0) < 0.5);
        let sign = if label == 1 { 1.0 } else { -1.0 };
        let row = [
            sign * 1e-3 + uniform(-2e-3, 2e-3),
            -sign * 2e-3 + uniform(-4e-3, 4e-3),
            1e3 + uniform(-300.0, 300.0),
            1e6 + uniform(-4e5, 4e5),
        ];
        raw.push_str(&format!(
            "{},{},{},{},{label}\n",
            row[0], row[1], row[2], row[3]
        ));
        values.push((row, label));
    }
    // Standardized beforehand, by hand, over every row.
    let n = rows as f64;
    let mean: Vec<f64> = (0..4)
        .map(|j| values.iter().map(|(r, _)| r[j]).sum::<f64>() / n)
        .collect();
    let scale: Vec<f64> = (0..4)
        .map(|j| {
            (values
                .iter()
                .map(|(r, _)| (r[j] - mean[j]).powi(2))
                .sum::<f64>()
                / n)
                .sqrt()
        })
        .collect();
    let mut scaled = String::from("tiny_a,tiny_b,big,huge,label\n");
    for (row, label) in &values {
        let z: Vec<String> = (0..4)
            .map(|j| format!("{}", (row[j] - mean[j]) / scale[j]))
            .collect();
        scaled.push_str(&format!("{},{label}\n", z.join(",")));
    }
    (raw, scaled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_features_across_nine_orders_of_magnitude_train_like_standardized_ones() {
    let (raw, scaled) = wide_range_csv(3000);
    let raw = Dataset::from_csv_reader(raw.as_bytes(), None, "raw").unwrap();
    let scaled = Dataset::from_csv_reader(scaled.as_bytes(), None, "scaled").unwrap();
    let spec = |scaling| JobSpec {
        dataset: DatasetSpec {
            scaling,
            ..small_job(adam()).dataset
        },
        ..job_of(ModelSpec::mlp(4, vec![16], 2), 40, 200, 50)
    };
    let accuracy = |status: corex_core::messages::JobStatus| status.last_test_accuracy.unwrap();
    let (_, automatic) = train_through_the_network(spec(FeatureScaling::Auto), &raw).await;
    let (_, by_hand) = train_through_the_network(spec(FeatureScaling::None), &scaled).await;
    let (_, unscaled) = train_through_the_network(spec(FeatureScaling::None), &raw).await;
    let (automatic, by_hand, unscaled) =
        (accuracy(automatic), accuracy(by_hand), accuracy(unscaled));
    println!(
        "accuracy: standardized by Corex {:.2}%, standardized beforehand {:.2}%, unscaled {:.2}%",
        automatic * 100.0,
        by_hand * 100.0,
        unscaled * 100.0
    );
    assert!(by_hand > 0.75, "the task is learnable: {by_hand}");
    assert!(
        (automatic - by_hand).abs() <= 0.01,
        "Corex's standardization {automatic} is more than 1 point from by-hand {by_hand}"
    );
    assert!(
        unscaled < by_hand - 0.1,
        "unscaled features should train worse: {unscaled}"
    );
}

/// The statistics a model was trained with travel in its weights and scale the data of an
/// inference job that runs it: predictions on rows of one class alone (whose own statistics
/// would centre them on that class) stay as accurate as on the training job's held-out split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inference_job_scales_its_data_with_the_training_statistics() {
    use corex_core::WorkSpec;
    use corex_core::chunk::{CHUNK_SIZE, Manifest};
    let (raw, _) = wide_range_csv(3000);
    let raw = Dataset::from_csv_reader(raw.as_bytes(), None, "raw").unwrap();
    let ones: Vec<u32> = (0..raw.len() as u32)
        .filter(|&index| raw.label_of(index as usize) == Some(1))
        .collect();
    let class_one = raw.subset(&ones).unwrap();

    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    for seed in 1..=2 {
        net.spawn_node(seed);
    }
    let owner = net.client(100);
    let upload = |data: &Dataset| data.to_bytes();
    let raw_hash = owner.upload_dataset(&upload(&raw)).await.unwrap().dataset;
    let ones_hash = owner
        .upload_dataset(&upload(&class_one))
        .await
        .unwrap()
        .dataset;
    let training = JobSpec {
        dataset: DatasetSpec {
            source: DatasetSource::Uploaded { dataset: raw_hash },
            ..small_job(adam()).dataset
        },
        ..job_of(ModelSpec::mlp(4, vec![16], 2), 40, 200, 50)
    };
    let trained = owner.submit_job(&training).await.unwrap();
    let status = wait_for_end(&owner, &trained, Duration::from_secs(120)).await;
    let held_out = status.last_test_accuracy.unwrap();
    let report = owner.job_report(&trained).await.unwrap();
    let safetensors = owner.download_weights(&trained).await.unwrap();
    let statistics = corex_ml::standardization_of(&safetensors).unwrap();
    assert!(statistics.is_some());
    assert_eq!(
        statistics, report.standardization,
        "the report keeps them too"
    );

    let inference = JobSpec {
        name: "predict-class-one".into(),
        dataset: DatasetSpec {
            source: DatasetSource::Uploaded { dataset: ones_hash },
            ..training.dataset.clone()
        },
        work: WorkSpec::Inference {
            weights: Some(Manifest::of(&safetensors, CHUNK_SIZE).hash),
        },
        rounds: 1,
        global_batch: class_one.len() as u32,
        fragment_samples: 256,
        eval_every: 1,
        ..training.clone()
    };
    let predicted = owner.submit_job(&inference).await.unwrap();
    let status = wait_for_end(&owner, &predicted, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    let outputs = owner.job_outputs(&predicted).await.unwrap();
    let accuracy = outputs.prediction_accuracy.unwrap();
    println!(
        "class-one rows predicted with the training statistics: {:.2}% (held-out accuracy {:.2}%)",
        accuracy * 100.0,
        held_out * 100.0
    );
    assert!(accuracy > held_out - 0.1, "{accuracy} against {held_out}");
    net.shutdown().await;
}
