//! The single-process side of `corex bench overhead`: the job trained in this process, the
//! devnet's computation without the network. Each round's batch is cut into the same
//! fragments, their results are averaged the same way and the same optimizer and evaluations
//! run, on the same data the coordinator would prepare (split, standardized where the spec
//! says so). (Fragment-sized batches are also the faster way to compute a large round on one
//! core: 1,024-sample pieces beat one 4,096-sample batch by about a third.) A job with
//! compression policies is trained the same way with its updates compressed as the network
//! compresses them ([`train`], `corex bench policy`).

use std::sync::Arc;
use std::time::Instant;

use corex_core::compression::{compress_with_feedback, decode};
use corex_core::model_update::publish_step;
use corex_core::{DatasetSource, JobSpec};
use corex_ml::{Dataset, Split, Trainer};
use corex_scheduler::round_batch;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cpu_time::cpu_seconds;

/// What one training run cost and reached.
pub struct Measurement {
    pub cpu_s: f64,
    pub wall_s: f64,
    /// The last held-out loss and accuracy.
    pub loss: Option<f32>,
    pub accuracy: Option<f32>,
}

/// The dataset a bench job runs on: built in or packaged (read here, as the coordinator would).
pub fn bench_dataset(spec: &JobSpec) -> anyhow::Result<Dataset> {
    Ok(match spec.dataset.source {
        DatasetSource::Digits => Dataset::digits()?,
        DatasetSource::Packaged { name } => Dataset::packaged(name)?,
        _ => anyhow::bail!("the overhead bench runs jobs on built-in or packaged datasets"),
    })
}

/// Trains `spec` in this process as `nodes` nodes would over the network (which matters only
/// under compression, where each node keeps its own error feedback); also returns the
/// prepared split's bigram baseline for a language model (nats per held-out byte).
pub fn single_process(spec: &JobSpec, nodes: usize) -> anyhow::Result<(Measurement, Option<f64>)> {
    let (measurement, dataset, split) = train(spec, nodes, false)?;
    let bigram = spec
        .model
        .window()
        .map(|_| corex_ml::bigram_loss(&spec.model, &dataset, &split))
        .transpose()?;
    Ok((measurement, bigram))
}

/// Trains `spec` in this process as the network trains it: each round's fragments computed at
/// the published version, fragment `i` of round `r` sent by simulated node `(i + r) mod nodes`
/// through the job's upload policy with that node's error feedback
/// (`compress_with_feedback`, decay included), the decoded updates averaged and stepped, and
/// the next version published through the download policy (`model_update::publish_step`).
/// Without compression this is plain training on fragment-sized batches. `progress` shows a
/// bar and each evaluation.
pub fn train(
    spec: &JobSpec,
    nodes: usize,
    progress: bool,
) -> anyhow::Result<(Measurement, Arc<Dataset>, Split)> {
    let (cpu_before, _) = cpu_seconds()?;
    let started = Instant::now();
    let prepared =
        corex_coordinator::prepared::prepare(spec, Arc::new(bench_dataset(spec)?), None)?;
    let (dataset, split) = (prepared.dataset, prepared.split);
    let mut trained = corex_ml::init_parameters(&spec.model, spec.seed);
    let mut published = trained.clone();
    let mut trainer = Trainer::new(&spec.model, &trained, &spec.optimizer)?;
    let mut feedback: Vec<Vec<f32>> = vec![Vec::new(); nodes.max(1)];
    let mut evaluation = None;
    let bar = match progress {
        true => ProgressBar::new(u64::from(spec.rounds)),
        false => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template("  round {pos}/{len} [{bar:30}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for round in 0..spec.rounds {
        let batch = round_batch(&split.train, spec.global_batch, spec.seed, round);
        let mut parts = Vec::new();
        for (index, samples) in batch.chunks(spec.fragment_samples as usize).enumerate() {
            let output = corex_ml::run_fragment(
                &corex_ml::Backend::cpu(),
                &spec.work,
                &spec.model,
                &published,
                &dataset,
                samples,
            )?;
            let sent = match spec.compression.is_none() {
                true => output.values,
                false => {
                    let node = (index + round as usize) % feedback.len();
                    let (bytes, after) =
                        compress_with_feedback(&output.values, &feedback[node], &spec.compression)?;
                    feedback[node] = after;
                    decode(&bytes, output.values.len(), &spec.compression)?
                }
            };
            parts.push((sent, output.samples));
        }
        let parts: Vec<(&[f32], u32)> = parts
            .iter()
            .map(|(values, samples)| (values.as_slice(), *samples))
            .collect();
        trainer.step_at_rate(
            &corex_verify::aggregate(&spec.aggregation, &parts)?,
            spec.learning_rate_at(round),
        )?;
        trained = trainer.parameters();
        published = match spec.download_compression.is_none() {
            true => trained.clone(),
            false => publish_step(&trained, &published, &spec.download_compression)?.1,
        };
        let done = round + 1;
        if done == spec.rounds || done.is_multiple_of(spec.eval_every) {
            let evaluated = corex_ml::evaluate(&spec.model, &trained, &dataset, &split.test)?;
            if progress {
                let quality = crate::quality::describe(
                    &spec.model,
                    Some(evaluated.loss),
                    Some(evaluated.accuracy),
                );
                // Printed whether or not the bar shows (a piped run hides it).
                bar.suspend(|| println!("  round {done}: {quality}"));
            }
            evaluation = Some(evaluated);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (cpu_after, _) = cpu_seconds()?;
    let measurement = Measurement {
        cpu_s: cpu_after - cpu_before,
        wall_s: started.elapsed().as_secs_f64(),
        loss: evaluation.map(|e| e.loss),
        accuracy: evaluation.map(|e| e.accuracy),
    };
    Ok((measurement, dataset, split))
}
