//! The single-process side of `corex bench overhead`: the job trained in this process, the
//! devnet's computation without the network. Each round's batch is cut into the same
//! fragments, their results are averaged the same way and the same optimizer and evaluations
//! run, on the same data the coordinator would prepare (split, standardized where the spec
//! says so). (Fragment-sized batches are also the faster way to compute a large round on one
//! core: 1,024-sample pieces beat one 4,096-sample batch by about a third.)

use std::sync::Arc;
use std::time::Instant;

use corex_core::{DatasetSource, JobSpec};
use corex_ml::{Dataset, FragmentOutput, Trainer};
use corex_scheduler::round_batch;

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

/// Trains `spec` in this process; also returns the prepared split's bigram baseline for a
/// language model (nats per held-out byte).
pub fn single_process(spec: &JobSpec) -> anyhow::Result<(Measurement, Option<f64>)> {
    let (cpu_before, _) = cpu_seconds()?;
    let started = Instant::now();
    let prepared =
        corex_coordinator::prepared::prepare(spec, Arc::new(bench_dataset(spec)?), None)?;
    let (dataset, split) = (prepared.dataset, prepared.split);
    let mut parameters = corex_ml::init_parameters(&spec.model, spec.seed);
    let mut trainer = Trainer::new(&spec.model, &parameters, &spec.optimizer)?;
    let mut evaluation = None;
    for round in 0..spec.rounds {
        let batch = round_batch(&split.train, spec.global_batch, spec.seed, round);
        let fragments: Vec<FragmentOutput> = batch
            .chunks(spec.fragment_samples as usize)
            .map(|indices| {
                corex_ml::run_fragment(
                    &corex_ml::Backend::cpu(),
                    &spec.work,
                    &spec.model,
                    &parameters,
                    &dataset,
                    indices,
                )
            })
            .collect::<Result<_, _>>()?;
        let parts: Vec<(&[f32], u32)> = fragments
            .iter()
            .map(|fragment| (fragment.values.as_slice(), fragment.samples))
            .collect();
        let mean = corex_ml::weighted_mean(&parts)?;
        trainer.step_at_rate(&mean, spec.learning_rate_at(round))?;
        parameters = trainer.parameters();
        let done = round + 1;
        if done == spec.rounds || done.is_multiple_of(spec.eval_every) {
            evaluation = Some(corex_ml::evaluate(
                &spec.model,
                &parameters,
                &dataset,
                &split.test,
            )?);
        }
    }
    let (cpu_after, _) = cpu_seconds()?;
    let measurement = Measurement {
        cpu_s: cpu_after - cpu_before,
        wall_s: started.elapsed().as_secs_f64(),
        loss: evaluation.map(|e| e.loss),
        accuracy: evaluation.map(|e| e.accuracy),
    };
    let bigram = spec
        .model
        .window()
        .map(|_| corex_ml::bigram_loss(&spec.model, &dataset, &split))
        .transpose()?;
    Ok((measurement, bigram))
}
