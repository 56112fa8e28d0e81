//! `corex bench verify`: the audit policy's economics, simulated over seeded trials: how
//! surely a node faking a share of its fragments is caught, against the share of honest
//! compute spent on audits, beside the closed form at the floor rate alone.

use std::time::Instant;

pub fn run(
    trials: u32,
    fragments: u32,
    fake_percent: f64,
    honest_nodes: u32,
    seed: u64,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=100.0).contains(&fake_percent),
        "--fake-percent must be within 0..=100"
    );
    let policy = corex_verify::AuditPolicy::default();
    let population = corex_verify::Population {
        fragments,
        fake_ppm: (fake_percent * 10_000.0).round() as u32,
        trials,
        honest_nodes,
    };
    println!(
        "bench verify: audit policy: all of a node's first results until {} audits pass, then {:.1} % → floor {:.1} % over {} passed audits; seed {seed}",
        policy.probation_audits,
        f64::from(policy.new_node_ppm) / 1e4,
        f64::from(policy.floor_ppm) / 1e4,
        policy.proving_audits
    );
    let started = Instant::now();
    let study = corex_verify::study_detection(&policy, &population, seed);
    println!(
        "  node faking {fake_percent} % of {fragments} fragments, {trials} trials: caught {:.2} % (mean {:.0} fragments to the catch; target ≥ 99 %)",
        study.caught * 100.0,
        study.mean_fragments_to_catch
    );
    println!(
        "  audit overhead, {honest_nodes} honest nodes × {fragments} fragments: {:.2} % of compute replayed (target < 10 %)",
        study.audit_overhead * 100.0
    );
    let escape =
        (1.0 - f64::from(policy.floor_ppm) / 1e6).powf(f64::from(fragments) * fake_percent / 100.0);
    println!(
        "  baseline: closed form at the floor rate alone, (1 − p)^(fN) = {:.3} % escape; simulated {:.3} % ({:.1} s)",
        escape * 100.0,
        (1.0 - study.caught) * 100.0,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
