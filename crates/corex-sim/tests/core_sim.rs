//! The real coordinator core under seeded faults against the same runs without them.

use corex_sim::core_sim::{CoreSimConfig, CoreSimReport, FaultPlan, simulate_core};

fn config(seed: u64, nodes: usize, rounds: u32, faults: FaultPlan) -> CoreSimConfig {
    CoreSimConfig {
        seed,
        nodes,
        rounds,
        fragments_per_round: 8,
        faults,
    }
}

fn faulty() -> FaultPlan {
    FaultPlan {
        node_crash_ppm: 20_000,
        delay_ms: [5, 80],
        liars: 2,
        lying_auditors: 2,
        coordinator_restarts: 3,
    }
}

#[test]
fn under_faults_every_invariant_holds_and_the_model_is_the_fault_free_runs_over_20_seeds() {
    let (mut steps, mut checks, mut restarts, mut crashes, mut lies, mut banned) =
        (0, 0, 0, 0, 0, 0);
    for seed in 1..=20 {
        let reference = simulate_core(&config(seed, 64, 24, FaultPlan::none()))
            .unwrap_or_else(|failure| panic!("{failure}"));
        let report = simulate_core(&config(seed, 64, 24, faulty()))
            .unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(
            report.final_model,
            reference.final_model,
            "simulation seed {seed}: the model differs from the fault-free run's; {}",
            first_difference(&report, &reference)
        );
        assert_eq!(report.faults.coordinator_restarts, 3, "seed {seed}");
        steps += reference.steps + report.steps;
        checks += reference.invariant_checks + report.invariant_checks;
        restarts += report.faults.coordinator_restarts;
        crashes += report.faults.node_crashes;
        lies += report.faults.lies + report.faults.auditor_lies;
        banned += report.cheaters_banned;
    }
    println!(
        "20 seeds × 2 runs, 64 virtual nodes, 24 rounds: {steps} steps, invariants checked after {checks}; {restarts} coordinator restarts, {crashes} node crashes, {lies} lies, {banned} cheaters banned"
    );
    assert!(
        crashes > 0 && lies > 0 && banned > 0,
        "the faults were injected and caught"
    );
}

#[test]
fn a_run_is_a_pure_function_of_its_seed() {
    let first = simulate_core(&config(5, 32, 10, faulty())).unwrap_or_else(|f| panic!("{f}"));
    let again = simulate_core(&config(5, 32, 10, faulty())).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        (
            first.steps,
            first.faults,
            first.final_model,
            first.virtual_ms
        ),
        (
            again.steps,
            again.faults,
            again.final_model,
            again.virtual_ms
        )
    );
}

/// The first round the faulty run closed on another model than the fault-free run, with the
/// round before it (whose results made the difference) and the cheaters.
fn first_difference(faulty: &CoreSimReport, reference: &CoreSimReport) -> String {
    let pairs = faulty.history.iter().zip(&reference.history);
    let Some(at) = pairs
        .clone()
        .position(|(ours, theirs)| ours.model != theirs.model)
    else {
        return "every recorded round started from the same model".into();
    };
    let before = at
        .checked_sub(1)
        .and_then(|round| faulty.history.get(round));
    format!(
        "round {at} started from another model; the round before: {before:?}; cheaters: {:?}",
        faulty.cheaters
    )
}
