//! `corex bench policy`: what a job's compression policies do to its training, without a
//! network, to tune them in a fraction of a devnet's time. The compressed job is trained in this
//! process as the network would train it: each round's fragments are computed at the published
//! version, fragment `i` of round `r` on simulated node `(i + r) mod nodes`, each node keeps its
//! error feedback (`corex_core::compression::compress_with_feedback`, decay included), the
//! decoded updates are averaged and stepped, and the next version is published through the
//! download policy (`corex_core::model_update::publish_step`). The whole job (the same job
//! without compression, or `--whole-job`) is trained beside it by `bench_single`. Both print
//! their held-out loss at each evaluation; a devnet of the same job ends within its run-to-run
//! spread of what this prints (README).

use std::sync::Arc;

use corex_core::JobSpec;
use corex_core::compression::{compress_with_feedback, decode};
use corex_core::model_update::publish_step;
use corex_ml::Trainer;
use corex_scheduler::round_batch;
use indicatif::{ProgressBar, ProgressStyle};

use crate::bench_single::{Measurement, bench_dataset, single_process};

/// Trains `spec` (with compression) in this process as `nodes` nodes would over the network,
/// and `whole` beside it, and prints the held-out loss of each.
pub fn run(spec: JobSpec, whole: JobSpec, nodes: u32) -> anyhow::Result<()> {
    anyhow::ensure!(nodes >= 1, "at least one simulated node");
    println!(
        "bench policy: job '{}', {} rounds, compression up {:?}, down {:?}, outer {:?}; whole: outer {:?}; {nodes} simulated nodes",
        spec.name,
        spec.rounds,
        spec.compression,
        spec.download_compression,
        spec.optimizer,
        whole.optimizer
    );
    let compressed = simulate(&spec, nodes as usize)?;
    let (whole_run, _) = single_process(&whole)?;
    let describe = |m: &Measurement| crate::quality::describe(&spec.model, m.loss, m.accuracy);
    println!(
        "  whole      {} ({:.0} CPU-s)",
        describe(&whole_run),
        whole_run.cpu_s
    );
    println!(
        "  compressed {} ({:.0} CPU-s)",
        describe(&compressed),
        compressed.cpu_s
    );
    if let (Some(whole_loss), Some(compressed_loss)) = (whole_run.loss, compressed.loss) {
        println!(
            "  held-out loss after {} rounds, compressed − whole: {:+.4} nats",
            spec.rounds,
            compressed_loss - whole_loss
        );
    }
    Ok(())
}

/// `spec` trained as the network trains a compressed job, in this process.
fn simulate(spec: &JobSpec, nodes: usize) -> anyhow::Result<Measurement> {
    let (cpu_before, _) = crate::cpu_time::cpu_seconds()?;
    let started = std::time::Instant::now();
    let prepared =
        corex_coordinator::prepared::prepare(spec, Arc::new(bench_dataset(spec)?), None)?;
    let (dataset, split) = (prepared.dataset, prepared.split);
    let mut trained = corex_ml::init_parameters(&spec.model, spec.seed);
    let mut published = trained.clone();
    let mut trainer = Trainer::new(&spec.model, &trained, &spec.optimizer)?;
    let mut feedback: Vec<Vec<f32>> = vec![Vec::new(); nodes];
    let mut evaluation = None;
    let bar = ProgressBar::new(u64::from(spec.rounds));
    bar.set_style(
        ProgressStyle::with_template("  compressed, simulated: round {pos}/{len} [{bar:30}] {msg}")
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
                    let node = (index + round as usize) % nodes;
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
            &corex_ml::weighted_mean(&parts)?,
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
            let quality = crate::quality::describe(
                &spec.model,
                Some(evaluated.loss),
                Some(evaluated.accuracy),
            );
            // Printed whether or not the bar shows (a piped run hides it).
            bar.suspend(|| println!("  compressed, round {done}: {quality}"));
            evaluation = Some(evaluated);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (cpu_after, _) = crate::cpu_time::cpu_seconds()?;
    Ok(Measurement {
        cpu_s: cpu_after - cpu_before,
        wall_s: started.elapsed().as_secs_f64(),
        loss: evaluation.map(|e| e.loss),
        accuracy: evaluation.map(|e| e.accuracy),
    })
}
