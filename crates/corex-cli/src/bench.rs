//! `corex bench overhead`: what the network costs over training in one process.
//!
//! Runs the same job twice in one go: first in this process (the baseline: gradient of each
//! round's whole batch, the same optimizer, the same evaluations), then as a devnet of real
//! processes over TLS. Both use one compute thread per process. Prints CPU-seconds of each,
//! their ratio, rounds per second, and where the devnet's CPU went.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use corex_core::JobSpec;
use corex_ml::{Dataset, Trainer};
use corex_scheduler::round_batch;

use crate::cpu_time::cpu_seconds;
use crate::devnet::{self, DevnetOptions};
use crate::serve::configure_threads;

#[derive(Subcommand)]
pub enum Which {
    /// CPU-seconds of devnet against single-process training of the default job.
    Overhead {
        #[arg(long, default_value_t = 4)]
        nodes: u32,
        /// Where the devnet keeps its files during the benchmark.
        #[arg(long, default_value = "./corex-bench-devnet")]
        data_dir: PathBuf,
        /// A job spec (TOML) to measure instead of the default digits job.
        #[arg(long)]
        job: Option<PathBuf>,
    },
}

pub fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Overhead {
            nodes,
            data_dir,
            job,
        } => {
            let spec = match job {
                Some(path) => JobSpec::from_toml(&std::fs::read_to_string(&path)?)?,
                None => JobSpec::default_digits(),
            };
            overhead(&spec, nodes, data_dir)
        }
    }
}

struct Measurement {
    cpu_s: f64,
    wall_s: f64,
    accuracy: f32,
}

fn overhead(spec: &JobSpec, nodes: u32, data_dir: PathBuf) -> anyhow::Result<()> {
    configure_threads(1)?;
    println!(
        "bench overhead: job '{}', {} rounds × {} samples, {} fragments/round, {} nodes, 1 thread per process",
        spec.name,
        spec.rounds,
        spec.global_batch,
        spec.fragments_per_round(),
        nodes
    );
    let baseline = single_process(spec)?;
    println!(
        "  single process   {:>7.2} CPU-s  {:>6.2} s wall  {:>6.1} rounds/s  accuracy {:.2}%",
        baseline.cpu_s,
        baseline.wall_s,
        f64::from(spec.rounds) / baseline.wall_s,
        baseline.accuracy * 100.0
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (own_before, children_before) = cpu_seconds()?;
    let outcome = runtime.block_on(devnet::run(DevnetOptions {
        nodes,
        data_dir,
        spec: spec.clone(),
        threads: 1,
        timeout: Duration::from_secs(1800),
        show_progress: true,
    }))?;
    drop(runtime);
    let (own_after, children_after) = cpu_seconds()?;
    anyhow::ensure!(outcome.succeeded(), "the devnet job did not finish");
    let devnet_cpu = (own_after - own_before) + (children_after - children_before);
    let accuracy = outcome.report.status.last_test_accuracy.unwrap_or_default();
    println!(
        "  devnet           {:>7.2} CPU-s  {:>6.2} s wall  {:>6.1} rounds/s  accuracy {:.2}%",
        devnet_cpu,
        outcome.wall_s,
        f64::from(spec.rounds) / outcome.wall_s,
        accuracy * 100.0
    );
    println!("  where the devnet's CPU went:");
    println!(
        "    devnet driver (submit, poll, download)  {:>6.2} s",
        own_after - own_before
    );
    for (name, cpu) in &outcome.process_cpu_s {
        println!("    {name:<38}  {cpu:>6.2} s");
    }
    let compute_s: f64 = outcome
        .report
        .status
        .nodes
        .values()
        .map(|n| n.flops as f64)
        .sum::<f64>();
    println!("    (gradient work assigned: {:.2} GFLOP)", compute_s / 1e9);
    println!(
        "  ratio devnet / single process: {:.2} CPU-s (target ≤ 1.5)",
        devnet_cpu / baseline.cpu_s
    );
    Ok(())
}

/// The job trained in this process: same batches, optimizer and evaluations as the devnet.
fn single_process(spec: &JobSpec) -> anyhow::Result<Measurement> {
    let (cpu_before, _) = cpu_seconds()?;
    let started = Instant::now();
    let dataset = Arc::new(Dataset::load(&spec.dataset.source)?);
    let split = dataset.split(spec.dataset.test_fraction, spec.dataset.split_seed);
    let mut parameters = corex_ml::init_parameters(&spec.model, spec.seed);
    let mut trainer = Trainer::new(&spec.model, &parameters, &spec.optimizer)?;
    let mut accuracy = 0.0;
    for round in 0..spec.rounds {
        let batch = round_batch(&split.train, spec.global_batch, spec.seed, round);
        let mean = if std::env::var("MICRO").is_ok() {
            let parts: Vec<_> = batch
                .chunks(spec.fragment_samples as usize)
                .map(|indices| corex_ml::compute_gradient(&spec.model, &parameters, &dataset, indices))
                .collect::<Result<_, _>>()?;
            let weighted: Vec<(&[f32], u32)> = parts.iter().map(|p| (p.gradient.as_slice(), p.samples)).collect();
            corex_ml::weighted_mean(&weighted)?
        } else {
            corex_ml::compute_gradient(&spec.model, &parameters, &dataset, &batch)?.gradient
        };
        trainer.step(&mean)?;
        parameters = trainer.parameters();
        let done = round + 1;
        if done == spec.rounds || done.is_multiple_of(spec.eval_every) {
            accuracy =
                corex_ml::evaluate(&spec.model, &parameters, &dataset, &split.test)?.accuracy;
        }
    }
    let (cpu_after, _) = cpu_seconds()?;
    Ok(Measurement {
        cpu_s: cpu_after - cpu_before,
        wall_s: started.elapsed().as_secs_f64(),
        accuracy,
    })
}
