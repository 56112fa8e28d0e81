//! Training through the network (gradient fragments, mean aggregation, real TLS sockets)
//! ends where single-process training on the same batches and seed ends.

use crate::common;

use std::time::Duration;

use common::{TestNet, adam, relative_l2, single_process_training, small_job, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::JobState;
use corex_core::{JobSpec, OptimizerSpec};
use corex_ml::Dataset;

async fn network_matches_single_process(spec: JobSpec) {
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    for seed in 1..=3 {
        net.spawn_node(seed);
    }
    let owner = net.client(100);
    let job = owner.submit_job(&spec).await.unwrap();
    let status = wait_for_end(&owner, &job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    let (model, trained) =
        corex_ml::from_safetensors(&owner.download_weights(&job).await.unwrap()).unwrap();
    assert_eq!(model, spec.model);
    net.shutdown().await;

    let (initial, reference) = single_process_training(&spec, &Dataset::digits().unwrap());
    let error = relative_l2(&trained, &reference);
    println!("relative L2 between network and single-process training: {error:.3e}");
    assert!(
        error < 1e-4,
        "network training drifted from single-process training: {error:.3e}"
    );
    assert!(
        relative_l2(&initial, &reference) > 1e-2,
        "training must have moved the weights"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adam_through_the_network_equals_single_process() {
    network_matches_single_process(small_job(adam())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sgd_momentum_through_the_network_equals_single_process() {
    network_matches_single_process(small_job(OptimizerSpec::Sgd {
        learning_rate: 0.1,
        momentum: 0.9,
    }))
    .await;
}

/// DiLoCo's outer optimizer: Nesterov momentum on the coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesterov_through_the_network_equals_single_process() {
    network_matches_single_process(small_job(OptimizerSpec::Nesterov {
        learning_rate: 0.1,
        momentum: 0.9,
    }))
    .await;
}
