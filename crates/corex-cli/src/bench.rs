//! `corex bench overhead`: what the network costs over training in one process.
//!
//! Runs the same job twice in one go: first in this process (the baseline: the same fragments'
//! results, the same mean, optimizer and evaluations, no network), then as a devnet of real
//! processes over TLS. Both use one compute thread per process. Prints CPU-seconds of each,
//! their ratio, rounds per second, and where the devnet's CPU went.

use std::path::PathBuf;
use std::time::Duration;

use crate::bench_single::{Measurement, single_process};

use clap::Subcommand;
use corex_core::JobSpec;

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
            let spec = JobSpec::from_toml(&std::fs::read_to_string(&job)?)?;
            let whole = read_optional_job(whole_job)?;
            crate::bench_traffic::run(spec, whole, nodes, data_dir, link)
        }
        Which::Policy {
            job,
            whole_job,
            nodes,
        } => {
            configure_threads(1)?;
            let spec = JobSpec::from_toml(&std::fs::read_to_string(&job)?)?;
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
                Some(path) => JobSpec::from_toml(&std::fs::read_to_string(&path)?)?,
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
    Ok(match path {
        Some(path) => Some(JobSpec::from_toml(&std::fs::read_to_string(&path)?)?),
        None => None,
    })
}

/// One devnet run, with where its CPU went.
struct DevnetMeasurement {
    total: Measurement,
    driver_cpu_s: f64,
    /// CPU seconds of each devnet process over the measured job.
    process_cpu_s: Vec<(String, f64)>,
    outcome: devnet::DevnetOutcome,
}

/// How `corex bench overhead` runs.
struct OverheadOptions {
    nodes: u32,
    data_dir: PathBuf,
    repeat: u32,
    node_audits: bool,
    explorer: bool,
    proven: bool,
}

fn overhead(spec: &JobSpec, options: OverheadOptions) -> anyhow::Result<()> {
    let OverheadOptions {
        nodes,
        data_dir,
        repeat,
        node_audits,
        explorer,
        proven,
    } = options;
    configure_threads(1)?;
    println!(
        "bench overhead: job '{}', {} rounds × {} samples, {} fragments/round, {} nodes, 1 thread per process, audits replayed by {}, {} runs each{}",
        spec.name,
        spec.rounds,
        spec.global_batch,
        spec.fragments_per_round(),
        nodes,
        if node_audits {
            "the nodes"
        } else {
            "the coordinator"
        },
        repeat,
        match proven {
            true =>
                "; each devnet runs the job first with another seed, long enough for its nodes' audit rates to reach the floor, and only the second job counts",
            false => "",
        }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    let mut watched = Vec::new();
    let mut bigram = None;
    for run in 1..=repeat.max(1) {
        // Alternate the two so that both see the same machine conditions.
        let (baseline, baseline_bigram) = single_process(spec, nodes as usize)?;
        bigram = baseline_bigram;
        print_line(&format!("single process #{run}"), &baseline, spec);
        let devnet = DevnetRun {
            nodes,
            data_dir: data_dir.clone(),
            node_audits,
            proven,
        };
        let network = devnet_once(&runtime, spec, &devnet, false)?;
        print_line(&format!("devnet #{run}"), &network.total, spec);
        if explorer {
            let polled = devnet_once(&runtime, spec, &devnet, true)?;
            let label = format!("devnet #{run}, explorer read every second");
            print_line(&label, &polled.total, spec);
            // The reader's own CPU is the driver's: what counts is the network's.
            let network_cpu = |m: &DevnetMeasurement| m.total.cpu_s - m.driver_cpu_s;
            watched.push((
                network_cpu(&polled) / network_cpu(&network),
                polled.total.wall_s / network.total.wall_s,
                polled.outcome.explorer_pages,
            ));
        }
        runs.push((network.total.cpu_s / baseline.cpu_s, baseline, network));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, baseline, network) = &runs[runs.len() / 2];
    println!("  median run:");
    print_line("single process", baseline, spec);
    print_line("devnet", &network.total, spec);
    if let Some(window) = spec.model.window() {
        let tokens = f64::from(spec.rounds) * f64::from(spec.global_batch) * (window - 1) as f64;
        println!(
            "  tokens per second (wall): single process {:.0}, devnet {:.0}; per CPU-second: {:.0} and {:.0}",
            tokens / baseline.wall_s,
            tokens / network.total.wall_s,
            tokens / baseline.cpu_s,
            tokens / network.total.cpu_s
        );
    }
    if let Some(bigram) = bigram {
        println!("  bigram baseline on the same training text: val loss {bigram:.3} nats");
    }
    if let (Some(single), Some(devnet)) = (baseline.loss, network.total.loss) {
        println!(
            "  held-out loss, devnet − single process: {:+.4} nats",
            f64::from(devnet) - f64::from(single)
        );
    }
    match proven {
        true => println!("  where that devnet's CPU went in its second job:"),
        false => println!("  where that devnet's CPU went:"),
    }
    println!(
        "    devnet driver (submit, poll, download)  {:>6.2} s",
        network.driver_cpu_s
    );
    for (name, cpu) in &network.process_cpu_s {
        println!("    {name:<38}  {cpu:>6.2} s");
    }
    let flops: f64 = network
        .outcome
        .report
        .status
        .nodes
        .values()
        .map(|n| n.flops as f64)
        .sum();
    let (fragments, audited) = network
        .outcome
        .report
        .status
        .nodes
        .values()
        .fold((0, 0), |(f, a), n| (f + n.fragments, a + n.audited));
    println!("    (work assigned: {:.2} GFLOP)", flops / 1e9);
    println!(
        "    (of which replayed by audits: {audited} of {fragments} fragments, {:.1} %)",
        100.0 * audited as f64 / fragments.max(1) as f64
    );
    if !watched.is_empty() {
        watched.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (cpu, wall, pages) = watched[watched.len() / 2];
        let all: Vec<String> = watched.iter().map(|(r, ..)| format!("{r:.3}")).collect();
        println!(
            "  explorer read every second ({pages} pages loaded) / nobody watching: {cpu:.3} CPU-s of the coordinator and nodes, {wall:.3} wall, median of [{}] (two separate devnets: a difference within the runs' noise is none)",
            all.join(", ")
        );
    }
    let all: Vec<String> = runs.iter().map(|(r, _, _)| format!("{r:.2}")).collect();
    println!(
        "  ratio devnet / single process: {ratio:.2} CPU-s, median of [{}] (target ≤ 1.15)",
        all.join(", ")
    );
    Ok(())
}

fn print_line(label: &str, measurement: &Measurement, spec: &JobSpec) {
    println!(
        "  {label:<18} {:>7.2} CPU-s  {:>6.2} s wall  {:>6.1} rounds/s  {}",
        measurement.cpu_s,
        measurement.wall_s,
        f64::from(spec.rounds) / measurement.wall_s,
        crate::quality::describe(&spec.model, measurement.loss, measurement.accuracy)
    );
}

/// The devnet `corex bench overhead` measures.
struct DevnetRun {
    nodes: u32,
    data_dir: PathBuf,
    node_audits: bool,
    /// Run the job once first and measure the second run (see `DevnetOptions::warm_up`).
    proven: bool,
}

fn devnet_once(
    runtime: &tokio::runtime::Runtime,
    spec: &JobSpec,
    devnet: &DevnetRun,
    explorer_poll: bool,
) -> anyhow::Result<DevnetMeasurement> {
    let (own_before, children_before) = cpu_seconds()?;
    let outcome = runtime.block_on(devnet::run(DevnetOptions {
        nodes: devnet.nodes,
        data_dir: devnet.data_dir.clone(),
        spec: spec.clone(),
        threads: 1,
        timeout: Duration::from_secs(1800),
        show_progress: false,
        adversaries: Vec::new(),
        node_audits: devnet.node_audits,
        profiles: Vec::new(),
        federated: None,
        explorer_poll,
        link: None,
        warm_up: devnet.proven,
    }))?;
    let (own_after, children_after) = cpu_seconds()?;
    anyhow::ensure!(outcome.succeeded(), "the devnet job did not finish");
    // With a warm-up job, what this process and each devnet process had spent when it ended
    // is not the measured job's.
    let (own_start, earlier): (f64, Vec<(String, f64)>) = match &outcome.warm_up {
        Some(warm) => (warm.own_cpu_s, warm.process_cpu_s.clone()),
        None => (own_before, Vec::new()),
    };
    let spent_before = |name: &str| {
        earlier
            .iter()
            .find(|(earlier_name, _)| earlier_name == name)
            .map_or(0.0, |(_, cpu)| *cpu)
    };
    let earlier_total: f64 = earlier.iter().map(|(_, cpu)| cpu).sum();
    let process_cpu_s = outcome
        .process_cpu_s
        .iter()
        .map(|(name, cpu)| (name.clone(), cpu - spent_before(name)))
        .collect();
    Ok(DevnetMeasurement {
        total: Measurement {
            cpu_s: (own_after - own_start) + (children_after - children_before) - earlier_total,
            wall_s: outcome.wall_s,
            loss: outcome.report.status.last_test_loss,
            accuracy: outcome.report.status.last_test_accuracy,
        },
        driver_cpu_s: own_after - own_start,
        process_cpu_s,
        outcome,
    })
}
