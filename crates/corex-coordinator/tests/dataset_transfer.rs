//! A dataset the nodes do not hold travels to them as a content-addressed blob: the owner
//! uploads it in hash-checked chunks (or the job names a CSV in the operator's directory), the
//! coordinator publishes it at submission, nodes fetch it in hash-checked chunks and check its
//! content hash. Nobody reads a path a job names.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestNet, adam, small_job, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::JobState;
use corex_core::{DatasetSource, DatasetSpec, JobSpec};
use corex_ml::Dataset;

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
    let job = owner.submit_job(&spec).await.unwrap();
    let descriptor = owner.job(&job).await.unwrap();
    let blob = descriptor.dataset_blob.expect("the dataset is published");
    let fetched = Dataset::from_bytes(&owner.fetch_blob(&blob).await.unwrap()).unwrap();
    assert_eq!(fetched.content_hash(), descriptor.dataset_hash.0);

    net.spawn_node(1);
    net.spawn_node(2);
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
