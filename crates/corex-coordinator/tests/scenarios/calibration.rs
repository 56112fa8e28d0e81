//! Calibration of the replay tolerance, and the promise that honest work is never rejected:
//! for each model family (50 seeded MLP jobs on the digits, 20 CNN jobs on generated images,
//! 20 byte-level transformer jobs on generated text), every fragment's result is computed with
//! 1, 2 and 4 compute threads (node and auditor on different thread counts) and compared, and
//! each round is judged by the real `Verifier`. Prints the largest difference seen per family
//! (the figures in docs/verification.md) and counts hard rejects of honest work: there must be
//! none.
//!
//! Across devices (builds with the wgpu backend; Mesa's lavapipe where no GPU is): the same per
//! family, half the nodes computing on wgpu and half on the CPU, each auditor node on the
//! other backend and the coordinator on the CPU, gradients and pseudo-gradients measured apart;
//! and every honest result, off by a relative 10⁻³ in a seeded random direction or scaled by
//! 1 + 10⁻³, must fail the tolerance of its device pair.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{adam, small_job};
use corex_coordinator::verification::{
    CHAIN_LENGTH, Candidate, NodeReplay, Replay, ResultKind, Screen, Verifier,
};
use corex_core::messages::ResultVerdict;
use corex_core::{CnnSpec, ComputeBackend, Hash, JobSpec, ModelSpec, TransformerSpec, WorkSpec};
use corex_ml::{Backend, Dataset, Trainer};
use corex_scheduler::slice_round;
use corex_verify::{AuditPolicy, Tolerance, compare};
use rand::{Rng, SeedableRng};

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// The job of seed `seed` for a family: `model`, fragments of 16 to 64 samples, and every
/// fifth run with local-steps fragments (4 inner SGD steps).
fn seeded_job(seed: u64, model: ModelSpec, global_batch: u32) -> JobSpec {
    JobSpec {
        seed,
        model,
        global_batch,
        fragment_samples: (16 + (seed as u32 % 4) * 16).min(global_batch / 2),
        work: if seed % 5 == 4 {
            WorkSpec::LocalSteps {
                steps: 4,
                inner: corex_core::OptimizerSpec::Sgd {
                    learning_rate: 0.05,
                    momentum: 0.0,
                },
            }
        } else {
            WorkSpec::Gradient
        },
        ..small_job(adam())
    }
}

fn mlp_job(seed: u64) -> JobSpec {
    let hidden = 64 + (seed as usize % 3) * 32;
    seeded_job(seed, ModelSpec::mlp(64, vec![hidden], 10), 200)
}

fn cnn_job(seed: u64) -> JobSpec {
    let model = ModelSpec::Cnn(CnnSpec {
        channels: 1,
        height: 12,
        width: 12,
        conv: vec![4 + (seed as usize % 3) * 2, 8],
        kernel: 3,
        hidden: vec![16],
        classes: 3,
    });
    seeded_job(seed, model, 128)
}

fn transformer_job(seed: u64) -> JobSpec {
    let model = ModelSpec::Transformer(TransformerSpec {
        layers: 1 + (seed as usize % 2),
        width: 32,
        heads: 4,
        context: 16 + (seed as usize % 3) * 8,
        ff: None,
    });
    seeded_job(seed, model, 96)
}

#[test]
fn honest_mlp_work_is_never_rejected_across_50_seeded_runs() {
    let dataset = Arc::new(Dataset::digits().unwrap());
    calibrate("mlp", &dataset, 50, mlp_job, None);
}

#[test]
fn honest_cnn_work_is_never_rejected_across_20_seeded_runs() {
    let dataset = Arc::new(Dataset::synthetic_images(400, 12, 5).unwrap());
    calibrate("cnn", &dataset, 20, cnn_job, None);
}

#[test]
fn honest_transformer_work_is_never_rejected_across_20_seeded_runs() {
    let dataset = Arc::new(Dataset::synthetic_text(20_000, 5).unwrap());
    calibrate("transformer", &dataset, 20, transformer_job, None);
}

/// The wgpu backend, where this build has it (a build without it has nothing to calibrate
/// across devices, and says so); a build with it must find an adapter.
fn wgpu() -> Option<Backend> {
    if !Backend::built().contains(&ComputeBackend::Wgpu) {
        println!("SKIPPED: this build has no wgpu backend (corex-ml's `wgpu` feature)");
        return None;
    }
    Some(Backend::open(ComputeBackend::Wgpu).unwrap())
}

#[test]
fn honest_mlp_work_is_never_rejected_across_devices() {
    let Some(gpu) = wgpu() else { return };
    let dataset = Arc::new(Dataset::digits().unwrap());
    calibrate("mlp", &dataset, 10, mlp_job, Some(gpu));
}

#[test]
fn honest_cnn_work_is_never_rejected_across_devices() {
    let Some(gpu) = wgpu() else { return };
    let dataset = Arc::new(Dataset::synthetic_images(400, 12, 5).unwrap());
    calibrate("cnn", &dataset, 10, cnn_job, Some(gpu));
}

#[test]
fn honest_transformer_work_is_never_rejected_across_devices() {
    let Some(gpu) = wgpu() else { return };
    let dataset = Arc::new(Dataset::synthetic_text(20_000, 5).unwrap());
    calibrate("transformer", &dataset, 10, transformer_job, Some(gpu));
}

/// The largest honest difference seen for one kind of result, and the perturbed results the
/// tolerance caught.
#[derive(Default)]
struct Spread {
    compared: u64,
    worst_l2: f64,
    worst_cosine: f64,
    perturbed: u64,
    perturbed_caught: u64,
}

impl Spread {
    fn new() -> Self {
        Self {
            worst_cosine: 1.0,
            ..Self::default()
        }
    }

    /// Compares an honest result with its replay under `tolerance`, then two cheats made from
    /// the honest result: a random direction of relative norm 10⁻³, and a 1 + 10⁻³ scale.
    fn add(&mut self, submitted: &[f32], replay: &[f32], tolerance: &Tolerance, seed: u64) {
        let c = compare(submitted, replay, tolerance).unwrap();
        self.worst_l2 = self.worst_l2.max(c.relative_l2);
        self.worst_cosine = self.worst_cosine.min(c.cosine);
        self.compared += 1;
        let norm = submitted
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let noise: Vec<f64> = submitted
            .iter()
            .map(|_| rng.random::<f64>() - 0.5)
            .collect();
        let noise_norm = noise.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-30);
        let nudged: Vec<f32> = submitted
            .iter()
            .zip(&noise)
            .map(|(v, n)| (f64::from(*v) + 1e-3 * norm * n / noise_norm) as f32)
            .collect();
        let scaled: Vec<f32> = submitted.iter().map(|v| v * 1.001).collect();
        for cheat in [nudged, scaled] {
            self.perturbed += 1;
            if !compare(&cheat, replay, tolerance).unwrap().within {
                self.perturbed_caught += 1;
            }
        }
    }
}

/// Runs `runs` seeded jobs of `job(seed)` for 3 rounds each as described in the header; with
/// `gpu`, even fragments are computed on it and odd ones on the CPU, auditors on the other.
fn calibrate(
    family: &str,
    dataset: &Arc<Dataset>,
    runs: u64,
    job: impl Fn(u64) -> JobSpec,
    gpu: Option<Backend>,
) {
    let pools = [pool(1), pool(2), pool(4)];
    let tolerance = Tolerance::default();
    let cpu = Backend::cpu();
    let gpu_kind = gpu.as_ref().map_or(ComputeBackend::Cpu, Backend::kind);
    let on_gpu = |i: usize| gpu.is_some() && i.is_multiple_of(2);
    // (gradients, pseudo-gradients)
    let (mut gradients, mut pseudo) = (Spread::new(), Spread::new());
    let mut hard_rejects = 0u64;
    let started = std::time::Instant::now();
    for seed in 0..runs {
        let spec = job(seed);
        let split = dataset.split_for(
            &spec.model,
            spec.dataset.test_fraction,
            spec.dataset.split_seed,
        );
        let mut parameters = corex_ml::init_parameters(&spec.model, seed);
        let mut trainer = Trainer::new(&spec.model, &parameters, &spec.optimizer).unwrap();
        let mut verifier = Verifier::new([seed as u8; 32], CHAIN_LENGTH, AuditPolicy::default());
        let job = Hash::of(&seed.to_le_bytes());
        for round in 0..3 {
            let fragments = slice_round(&job, &spec, &split.train, round, Hash::of(b"model"), &[]);
            let output = |threads: usize, device: bool, indices: &[u32]| {
                let backend = match (&gpu, device) {
                    (Some(gpu), true) => gpu,
                    _ => &cpu,
                };
                pools[threads]
                    .install(|| {
                        corex_ml::run_fragment(
                            backend,
                            &spec.work,
                            &spec.model,
                            &parameters,
                            dataset,
                            indices,
                        )
                    })
                    .unwrap()
            };
            // The node computes on 2 or 4 threads (or its GPU), the coordinator replays on 1.
            let submitted: Vec<_> = fragments
                .iter()
                .enumerate()
                .map(|(i, f)| output(1 + i % 2, on_gpu(i), &f.indices))
                .collect();
            let replays: Vec<_> = fragments
                .iter()
                .map(|f| output(0, false, &f.indices))
                .collect();
            let node_of = |i: usize| corex_core::Keypair::from_secret([i as u8; 32]).id();
            let spread = match spec.work {
                WorkSpec::LocalSteps { .. } => &mut pseudo,
                _ => &mut gradients,
            };
            for (i, (s, r)) in submitted.iter().zip(&replays).enumerate() {
                spread.add(&s.values, &r.values, &tolerance, seed * 1000 + i as u64);
            }
            let candidates: Vec<Candidate<'_>> = submitted
                .iter()
                .zip(&fragments)
                .map(|(s, f)| Candidate {
                    node: node_of(f.index as usize),
                    fragment: f.id,
                    commitment: Hash::of_parts(&[&f.id.0, &round.to_le_bytes()]),
                    result_hash: Hash::of(
                        &s.values
                            .iter()
                            .flat_map(|v| v.to_le_bytes())
                            .collect::<Vec<u8>>(),
                    ),
                    gradient: &s.values,
                    loss: s.loss,
                    defect: None,
                    opened: None,
                })
                .collect();
            // Then the real verifier judges the round: its own audit draws and consistency
            // flags; odd fragments are replayed by an auditor node on 4 threads, the others by
            // the coordinator on 1.
            let plan = verifier
                .plan_round(&job, &candidates, ResultKind::Update, Screen::Consistency)
                .unwrap();
            // Odd fragments' auditor is on the GPU (their submitters are on the CPU).
            let auditor = corex_core::Keypair::from_secret([200; 32]).id();
            let node_replays: BTreeMap<usize, NodeReplay> = (0..fragments.len())
                .filter(|i| i % 2 == 1)
                .map(|i| {
                    let replay = output(2, gpu.is_some(), &fragments[i].indices);
                    let result_hash = Hash::of(&corex_core::tensor::f32s_to_bytes(&replay.values));
                    let replay = Replay {
                        gradient: replay.values,
                        loss: replay.loss,
                    };
                    (
                        i,
                        NodeReplay {
                            auditor,
                            result_hash,
                            replay,
                        },
                    )
                })
                .collect();
            let node_replays: BTreeMap<usize, &NodeReplay> = node_replays
                .iter()
                .map(|(index, replay)| (*index, replay))
                .collect();
            let judgement = verifier
                .comparator()
                .judge(
                    &candidates,
                    &plan,
                    &node_replays,
                    &Default::default(),
                    |i| {
                        Ok(Replay {
                            gradient: replays[i].values.clone(),
                            loss: replays[i].loss,
                        })
                    },
                )
                .unwrap();
            verifier.apply(&judgement.records);
            hard_rejects += judgement
                .results
                .iter()
                .map(|j| &j.verdict)
                .chain(judgement.audits.iter().map(|(_, verdict)| verdict))
                .filter(|verdict| matches!(verdict, ResultVerdict::Rejected { .. }))
                .count() as u64;
            let parts: Vec<(&[f32], u32)> = submitted
                .iter()
                .zip(&fragments)
                .map(|(s, f)| (s.values.as_slice(), f.indices.len() as u32))
                .collect();
            trainer
                .step(&corex_ml::weighted_mean(&parts).unwrap())
                .unwrap();
            parameters = trainer.parameters();
        }
    }
    let devices = match gpu.as_ref().and_then(Backend::adapter) {
        Some(adapter) => format!("{gpu_kind} ({}) against the CPU", adapter.describe()),
        None => "the CPU at 1/2/4 threads".into(),
    };
    for (kind, spread) in [("gradients", &gradients), ("pseudo-gradients", &pseudo)] {
        if spread.compared == 0 {
            continue;
        }
        println!(
            "calibration ({family}, {kind}, {devices}): {} honest replays over {runs} seeds: worst relative L2 {:.3e}, worst cosine {:.9}; tolerance {:.0e} ({}) / {}; results off by a relative 1e-3 caught: {} of {}",
            spread.compared,
            spread.worst_l2,
            spread.worst_cosine,
            tolerance.max_relative_l2,
            match spread.worst_l2 {
                0.0 => "honest results bit-identical".to_owned(),
                worst => format!(
                    "{:.0}× the honest spread",
                    tolerance.max_relative_l2 / worst
                ),
            },
            tolerance.min_cosine,
            spread.perturbed_caught,
            spread.perturbed
        );
        assert!(spread.worst_l2 <= tolerance.max_relative_l2);
        assert!(spread.worst_cosine >= tolerance.min_cosine);
        assert_eq!(spread.perturbed_caught, spread.perturbed);
    }
    println!(
        "calibration ({family}, {devices}): hard rejects of honest work: {hard_rejects}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(hard_rejects, 0);
}
