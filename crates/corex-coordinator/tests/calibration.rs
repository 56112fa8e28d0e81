//! Calibration of the replay tolerance, and the promise that honest work is never rejected:
//! for each model family (50 seeded MLP jobs on the digits, 20 CNN jobs on generated images,
//! 20 byte-level transformer jobs on generated text), every fragment's result is computed with
//! 1, 2 and 4 compute threads (node and auditor on different thread counts) and compared, and
//! each round is judged by the real `Verifier`. Prints the largest difference seen per family
//! (the figures in docs/verification.md) and counts hard rejects of honest work: there must be
//! none.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{adam, small_job};
use corex_coordinator::verification::{
    CHAIN_LENGTH, Candidate, NodeReplay, Replay, ResultKind, Verifier,
};
use corex_core::messages::ResultVerdict;
use corex_core::{CnnSpec, Hash, JobSpec, ModelSpec, TransformerSpec, WorkSpec};
use corex_ml::{Dataset, Trainer};
use corex_scheduler::slice_round;
use corex_verify::{Tolerance, compare};

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

#[test]
fn honest_mlp_work_is_never_rejected_across_50_seeded_runs() {
    let dataset = Arc::new(Dataset::digits().unwrap());
    calibrate("mlp", &dataset, 50, |seed| {
        let hidden = 64 + (seed as usize % 3) * 32;
        seeded_job(seed, ModelSpec::mlp(64, vec![hidden], 10), 200)
    });
}

#[test]
fn honest_cnn_work_is_never_rejected_across_20_seeded_runs() {
    let dataset = Arc::new(Dataset::synthetic_images(400, 12, 5).unwrap());
    calibrate("cnn", &dataset, 20, |seed| {
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
    });
}

#[test]
fn honest_transformer_work_is_never_rejected_across_20_seeded_runs() {
    let dataset = Arc::new(Dataset::synthetic_text(20_000, 5).unwrap());
    calibrate("transformer", &dataset, 20, |seed| {
        let model = ModelSpec::Transformer(TransformerSpec {
            layers: 1 + (seed as usize % 2),
            width: 32,
            heads: 4,
            context: 16 + (seed as usize % 3) * 8,
            ff: None,
        });
        seeded_job(seed, model, 96)
    });
}

/// Runs `runs` seeded jobs of `job(seed)` for 3 rounds each as described in the header.
fn calibrate(family: &str, dataset: &Arc<Dataset>, runs: u64, job: impl Fn(u64) -> JobSpec) {
    let pools = [pool(1), pool(2), pool(4)];
    let tolerance = Tolerance::default();
    let (mut worst_l2, mut worst_cosine, mut compared, mut hard_rejects) =
        (0.0f64, 1.0f64, 0u64, 0u64);
    for seed in 0..runs {
        let spec = job(seed);
        let split = dataset.split_for(
            &spec.model,
            spec.dataset.test_fraction,
            spec.dataset.split_seed,
        );
        let mut parameters = corex_ml::init_parameters(&spec.model, seed);
        let mut trainer = Trainer::new(&spec.model, &parameters, &spec.optimizer).unwrap();
        let mut verifier = Verifier::new([seed as u8; 32], CHAIN_LENGTH);
        let job = Hash::of(&seed.to_le_bytes());
        for round in 0..3 {
            let fragments = slice_round(&job, &spec, &split.train, round, Hash::of(b"model"), &[]);
            let output = |threads: usize, indices: &[u32]| {
                pools[threads]
                    .install(|| {
                        corex_ml::run_fragment(
                            &spec.work,
                            &spec.model,
                            &parameters,
                            dataset,
                            indices,
                        )
                    })
                    .unwrap()
            };
            // The node computes on 2 or 4 threads, the auditor replays on 1.
            let submitted: Vec<_> = fragments
                .iter()
                .enumerate()
                .map(|(i, f)| output(1 + i % 2, &f.indices))
                .collect();
            let replays: Vec<_> = fragments.iter().map(|f| output(0, &f.indices)).collect();
            for (s, r) in submitted.iter().zip(&replays) {
                let c = compare(&s.values, &r.values, &tolerance).unwrap();
                worst_l2 = worst_l2.max(c.relative_l2);
                worst_cosine = worst_cosine.min(c.cosine);
                compared += 1;
            }
            let candidates: Vec<Candidate<'_>> = submitted
                .iter()
                .zip(&fragments)
                .map(|(s, f)| Candidate {
                    node: corex_core::Keypair::from_secret([f.index as u8; 32]).id(),
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
                })
                .collect();
            // Then the real verifier judges the round: its own audit draws and consistency
            // flags; odd fragments are replayed by an auditor node on 4 threads, the others by
            // the coordinator on 1.
            let plan = verifier
                .plan_round(&job, &candidates, ResultKind::Update)
                .unwrap();
            let auditor = corex_core::Keypair::from_secret([200; 32]).id();
            let node_replays: BTreeMap<usize, NodeReplay> = (0..fragments.len())
                .filter(|i| i % 2 == 1)
                .map(|i| {
                    let replay = output(2, &fragments[i].indices);
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
    println!(
        "calibration ({family}): {compared} honest replays across 1/2/4 threads and {runs} seeds: worst relative L2 {worst_l2:.3e}, worst cosine {worst_cosine:.9}; tolerance {:.0e} / {}; hard rejects of honest work: {hard_rejects}",
        tolerance.max_relative_l2, tolerance.min_cosine
    );
    assert_eq!(hard_rejects, 0);
    assert!(worst_l2 <= tolerance.max_relative_l2 && worst_cosine >= tolerance.min_cosine);
}
