//! CPU and GPU nodes on one job: two nodes compute on the wgpu backend (Mesa's lavapipe on a
//! machine without a GPU) and two on the CPU, through the running coordinator, over 20 seeded
//! runs cycling through the three families (an MLP on the digits, a byte-level transformer on
//! generated text, a CNN on generated images), gradient and local-steps fragments. Every result
//! must be accepted (no honest node rejected), every node audit replayed by a node on the other
//! backend must agree, and the trained weights must end where single-process training on the
//! CPU ends (SGD with momentum, so that rounding is not amplified: see tests/scenarios/families.rs).
//!
//! A build without the wgpu backend has nothing to mix and says so.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    TestNet, relative_l2, single_process_training, small_job, wait_for_end, wait_for_proven_nodes,
};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::{JobState, ResultVerdict};
use corex_core::{
    CnnSpec, ComputeBackend, DatasetSource, DatasetSpec, JobSpec, ModelSpec, NodeId, OptimizerSpec,
    TransformerSpec, WorkSpec,
};
use corex_ml::{Backend, Dataset};
use corex_node::NodeConfig;

const RUNS: u64 = 20;

/// The job of seed `seed` and the data it trains on (`None`: the built-in digits).
fn seeded_job(seed: u64) -> (JobSpec, Option<Dataset>) {
    let sgd = OptimizerSpec::Sgd {
        learning_rate: 0.1,
        momentum: 0.9,
    };
    let base = JobSpec {
        name: format!("mixed-{seed}"),
        seed,
        rounds: 6,
        eval_every: 6,
        optimizer: sgd.clone(),
        dataset: DatasetSpec {
            test_fraction: 0.1,
            ..small_job(sgd.clone()).dataset
        },
        ..small_job(sgd)
    };
    let (spec, data) = match seed % 3 {
        0 => (
            JobSpec {
                model: ModelSpec::mlp(64, vec![32 + 16 * (seed as usize % 2)], 10),
                global_batch: 128,
                fragment_samples: 32,
                ..base
            },
            None,
        ),
        1 => (
            JobSpec {
                model: ModelSpec::Transformer(TransformerSpec {
                    layers: 1 + (seed as usize % 2),
                    width: 32,
                    heads: 4,
                    context: 16,
                    ff: None,
                }),
                global_batch: 64,
                fragment_samples: 16,
                ..base
            },
            Some(Dataset::synthetic_text(20_000, seed).unwrap()),
        ),
        _ => (
            JobSpec {
                model: ModelSpec::Cnn(CnnSpec {
                    channels: 1,
                    height: 12,
                    width: 12,
                    conv: vec![6, 8],
                    kernel: 3,
                    hidden: vec![16],
                    classes: 3,
                }),
                global_batch: 96,
                fragment_samples: 32,
                ..base
            },
            Some(Dataset::synthetic_images(600, 12, seed).unwrap()),
        ),
    };
    let spec = if seed % 4 == 3 {
        JobSpec {
            work: WorkSpec::LocalSteps {
                steps: 4,
                inner: OptimizerSpec::Sgd {
                    learning_rate: 0.05,
                    momentum: 0.0,
                },
            },
            optimizer: OptimizerSpec::Sgd {
                learning_rate: 1.0,
                momentum: 0.0,
            },
            ..spec
        }
    } else {
        spec
    };
    (spec, data)
}

/// What one run showed.
#[derive(Default)]
struct Tally {
    results: u64,
    by_backend: BTreeMap<ComputeBackend, u64>,
    audited: u64,
    node_audits_across_backends: u64,
    worst_drift: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_and_wgpu_nodes_train_together_and_no_honest_node_is_rejected() {
    if !Backend::built().contains(&ComputeBackend::Wgpu) {
        println!("SKIPPED: this build has no wgpu backend (corex-ml's `wgpu` feature)");
        return;
    }
    let gpu = Backend::open(ComputeBackend::Wgpu).unwrap();
    println!(
        "wgpu adapter: {}",
        gpu.adapter()
            .map_or("none".into(), |adapter| adapter.describe())
    );
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    for seed in 0..RUNS {
        run(seed, &gpu, &mut tally).await;
    }
    println!(
        "{RUNS} seeded runs in {:.0} s: {} results ({:?} by backend), {} audited, {} of them replayed by a node on the other backend; no result rejected; worst relative L2 to single-process CPU training {:.2e}",
        started.elapsed().as_secs_f64(),
        tally.results,
        tally.by_backend,
        tally.audited,
        tally.node_audits_across_backends,
        tally.worst_drift
    );
    assert!(
        tally
            .by_backend
            .get(&ComputeBackend::Wgpu)
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert!(
        tally
            .by_backend
            .get(&ComputeBackend::Cpu)
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert!(
        tally.node_audits_across_backends > 0,
        "no audit crossed backends"
    );
}

async fn run(seed: u64, gpu: &Backend, tally: &mut Tally) {
    let (mut spec, data) = seeded_job(seed);
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    let mut backends = BTreeMap::new();
    for node in 1..=4u8 {
        let backend = if node <= 2 {
            gpu.clone()
        } else {
            Backend::cpu()
        };
        backends.insert(net.client(node).id(), backend.kind());
        net.spawn_node_with(
            node,
            NodeConfig {
                backend,
                ..NodeConfig::default()
            },
        );
    }
    let owner = net.client(100);
    wait_for_proven_nodes(&owner, 4, Duration::from_secs(120)).await;
    let dataset = match &data {
        Some(data) => {
            let uploaded = owner.upload_dataset(&data.to_bytes()).await.unwrap();
            spec.dataset.source = DatasetSource::Uploaded {
                dataset: uploaded.dataset,
            };
            data.clone()
        }
        None => Dataset::digits().unwrap(),
    };
    let job = owner.submit_job(&spec).await.unwrap();
    let status = wait_for_end(&owner, &job, Duration::from_secs(300)).await;
    assert_eq!(status.state, JobState::Finished, "seed {seed}: {status:?}");
    let report = owner.job_report(&job).await.unwrap();
    let backend_of = |node: &NodeId| backends.get(node).copied();
    for round in &report.rounds {
        for result in &round.results {
            tally.results += 1;
            *tally
                .by_backend
                .entry(backend_of(&result.node).unwrap())
                .or_default() += 1;
            match &result.verdict {
                ResultVerdict::Accepted { audited, .. } => {
                    if *audited || result.audited_by.is_some() {
                        tally.audited += 1;
                    }
                    if let Some(auditor) = &result.audited_by
                        && backend_of(auditor) != backend_of(&result.node)
                    {
                        tally.node_audits_across_backends += 1;
                    }
                }
                ResultVerdict::Rejected { reason, .. }
                | ResultVerdict::Discarded { reason, .. } => {
                    panic!("seed {seed}: an honest result was rejected: {reason}")
                }
            }
        }
        for audit in &round.audits {
            assert!(
                matches!(audit.verdict, ResultVerdict::Accepted { .. }),
                "seed {seed}: an honest audit replay was rejected: {:?}",
                audit.verdict
            );
        }
    }
    let (_, trained) =
        corex_ml::from_safetensors(&owner.download_weights(&job).await.unwrap()).unwrap();
    net.shutdown().await;
    let family = spec.model.family();
    if let WorkSpec::LocalSteps { .. } = spec.work {
        // The reference would be the mean of the fragments' pseudo-gradients, which
        // single-process training does not compute: the verdicts above are the check, and the
        // weights must have moved.
        let initial = corex_ml::init_parameters(&spec.model, spec.seed);
        assert!(relative_l2(&initial, &trained) > 1e-3);
        println!("seed {seed} ({family}, local steps): finished, every result accepted");
        return;
    }
    let (_, reference) = single_process_training(&spec, &dataset);
    let drift = relative_l2(&trained, &reference);
    println!(
        "seed {seed} ({family}, gradients): finished, every result accepted; relative L2 to single-process CPU training {drift:.2e}"
    );
    assert!(
        drift < 1e-4,
        "seed {seed}: mixed backends drifted {drift:.2e}"
    );
    tally.worst_drift = tally.worst_drift.max(drift);
}
