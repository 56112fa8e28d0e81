//! The real coordinator core under seeded faults against the same run without them.

use corex_sim::core_sim::{CoreSimConfig, FaultPlan, simulate_core};

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
fn a_faulty_run_ends_with_the_fault_free_runs_model_and_every_invariant_held() {
    let seed = 18;
    let reference = simulate_core(&config(seed, 48, 20, FaultPlan::none()))
        .unwrap_or_else(|failure| panic!("{failure}"));
    let report = simulate_core(&config(seed, 48, 20, faulty()))
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!("reference: {reference:?}");
    println!("faulty: {report:?}");
    assert_eq!(report.final_model, reference.final_model, "seed {seed}");
    assert!(report.faults.coordinator_restarts > 0);
}

#[test]
#[ignore = "a scale probe, run by hand"]
fn scale_probe() {
    let nodes: usize = std::env::var("SIM_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let rounds: u32 = std::env::var("SIM_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let report = simulate_core(&config(7, nodes, rounds, faulty())).unwrap_or_else(|f| panic!("{f}"));
    println!("{report:?}");
}
