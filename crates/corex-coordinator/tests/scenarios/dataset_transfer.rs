//! A dataset the nodes do not hold travels to them as a content-addressed blob: the owner
//! uploads it in hash-checked chunks (or the job names a CSV in the operator's directory), the
//! coordinator publishes it at submission under the job's dataset hash (its manifest root),
//! and each node fetches only the chunks its fragments touch, checks each, and keeps them on
//! disk by hash for later jobs. Nobody reads a path a job names.

use crate::common;

use std::time::Duration;

use common::{TestNet, adam, small_job, wait_for_end, wait_for_proven_nodes};
use corex_coordinator::CoordinatorConfig;
use corex_core::chunk::DATASET_CHUNK_SIZE;
use corex_core::messages::JobState;
use corex_core::{DatasetSource, DatasetSpec, JobSpec, Keypair, ModelSpec};
use corex_ml::Dataset;
use corex_net::CoordinatorClient;
use corex_node::NodeConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_train_on_a_csv_they_never_had() {
    let digits = Dataset::digits().unwrap();
    let datasets = tempfile::tempdir().unwrap();
    std::fs::write(datasets.path().join("digits.csv"), digits.to_csv()).unwrap();
    let with_source = |source| JobSpec {
        dataset: DatasetSpec {
            source,
            test_fraction: 0.2,
            split_seed: 3,
            // The same features whatever the source: the CSV copies are not standardized.
            scaling: corex_core::FeatureScaling::None,
        },
        ..small_job(adam())
    };
    let config = CoordinatorConfig {
        datasets_dir: Some(datasets.path().to_owned()),
        ..CoordinatorConfig::one_machine()
    };
    let mut net = TestNet::start(config).await;
    let owner = net.client(100);
    let uploaded = owner.upload_dataset(&digits.to_bytes()).await.unwrap();
    assert_eq!(uploaded.samples, digits.len() as u64);
    let spec = with_source(DatasetSource::Uploaded {
        dataset: uploaded.dataset,
    });
    // Both nodes ready before the job comes, so that both work on it.
    net.spawn_node(1);
    net.spawn_node(2);
    wait_for_proven_nodes(&owner, 2, Duration::from_secs(60)).await;
    let job = owner.submit_job(&spec).await.unwrap();
    let descriptor = owner.job(&job).await.unwrap();
    let blob = descriptor.dataset_blob.expect("the dataset is published");
    assert_eq!(blob, descriptor.dataset_hash, "the job names its blob");
    let fetched = Dataset::from_bytes(&owner.fetch_blob(&blob).await.unwrap()).unwrap();
    assert_eq!(fetched, digits);

    let status = wait_for_end(&owner, &job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    assert_eq!(
        status.nodes.len(),
        2,
        "both nodes fetched the data and worked"
    );

    // The same job on the built-in copy of the same data, and on the CSV the operator
    // serves by name, ends with the same model.
    let built_in = owner.submit_job(&small_job(adam())).await.unwrap();
    let reference = wait_for_end(&owner, &built_in, Duration::from_secs(120)).await;
    let named = with_source(DatasetSource::Named {
        name: "digits.csv".into(),
        label_column: None,
    });
    let named = owner.submit_job(&named).await.unwrap();
    let from_csv = wait_for_end(&owner, &named, Duration::from_secs(120)).await;
    net.shutdown().await;
    assert_eq!(status.model, reference.model);
    assert_eq!(from_csv.model, reference.model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_fetches_only_the_chunks_its_fragments_touch_and_keeps_them() {
    // 4,000 images of 28 x 28: a 3.1 MB blob of 48 chunks; one round of 16 images touches
    // at most 16 of them, plus the header's.
    let images = Dataset::synthetic_images(4_000, 28, 5).unwrap();
    let encoded = images.to_bytes();
    let chunks = encoded.len().div_ceil(DATASET_CHUNK_SIZE) as u64;
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    let owner = net.client(100);
    let uploaded = owner.upload_dataset(&encoded).await.unwrap();
    let job = |name: &str| JobSpec {
        name: name.into(),
        model: ModelSpec::mlp(784, vec![16], images.class_count()),
        dataset: DatasetSpec {
            source: DatasetSource::Uploaded {
                dataset: uploaded.dataset,
            },
            test_fraction: 0.1,
            split_seed: 3,
            scaling: corex_core::FeatureScaling::None,
        },
        rounds: 1,
        global_batch: 16,
        fragment_samples: 16,
        ..small_job(adam())
    };
    let cache = tempfile::tempdir().unwrap();
    let spawn_cached = |net: &mut TestNet, seed: u8| {
        let key = Keypair::from_secret([seed; 32]);
        let client = CoordinatorClient::new(&net.url, &net.pin, key.clone())
            .unwrap()
            .with_chunk_cache(cache.path().to_owned());
        net.spawn_node_via(key, client, NodeConfig::default());
    };

    spawn_cached(&mut net, 1);
    let first = owner.submit_job(&job("first")).await.unwrap();
    let status = wait_for_end(&owner, &first, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    let [first_run] = net.stop_nodes().await[..] else {
        panic!("one node ran")
    };
    let traffic = first_run.dataset_traffic;
    assert_eq!(status.nodes.len(), 1, "the node computed the round");
    assert!(
        (2..=17).contains(&traffic.network_chunks) && traffic.network_chunks < chunks,
        "{traffic:?} of {chunks} chunks"
    );
    assert!(traffic.network_bytes <= traffic.network_chunks * DATASET_CHUNK_SIZE as u64);
    assert_eq!(traffic.cached_chunks, 0);
    let blob = owner.job(&first).await.unwrap().dataset_hash;
    let kept = std::fs::read_dir(cache.path().join(blob.to_hex()))
        .unwrap()
        .count() as u64;
    assert_eq!(
        kept, traffic.network_chunks,
        "every fetched chunk is kept by hash"
    );

    // Another node on the same disk, a job drawing the same samples: nothing crosses the
    // network again, and the model is the same.
    spawn_cached(&mut net, 2);
    let second = owner.submit_job(&job("second")).await.unwrap();
    let again = wait_for_end(&owner, &second, Duration::from_secs(120)).await;
    assert_eq!(again.state, JobState::Finished);
    let [second_run] = net.stop_nodes().await[..] else {
        panic!("one node ran")
    };
    assert_eq!(second_run.dataset_traffic.network_chunks, 0);
    assert_eq!(
        second_run.dataset_traffic.cached_chunks,
        traffic.network_chunks
    );
    assert_eq!(again.model, status.model);
    net.shutdown().await;
}
