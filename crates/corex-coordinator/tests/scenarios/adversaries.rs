//! The adversary kit against the running coordinator: with 30 % of the nodes cheating in one
//! way, the cheats are caught by audits and hard-rejected (on the ledger too, which removes the
//! cheaters), no honest node is ever rejected, and the job ends within 1 point of a clean run's
//! accuracy (each rejected result is replaced by its replay; only cheats that slipped past
//! before the cheater's first failed audit reach the model).

use crate::common;

use std::time::Duration;

use common::{TestNet, adam, small_job, wait_for_end, wait_for_proven_nodes};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::{JobReport, JobStatus, ResultVerdict};
use corex_core::{AggregationSpec, JobSpec, OptimizerSpec, WorkSpec};
use corex_node::{Adversary, NodeConfig};

const HONEST: u8 = 7;
const CHEATS: u8 = 3;

fn job() -> JobSpec {
    JobSpec {
        name: "adversaries".into(),
        rounds: 40,
        global_batch: 320,
        fragment_samples: 32,
        ..small_job(adam())
    }
}

/// The test's nodes share this machine: no Sybil limits, and (unlike a devnet) only the
/// coordinator replays audits.
fn coordinator_audits() -> CoordinatorConfig {
    CoordinatorConfig {
        shared_hardware: false,
        ..CoordinatorConfig::one_machine()
    }
}

type LedgerViews = Vec<(u8, Option<corex_ledger::AccountView>)>;
type Believed = Vec<(u8, bool)>;

/// Runs the job on 7 honest nodes (seeds 1..=7) and 3 running `adversary` (seeds 101..=103).
/// Returns the status, each node's ledger account, and whether its capability was believed.
async fn run(spec: &JobSpec, adversary: Option<Adversary>) -> (JobStatus, LedgerViews, Believed) {
    let (status, ledger, believed, _) = run_with(coordinator_audits(), spec, adversary).await;
    (status, ledger, believed)
}

/// [`run`] under `config`; also returns the job report.
async fn run_with(
    config: CoordinatorConfig,
    spec: &JobSpec,
    adversary: Option<Adversary>,
) -> (JobStatus, LedgerViews, Believed, JobReport) {
    let mut net = TestNet::start(config).await;
    let collusion = net.dir.path().join("collusion");
    std::fs::create_dir_all(&collusion).unwrap();
    let config = |adversary| NodeConfig {
        adversary,
        collusion_dir: Some(collusion.clone()),
        ..NodeConfig::default()
    };
    for seed in 1..=HONEST {
        net.spawn_node_with(seed, config(None));
    }
    for seed in 101..101 + CHEATS {
        net.spawn_node_with(seed, config(adversary));
    }
    let owner = net.client(250);
    // Every cheater is ready before the job starts, or a short job could finish without it.
    let nodes = usize::from(HONEST + CHEATS);
    wait_for_proven_nodes(&owner, nodes, Duration::from_secs(60)).await;
    let id = owner.submit_job(spec).await.unwrap();
    let status = wait_for_end(&owner, &id, Duration::from_secs(300)).await;
    let report = owner.job_report(&id).await.unwrap();
    // Let the ledger recorder catch up with the last round.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ledger = Vec::new();
    let mut believed = Vec::new();
    let nodes = owner.nodes().await.unwrap();
    for seed in (1..=HONEST).chain(101..101 + CHEATS) {
        let id = corex_core::Keypair::from_secret([seed; 32]).id();
        ledger.push((seed, owner.ledger_account(&id).await.unwrap()));
        let capability = nodes[&id].capability.as_ref();
        believed.push((seed, capability.is_some_and(|c| c.believed)));
    }
    net.shutdown().await;
    (status, ledger, believed, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_adversary_is_caught_and_the_job_ends_as_a_clean_run() {
    let (clean, _, _) = run(&job(), None).await;
    let clean_accuracy = clean.last_test_accuracy.unwrap();
    println!(
        "clean run: accuracy {:.2}%, model {}",
        clean_accuracy * 100.0,
        clean.model.short()
    );
    // Bait-and-switch results are honest, only slow; its fragments here are too light to
    // time, so the behaviour test (tests/scenarios/behaviour.rs) covers it. Skipping a segment
    // needs traced local steps, which tests/scenarios/segment_audits.rs runs; false feedback
    // needs compressed updates (tests/scenarios/compressed_updates.rs).
    for adversary in corex_node::adversary::ALL.into_iter().filter(|adversary| {
        !matches!(
            adversary,
            Adversary::BaitAndSwitch | Adversary::SkipSegment | Adversary::FalseFeedback
        )
    }) {
        let (status, ledger, believed) = run(&job(), Some(adversary)).await;
        let accuracy = status.last_test_accuracy.unwrap();
        let caught: u64 = ledger
            .iter()
            .filter(|(seed, _)| *seed > 100)
            .map(|(_, view)| {
                view.as_ref()
                    .and_then(|v| v.node.as_ref())
                    .map_or(0, |n| u64::from(n.profile.hard_rejects))
            })
            .sum();
        let rejected: u64 = status.nodes.values().map(|c| c.rejected).sum();
        println!(
            "{:<13} accuracy {:.2}%, {rejected} results rejected, {caught} hard rejects on the ledger, model {}",
            adversary.name(),
            accuracy * 100.0,
            if status.model == clean.model {
                "identical to the clean run's"
            } else {
                "differs from the clean run's"
            }
        );
        for (seed, believed) in &believed {
            let honest = *seed <= HONEST || adversary != Adversary::FakeGpu;
            assert_eq!(
                *believed,
                honest,
                "node {seed}: capability believed = {believed} under {}",
                adversary.name()
            );
        }
        if adversary == Adversary::FakeGpu {
            // It computes honestly; what it lies about is its speed, which is not believed
            // and is recorded on the ledger as an abnormal event.
            for (seed, view) in ledger.iter().filter(|(seed, _)| *seed > 100) {
                let profile = &view.as_ref().unwrap().node.as_ref().unwrap().profile;
                assert!(
                    profile.abnormal_events >= 1,
                    "fake GPU {seed} was not penalized"
                );
            }
            continue;
        }
        assert!(rejected >= 1, "{}: no cheat was caught", adversary.name());
        assert!(
            caught >= 1,
            "{}: the ledger recorded no hard reject",
            adversary.name()
        );
        for (seed, view) in &ledger {
            if *seed <= HONEST {
                let profile = &view.as_ref().unwrap().node.as_ref().unwrap().profile;
                assert_eq!(
                    profile.hard_rejects,
                    0,
                    "honest node {seed} was hard-rejected under {}",
                    adversary.name()
                );
            }
        }
        assert!(
            (accuracy - clean_accuracy).abs() <= 0.01,
            "{}: accuracy {accuracy} is more than 1 point from the clean run's {clean_accuracy}",
            adversary.name()
        );
    }
}

/// Robust aggregation rules are a job policy: each one trains the job, and with 30 % of the
/// nodes flipping signs it still ends within 1 point of the clean mean's accuracy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robust_aggregation_policies_train_under_attack() {
    let (clean, _, _) = run(&job(), None).await;
    let clean_accuracy = clean.last_test_accuracy.unwrap();
    for rule in [
        AggregationSpec::TrimmedMean { trim: 0.2 },
        AggregationSpec::Median,
        AggregationSpec::CenteredClipping {
            radius: 2.0,
            iterations: 3,
        },
    ] {
        let mut net = TestNet::start(coordinator_audits()).await;
        for seed in 1..=HONEST {
            net.spawn_node(seed);
        }
        for seed in 101..101 + CHEATS {
            net.spawn_node_with(
                seed,
                NodeConfig {
                    adversary: Some(Adversary::SignFlipped),
                    ..NodeConfig::default()
                },
            );
        }
        let owner = net.client(250);
        let spec = JobSpec {
            aggregation: rule,
            ..job()
        };
        let nodes = usize::from(HONEST + CHEATS);
        wait_for_proven_nodes(&owner, nodes, Duration::from_secs(60)).await;
        let id = owner.submit_job(&spec).await.unwrap();
        let status = wait_for_end(&owner, &id, Duration::from_secs(300)).await;
        net.shutdown().await;
        let accuracy = status.last_test_accuracy.unwrap();
        println!(
            "{rule:?}: accuracy {:.2}% under sign flips",
            accuracy * 100.0
        );
        assert!(
            (accuracy - clean_accuracy).abs() <= 0.01,
            "{rule:?}: {accuracy} against {clean_accuracy}"
        );
    }
}

/// Local-steps fragments (the default job's kind) are replayed the same way: noise, sign flips
/// and scaling in pseudo-gradients are caught from a cheater's first (probation) audit, so
/// every rejected result is replaced by its replay and the model is the clean run's, bit for bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheating_on_local_steps_is_caught_too() {
    let spec = JobSpec {
        name: "adversaries-local-steps".into(),
        rounds: 20,
        work: WorkSpec::LocalSteps {
            steps: 4,
            inner: OptimizerSpec::Sgd {
                learning_rate: 0.05,
                momentum: 0.0,
            },
        },
        optimizer: OptimizerSpec::Sgd {
            learning_rate: 1.0,
            momentum: 0.0,
        },
        ..job()
    };
    let (clean, _, _) = run(&spec, None).await;
    for adversary in [Adversary::Random, Adversary::SignFlipped, Adversary::Scaled] {
        let (status, ledger, _) = run(&spec, Some(adversary)).await;
        let rejected: u64 = status.nodes.values().map(|c| c.rejected).sum();
        println!(
            "local steps, {:<13} {rejected} results rejected, accuracy {:.2}% (clean {:.2}%)",
            adversary.name(),
            status.last_test_accuracy.unwrap() * 100.0,
            clean.last_test_accuracy.unwrap() * 100.0
        );
        assert!(rejected >= 1, "{}: no cheat was caught", adversary.name());
        assert_eq!(
            status.model,
            clean.model,
            "{}: rejected results were not replaced by their replays",
            adversary.name()
        );
        let hard_rejects = |seed: &u8| {
            ledger
                .iter()
                .filter(|(s, _)| s == seed)
                .filter_map(|(_, view)| view.as_ref()?.node.as_ref())
                .map(|n| n.profile.hard_rejects)
                .sum::<u32>()
        };
        assert!((101..101 + CHEATS).map(|s| hard_rejects(&s)).sum::<u32>() >= 1);
        for seed in 1..=HONEST {
            assert_eq!(
                hard_rejects(&seed),
                0,
                "honest node {seed} was hard-rejected"
            );
        }
    }
}

/// Audits replayed by other nodes (the test nodes share one machine, so shared hardware is
/// allowed): nodes take over the replays once proven, honest auditors agree with honest
/// results, cheaters are still caught, a cheating auditor's wrong replay is itself
/// hard-rejected by the coordinator's arbitration, and no honest node is ever rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_audits_catch_cheaters_and_lying_auditors() {
    let config = CoordinatorConfig::one_machine();
    let (clean, _, _, report) = run_with(config.clone(), &job(), None).await;
    let node_audits = report.rounds.iter().map(|r| r.audits.len()).sum::<usize>();
    let by_nodes = report
        .rounds
        .iter()
        .flat_map(|r| &r.results)
        .filter(|r| r.audited_by.is_some_and(|auditor| auditor != r.node))
        .count();
    println!(
        "clean run with node audits: {node_audits} replays by nodes, {by_nodes} results settled by them"
    );
    assert!(by_nodes > 0, "no audit was replayed by a node");
    assert!(
        report
            .rounds
            .iter()
            .flat_map(|r| &r.audits)
            .all(|a| matches!(a.verdict, ResultVerdict::Accepted { .. })),
        "an honest auditor was rejected"
    );
    for adversary in [Adversary::SignFlipped, Adversary::Copy, Adversary::Lazy] {
        let (status, ledger, _, report) = run_with(config.clone(), &job(), Some(adversary)).await;
        let rejected: u64 = status.nodes.values().map(|c| c.rejected).sum();
        let lying_auditors = report
            .rounds
            .iter()
            .flat_map(|r| &r.audits)
            .filter(|a| matches!(a.verdict, ResultVerdict::Rejected { .. }))
            .count();
        println!(
            "node audits, {:<13} {rejected} rejected ({lying_auditors} of them audit replays), accuracy {:.2}% (clean {:.2}%)",
            adversary.name(),
            status.last_test_accuracy.unwrap() * 100.0,
            clean.last_test_accuracy.unwrap() * 100.0
        );
        assert!(rejected >= 1, "{}: no cheat was caught", adversary.name());
        for (seed, view) in ledger.iter().filter(|(seed, _)| *seed <= HONEST) {
            let profile = &view.as_ref().unwrap().node.as_ref().unwrap().profile;
            assert_eq!(
                profile.hard_rejects, 0,
                "honest node {seed} was hard-rejected"
            );
        }
        let honest_ids: Vec<_> = (1..=HONEST)
            .map(|seed| corex_core::Keypair::from_secret([seed; 32]).id())
            .collect();
        assert!(
            report
                .rounds
                .iter()
                .flat_map(|r| &r.audits)
                .filter(|a| honest_ids.contains(&a.auditor))
                .all(|a| matches!(a.verdict, ResultVerdict::Accepted { .. })),
            "{}: an honest auditor was rejected",
            adversary.name()
        );
        assert!(
            (status.last_test_accuracy.unwrap() - clean.last_test_accuracy.unwrap()).abs() <= 0.01,
            "{}: accuracy more than 1 point from the clean run's",
            adversary.name()
        );
    }
}
