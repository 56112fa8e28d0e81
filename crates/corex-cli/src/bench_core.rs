//! `corex bench core`: the deterministic simulation of the real coordinator core (corex-sim's
//! `core_sim`) over seeds: each seed runs fault-free, then with seeded faults (node crashes,
//! network delays, liars, lying auditors, coordinator kill -9s mid-batch and restarts), and the
//! two final models must be identical. Prints steps, invariant checks, faults injected and
//! wall time per run, and stops at the first failure with the seed that reproduces it.

use std::time::Instant;

use corex_sim::core_sim::{CoreSimConfig, CoreSimReport, FaultPlan, simulate_core_observed};
use indicatif::{ProgressBar, ProgressStyle};

pub struct CoreBenchOptions {
    pub nodes: usize,
    pub rounds: u32,
    pub fragments_per_round: u32,
    pub seeds: u64,
    pub first_seed: u64,
    pub faults: FaultPlan,
}

pub fn run(options: &CoreBenchOptions) -> anyhow::Result<()> {
    let faults = &options.faults;
    println!(
        "bench core: the real coordinator core, {} virtual nodes ({} liars, {} lying auditors), {} rounds × {} fragments, seeds {} to {}; faults: node crash {:.2} % of fragments, delay {}–{} ms, {} coordinator kill -9s a run",
        options.nodes,
        faults.liars,
        faults.lying_auditors,
        options.rounds,
        options.fragments_per_round,
        options.first_seed,
        options.first_seed + options.seeds - 1,
        f64::from(faults.node_crash_ppm) / 1e4,
        faults.delay_ms[0],
        faults.delay_ms[1],
        faults.coordinator_restarts
    );
    let started = Instant::now();
    let mut totals = Totals::default();
    for seed in options.first_seed..options.first_seed + options.seeds {
        let config = |faults: FaultPlan| CoreSimConfig {
            seed,
            nodes: options.nodes,
            rounds: options.rounds,
            fragments_per_round: options.fragments_per_round,
            faults,
        };
        let reference = observed(&config(FaultPlan::none()), "fault-free")?;
        let faulty = observed(&config(options.faults.clone()), "faulty")?;
        anyhow::ensure!(
            faulty.final_model == reference.final_model,
            "simulation seed {seed}: the faulty run's model {} is not the fault-free run's {}",
            faulty.final_model,
            reference.final_model
        );
        println!(
            "  seed {seed}: fault-free {} steps in {:.1} s; faulty {} steps in {:.1} s ({} ledger scans), {} restarts, {} node crashes, {} lies, {} audit lies, {} delayed messages, {} fragments paid once, {} re-closed rounds refused by the ledger, {}/{} cheaters banned; models identical ({})",
            reference.steps,
            reference.wall.as_secs_f64(),
            faulty.steps,
            faulty.wall.as_secs_f64(),
            faulty.ledger_scans,
            faulty.faults.coordinator_restarts,
            faulty.faults.node_crashes,
            faulty.faults.lies,
            faulty.faults.auditor_lies,
            faulty.faults.delayed_messages,
            faulty.fragments_paid,
            faulty.duplicate_rounds_refused,
            faulty.cheaters_banned,
            faults.liars + faults.lying_auditors,
            faulty.final_model.short()
        );
        totals.add(&reference);
        totals.add(&faulty);
    }
    println!(
        "  {} seeds, {} runs: {} steps, invariants checked after each ({} ledger-wide scans); {} crashes, lies and restarts injected, {} messages delayed; every model identical to its fault-free run, every invariant held; {:.1} s",
        options.seeds,
        options.seeds * 2,
        totals.steps,
        totals.ledger_scans,
        totals.faults,
        totals.delays,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Default)]
struct Totals {
    steps: u64,
    ledger_scans: u64,
    faults: u64,
    delays: u64,
}

impl Totals {
    fn add(&mut self, report: &CoreSimReport) {
        self.steps += report.steps;
        self.ledger_scans += report.ledger_scans;
        let faults = &report.faults;
        self.faults +=
            faults.node_crashes + faults.lies + faults.auditor_lies + faults.coordinator_restarts;
        self.delays += faults.delayed_messages;
    }
}

/// One run with a live bar over its rounds.
fn observed(config: &CoreSimConfig, what: &str) -> anyhow::Result<CoreSimReport> {
    let bar = ProgressBar::new(u64::from(config.rounds));
    bar.set_style(
        ProgressStyle::with_template("  {msg} {bar:30} {pos}/{len} rounds {elapsed} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("seed {} {what}", config.seed));
    let report = simulate_core_observed(config, &mut |progress| {
        bar.set_position(u64::from(progress.rounds_closed));
    });
    bar.finish_and_clear();
    Ok(report?)
}
