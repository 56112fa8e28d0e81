//! `corex bench …`: the subcommands and what each is given. Every benchmark measures its
//! baseline in the same run and prints ratios against it; the overhead bench lives in
//! `bench_overhead`, the others in their own `bench_*` rooms.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use corex_core::JobSpec;

use crate::bench_overhead::{OverheadOptions, overhead};
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
        /// Runs of each; the run with the median ratio is reported.
        #[arg(long, default_value_t = 3)]
        repeat: u32,
        /// Let the devnet's nodes replay each other's audits (they share this machine, so
        /// production rules would have the coordinator replay them, which is the default here).
        #[arg(long)]
        node_audits: bool,
        /// Also run each devnet with a reader loading the explorer's pages every second, and
        /// compare its cost with the devnet nobody watches.
        #[arg(long)]
        explorer: bool,
        /// Measure the job on a network whose nodes have proven themselves: each devnet runs
        /// it first with another seed, for enough rounds that its nodes' audit rates reach the
        /// floor (audit records persist across jobs), and only the second job counts.
        #[arg(long)]
        proven: bool,
    },
    /// What a job's compression policies do to its training, without a network: the job
    /// trained in this process as the network would train it, beside the same job whole.
    Policy {
        /// A job spec (TOML) with a `compression` or `download_compression` policy.
        #[arg(long, default_value = "jobs/jargon-lm-diloco.toml")]
        job: PathBuf,
        /// The whole-update job, as `bench traffic --whole-job`.
        #[arg(long)]
        whole_job: Option<PathBuf>,
        /// Simulated nodes, each with its own error feedback.
        #[arg(long, default_value_t = 4)]
        nodes: u32,
    },
    /// Bytes up and down per fragment and per round, a job with its compression policy
    /// against the same job with whole f32 updates, and the held-out loss of each.
    Traffic {
        /// A job spec (TOML) with a `compression` policy.
        #[arg(long, default_value = "jobs/digits-compressed.toml")]
        job: PathBuf,
        #[arg(long, default_value_t = 4)]
        nodes: u32,
        #[arg(long, default_value = "./corex-bench-devnet")]
        data_dir: PathBuf,
        /// Shape each node's link to this rate each way (`50mbit`), as `devnet --link`.
        #[arg(long)]
        link: Option<crate::link::LinkRate>,
        /// The whole-update run's job: the same job without compression, at its own
        /// optimizer (default: the job with its compression policies removed).
        #[arg(long)]
        whole_job: Option<PathBuf>,
    },
    /// Audit economics: probability of catching a node that fakes 5 % of 1,000 fragments,
    /// against the share of compute spent on audits, over seeded trials.
    Verify {
        #[arg(long, default_value_t = 10_000)]
        trials: u32,
        #[arg(long, default_value_t = 1_000)]
        fragments: u32,
        /// Share of fragments the cheating node fakes, in percent.
        #[arg(long, default_value_t = 5.0)]
        fake_percent: f64,
        #[arg(long, default_value_t = 1_000)]
        honest_nodes: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// The balancer with 100,000 virtual nodes and 1,000,000 fragments (corex-sim) against a
    /// first-come-first-served baseline: assignments per second, makespan, fairness.
    Scheduler {
        #[arg(long, default_value_t = 100_000)]
        nodes: u32,
        #[arg(long, default_value_t = 1_000_000)]
        fragments: u32,
        /// Chance per assignment that the node leaves mid-fragment, in percent.
        #[arg(long, default_value_t = 2.0)]
        churn_percent: f64,
        /// Wall time a fragment should take on the node that gets it.
        #[arg(long, default_value_t = 2_000)]
        target_ms: u64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// The real coordinator core simulated (corex-sim `core_sim`): each seed fault-free and
    /// with seeded faults (node crashes, delays, liars, lying auditors, coordinator kill -9s),
    /// invariants after every step, the two final models identical.
    Core {
        #[arg(long, default_value_t = 1_000)]
        nodes: usize,
        #[arg(long, default_value_t = 100)]
        rounds: u32,
        #[arg(long, default_value_t = 8)]
        fragments: u32,
        #[arg(long, default_value_t = 5)]
        seeds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Chance per fragment that its node crashes before returning it, in percent.
        #[arg(long, default_value_t = 2.0)]
        node_crash_percent: f64,
        /// One-way network delay range, milliseconds.
        #[arg(long, value_delimiter = ',', default_value = "5,80")]
        delay_ms: Vec<u64>,
        #[arg(long, default_value_t = 2)]
        liars: usize,
        #[arg(long, default_value_t = 2)]
        lying_auditors: usize,
        /// Coordinator kill -9s (and restarts) a run.
        #[arg(long, default_value_t = 3)]
        restarts: u32,
    },
    /// Differential privacy's price: federated devnets without privacy and at each noise
    /// multiplier, test accuracy against the accountant's ε.
    Privacy {
        #[arg(long, default_value_t = 4)]
        holders: u32,
        /// Noise multipliers σ to measure (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "0.5,1,2,4")]
        noise: Vec<f64>,
        #[arg(long, default_value_t = 1.0)]
        clip: f64,
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
        /// Runs of each setting (the noise differs every run).
        #[arg(long, default_value_t = 3)]
        repeat: u32,
        #[arg(long, default_value = "./corex-bench-devnet")]
        data_dir: PathBuf,
    },
    /// Result and status latency (p50, p99) while heavy round closes run, against an idle
    /// coordinator, in one run (in-process coordinator and nodes over TLS).
    Stall {
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// Closes of the heavy job, each evaluating a CNN on 10,000 images.
        #[arg(long, default_value_t = 8)]
        heavy_rounds: u32,
        #[arg(long, default_value = "./corex-bench-stall")]
        data_dir: PathBuf,
    },
    /// A coordinator restart with a job mid-run and a long ledger: the ledger opened from its
    /// newest state snapshot against the replay from genesis every open did before, and the
    /// whole restart until the job's status answers, in one run.
    Restart {
        #[arg(long, default_value_t = 100_000)]
        blocks: u64,
        #[arg(long, default_value = "./corex-bench-restart")]
        data_dir: PathBuf,
    },
    /// Epoch settlement at 100,000 nodes and signed-transaction throughput, with baselines.
    Ledger {
        #[arg(long, default_value_t = 100_000)]
        nodes: u32,
        #[arg(long, default_value_t = 1_000_000)]
        records: u32,
        #[arg(long, default_value_t = 10_000)]
        accounts: u32,
        #[arg(long, default_value_t = 50_000)]
        transfers: u32,
        #[arg(long, default_value_t = 5_000)]
        block_size: u32,
    },
}

pub fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Verify {
            trials,
            fragments,
            fake_percent,
            honest_nodes,
            seed,
        } => crate::bench_verify::run(trials, fragments, fake_percent, honest_nodes, seed),
        Which::Scheduler {
            nodes,
            fragments,
            churn_percent,
            target_ms,
            seed,
        } => {
            anyhow::ensure!(
                (0.0..=100.0).contains(&churn_percent),
                "--churn-percent must be within 0..=100"
            );
            crate::bench_scheduler::run(&crate::bench_scheduler::SchedulerBenchOptions {
                config: corex_sim::SimConfig {
                    nodes: nodes.max(1),
                    fragments,
                    churn_ppm: (churn_percent * 1e4).round() as u32,
                    seed,
                    ..corex_sim::SimConfig::default()
                },
                target_ms: target_ms.max(1),
            })
        }
        Which::Core {
            nodes,
            rounds,
            fragments,
            seeds,
            seed,
            node_crash_percent,
            delay_ms,
            liars,
            lying_auditors,
            restarts,
        } => {
            anyhow::ensure!(
                (0.0..=100.0).contains(&node_crash_percent),
                "--node-crash-percent must be within 0..=100"
            );
            let [low, high] = delay_ms[..] else {
                anyhow::bail!("--delay-ms takes two numbers: low,high");
            };
            anyhow::ensure!(low <= high, "--delay-ms: low must not exceed high");
            anyhow::ensure!(
                liars + lying_auditors < nodes,
                "--liars and --lying-auditors must leave honest nodes"
            );
            crate::bench_core::run(&crate::bench_core::CoreBenchOptions {
                nodes,
                rounds: rounds.max(1),
                fragments_per_round: fragments.clamp(1, 1_024),
                seeds: seeds.max(1),
                first_seed: seed,
                faults: corex_sim::core_sim::FaultPlan {
                    node_crash_ppm: (node_crash_percent * 1e4).round() as u32,
                    delay_ms: [low, high],
                    liars,
                    lying_auditors,
                    coordinator_restarts: restarts,
                },
            })
        }
        Which::Privacy {
            holders,
            noise,
            clip,
            delta,
            repeat,
            data_dir,
        } => crate::bench_privacy::run(&crate::bench_privacy::PrivacyBenchOptions {
            holders,
            noise_multipliers: noise,
            clip_norm: clip,
            delta,
            repeat: repeat.max(1),
            data_dir,
        }),
        Which::Stall {
            nodes,
            heavy_rounds,
            data_dir,
        } => crate::bench_stall::run(&crate::bench_stall::StallBenchOptions {
            nodes: nodes.clamp(1, 32),
            heavy_rounds: heavy_rounds.max(1),
            data_dir,
        }),
        Which::Restart { blocks, data_dir } => {
            crate::bench_restart::run(&crate::bench_restart::RestartBenchOptions {
                blocks: blocks.max(1),
                data_dir,
            })
        }
        Which::Ledger {
            nodes,
            records,
            accounts,
            transfers,
            block_size,
        } => crate::bench_ledger::run(&crate::bench_ledger::LedgerBenchOptions {
            nodes,
            records,
            accounts,
            transfers,
            block_size: block_size.max(1),
        }),
        Which::Traffic {
            job,
            nodes,
            data_dir,
            link,
            whole_job,
        } => {
            configure_threads(1)?;
            let spec = read_job(&job)?;
            let whole = read_optional_job(whole_job)?;
            crate::bench_traffic::run(spec, whole, nodes, data_dir, link)
        }
        Which::Policy {
            job,
            whole_job,
            nodes,
        } => {
            configure_threads(1)?;
            let spec = read_job(&job)?;
            spec.validate()?;
            let whole = crate::bench_traffic::whole_baseline(&spec, read_optional_job(whole_job)?)?;
            crate::bench_policy::run(spec, whole, nodes)
        }
        Which::Overhead {
            nodes,
            data_dir,
            job,
            repeat,
            node_audits,
            explorer,
            proven,
        } => {
            let spec = match job {
                Some(path) => read_job(&path)?,
                None => JobSpec::default_digits(),
            };
            anyhow::ensure!(
                spec.work.trains(),
                "bench overhead compares training with single-process training; give a training job"
            );
            let options = OverheadOptions {
                nodes,
                data_dir,
                repeat,
                node_audits,
                explorer,
                proven,
            };
            overhead(&spec, options)
        }
    }
}

/// The job spec at `path`, if one is named.
fn read_optional_job(path: Option<PathBuf>) -> anyhow::Result<Option<JobSpec>> {
    path.map(|path| read_job(&path)).transpose()
}

/// The job spec in the TOML file at `path`; an error names the file.
fn read_job(path: &std::path::Path) -> anyhow::Result<JobSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the job spec {}", path.display()))?;
    JobSpec::from_toml(&text).with_context(|| format!("the job spec {}", path.display()))
}
