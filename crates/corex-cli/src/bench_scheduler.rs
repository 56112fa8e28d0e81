//! `corex bench scheduler`: the pure balancer driven by `corex-sim` with 100,000 virtual nodes
//! and 1,000,000 fragments, against a first-come-first-served baseline in the same run:
//! assignments per second on one core, makespan against the ideal, and fairness.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use corex_sim::{Policy, Population, SimConfig, SimReport, simulate};

pub struct SchedulerBenchOptions {
    pub config: SimConfig,
    pub target_ms: u64,
}

pub fn run(options: &SchedulerBenchOptions) -> anyhow::Result<()> {
    let config = &options.config;
    println!(
        "bench scheduler: {} virtual nodes (50 % edge 1–20 GFLOP/s, 35 % CPU 20–500 GFLOP/s, 13 % GPU 2–40 TFLOP/s, 2 % HPC 50–200 TFLOP/s; true speed ±10 % of verified), {} fragments of 5 GFLOP–200 TFLOP, churn {:.1} % of assignments ({} s away), target {} ms per fragment, seed {}",
        config.nodes,
        config.fragments,
        f64::from(config.churn_ppm) / 1e4,
        config.rejoin_ms / 1_000,
        options.target_ms,
        config.seed
    );
    let population = Population::draw(
        config.nodes,
        config.fragments,
        config.join_window_ms,
        config.seed,
    );
    let balanced = timed(
        "corex balancer",
        config,
        &population,
        Policy::Balanced {
            target_ms: options.target_ms,
        },
    )?;
    let baseline = timed("baseline FIFO", config, &population, Policy::Fifo)?;
    println!(
        "  ratios against the baseline: {:.2}× assignments per second, makespan {:.4}×, fairness distance {:.2}×",
        balanced.rate / baseline.rate,
        balanced.report.makespan_ms as f64 / baseline.report.makespan_ms.max(1) as f64,
        balanced.report.fairness_tv / baseline.report.fairness_tv.max(f64::MIN_POSITIVE)
    );
    println!("  share of the work done against share of the capacity offered, per class:");
    for ((class, done, offered), (_, fifo_done, _)) in balanced
        .report
        .class_shares
        .iter()
        .zip(&baseline.report.class_shares)
    {
        println!(
            "    {:<5} capacity {:>6.2} %   balancer {:>6.2} %   FIFO {:>6.2} %",
            format!("{class:?}"),
            offered * 100.0,
            done * 100.0,
            fifo_done * 100.0
        );
    }
    println!(
        "  target: ≥ 100,000 assignments per second on one core: {}",
        if balanced.rate >= 100_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

struct Timed {
    report: SimReport,
    rate: f64,
}

fn timed(
    label: &str,
    config: &SimConfig,
    population: &Population,
    policy: Policy,
) -> anyhow::Result<Timed> {
    let live = std::io::stdout().is_terminal();
    if live {
        print!("  {label:<15} simulating…");
        std::io::stdout().flush()?;
    }
    let started = Instant::now();
    let report = simulate(config, population, policy);
    let seconds = started.elapsed().as_secs_f64();
    let rate = report.assignments as f64 / seconds.max(f64::MIN_POSITIVE);
    println!(
        "{}  {label:<15} {:>9} assignments in {seconds:.2} s: {rate:>9.0} per second (event loop included); {} straggler copies, {} late results unpaid, {} left mid-fragment; makespan {:.1} s against an ideal {:.1} s ({:.2}×); fairness distance {:.3}",
        if live { "\r" } else { "" },
        report.assignments,
        report.reissues,
        report.late_results,
        report.failures,
        report.makespan_ms as f64 / 1e3,
        report.ideal_ms as f64 / 1e3,
        report.makespan_ms as f64 / report.ideal_ms.max(1) as f64,
        report.fairness_tv
    );
    Ok(Timed { report, rate })
}
