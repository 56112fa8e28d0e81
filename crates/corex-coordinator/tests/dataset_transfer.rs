//! A dataset the nodes do not hold travels to them as a content-addressed blob: the
//! coordinator publishes it at submission, nodes fetch it in hash-checked chunks, check its
//! content hash, and never read the path the job names.

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
    let csv_dir = tempfile::tempdir().unwrap();
    let path = csv_dir.path().join("digits.csv");
    std::fs::write(&path, digits.to_csv()).unwrap();
    let spec = JobSpec {
        dataset: DatasetSpec {
            source: DatasetSource::Csv {
                path: path.display().to_string(),
                label_column: None,
            },
            test_fraction: 0.2,
            split_seed: 3,
        },
        ..small_job(adam())
    };

    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    let owner = net.client(100);
    let job = owner.submit_job(&spec).await.unwrap();
    // The coordinator has read the file; from now on nobody can.
    drop(csv_dir);
    assert!(!path.exists());
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

    // The same job on the built-in copy of the same data ends with the same model.
    let built_in = owner.submit_job(&small_job(adam())).await.unwrap();
    let reference = wait_for_end(&owner, &built_in, Duration::from_secs(120)).await;
    net.shutdown().await;
    assert_eq!(status.model, reference.model);
}
