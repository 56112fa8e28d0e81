//! `corex bench overhead`: what the network costs over training in one process.
//!
//! Runs the same job in this process (the baseline: the same fragments' results, the same
//! mean, optimizer and evaluations, no network) and as a devnet of real processes over TLS,
//! alternating: single, devnet, single, devnet, …, single. Each devnet is set against the mean
//! of the single-process runs on either side of it, so that the machine's speed drifting over
//! the minutes of a run does not land on one side. Both use one compute thread per process.
//! Prints CPU-seconds of each, their ratio, rounds per second, and where the devnet's CPU went.

use std::path::PathBuf;
use std::time::Duration;

use corex_core::JobSpec;

use crate::bench_single::{Measurement, single_process};
use crate::cpu_time::cpu_seconds;
use crate::devnet::{self, DevnetOptions};
use crate::serve::configure_threads;

/// One devnet run, with where its CPU went.
struct DevnetMeasurement {
    total: Measurement,
    driver_cpu_s: f64,
    /// CPU seconds of each devnet process over the measured job.
    process_cpu_s: Vec<(String, f64)>,
    outcome: devnet::DevnetOutcome,
}

/// How `corex bench overhead` runs.
pub(crate) struct OverheadOptions {
    pub(crate) nodes: u32,
    pub(crate) data_dir: PathBuf,
    pub(crate) repeat: u32,
    pub(crate) node_audits: bool,
    pub(crate) explorer: bool,
    pub(crate) proven: bool,
}

pub(crate) fn overhead(spec: &JobSpec, options: OverheadOptions) -> anyhow::Result<()> {
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
    // Each devnet is compared with the mean of the single-process runs just before and just
    // after it, so that a drift of the machine's speed over the minutes of a run cancels
    // rather than lands on one side.
    // Training is deterministic: every single-process run gives the same bigram baseline.
    let (mut before, bigram) = single_process(spec, nodes as usize)?;
    print_line("single process #0", &before, spec);
    for run in 1..=repeat.max(1) {
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
        let (after, _) = single_process(spec, nodes as usize)?;
        print_line(&format!("single process #{run}"), &after, spec);
        let baseline = mean_of(&before, &after);
        runs.push((network.total.cpu_s / baseline.cpu_s, baseline, network));
        before = after;
    }
    let devnet_total: f64 = runs.iter().map(|(_, _, network)| network.total.cpu_s).sum();
    let baseline_total: f64 = runs.iter().map(|(_, baseline, _)| baseline.cpu_s).sum();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, baseline, network) = &runs[runs.len() / 2];
    println!("  median run:");
    print_line("single process", baseline, spec);
    println!("    (the mean of the single-process runs before and after this devnet)");
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
        "  ratio devnet / single process: {ratio:.2} CPU-s, median of [{}]; all runs' CPU-s together: {:.2} (target ≤ 1.15)",
        all.join(", "),
        devnet_total / baseline_total
    );
    Ok(())
}

/// The mean of two single-process runs of the same job (the same losses: training is
/// deterministic).
fn mean_of(before: &Measurement, after: &Measurement) -> Measurement {
    Measurement {
        cpu_s: (before.cpu_s + after.cpu_s) / 2.0,
        wall_s: (before.wall_s + after.wall_s) / 2.0,
        loss: after.loss,
        accuracy: after.accuracy,
    }
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
