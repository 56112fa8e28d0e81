//! Attack on the emission schedule, against a running coordinator on real sockets: an owner
//! submits many tiny jobs and computes them with its own nodes, hoping that each job's end
//! releases pool (as it did when an epoch settled at every job's end, 0.2 % each time). With
//! epochs in ledger time, the tiny jobs release no more of the pool than one long job running
//! for the same wall time, and no more than the schedule allows for the ledger time that
//! passed.

use crate::common;

use std::time::{Duration, Instant};

use common::{TestNet, adam, small_job};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::JobState;
use corex_core::{Hash, JobSpec, ModelSpec};
use corex_ledger::{LedgerSummary, PPQ, Params};
use corex_net::CoordinatorClient;

/// Tiny jobs in the attack, and how many run at once.
const TINY_JOBS: usize = 1_000;
const IN_FLIGHT: usize = 32;
const OWNER: u8 = 50;
/// One-second epochs (the devnet's half-life), so the run crosses many boundaries.
const EPOCH_MS: u64 = 1_000;

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        genesis: Params {
            epoch_ms: EPOCH_MS,
            ..Params::devnet()
        },
        ..CoordinatorConfig::one_machine()
    }
}

/// One round of one 16-sample fragment on a small model: about the least a job can be.
fn tiny(index: usize, rounds: u32) -> JobSpec {
    JobSpec {
        name: format!("tiny-{index}"),
        model: ModelSpec::mlp(64, vec![8], 10),
        rounds,
        global_batch: 16,
        fragment_samples: 16,
        eval_every: rounds,
        seed: index as u64,
        ..small_job(adam())
    }
}

/// Waits until the ledger has settled every epoch with work (its timer closes the last one).
async fn settled(owner: &CoordinatorClient) -> LedgerSummary {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let summary = owner.ledger_summary().await.unwrap();
        if summary.unsettled_nodes == 0 {
            return summary;
        }
        assert!(Instant::now() < deadline, "the last epoch was not settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn finished(owner: &CoordinatorClient, job: &Hash) -> bool {
    owner.job_status(job).await.unwrap().state != JobState::Running
}

/// Runs `TINY_JOBS` one-round jobs, `IN_FLIGHT` at a time; returns the wall time taken.
async fn tiny_jobs(owner: &CoordinatorClient) -> Duration {
    let started = Instant::now();
    let mut running: Vec<Hash> = Vec::new();
    let mut submitted = 0;
    while submitted < TINY_JOBS || !running.is_empty() {
        while submitted < TINY_JOBS && running.len() < IN_FLIGHT {
            running.push(owner.submit_job(&tiny(submitted, 1)).await.unwrap());
            submitted += 1;
        }
        let mut still = Vec::new();
        for job in running {
            if !finished(owner, &job).await {
                still.push(job);
            }
        }
        running = still;
        // Within the coordinator's per-key request rate.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{submitted} tiny jobs submitted, {} still running",
            running.len()
        );
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tiny_jobs_release_no_more_than_one_long_job_of_the_same_duration() {
    let mut net = TestNet::start(config()).await;
    for seed in 1..=3 {
        net.spawn_node(seed);
    }
    let owner = net.client(OWNER);
    // The nodes register on the ledger as they start; a first job warms everything up.
    let warm = owner.submit_job(&tiny(usize::MAX, 2)).await.unwrap();
    while !finished(&owner, &warm).await {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let params = owner.ledger_summary().await.unwrap().params;
    let release_ppq = params.release_per_epoch_ppq().unwrap();

    // The attack: many tiny self-computed jobs.
    let before = settled(&owner).await;
    let attack_time = tiny_jobs(&owner).await;
    let after = settled(&owner).await;
    let attack_released = before.supply.pool - after.supply.pool;
    let attack_epochs = after.epoch - before.epoch;

    // The honest baseline: one long job computed by the same nodes for as long.
    let long = owner.submit_job(&tiny(0, 100_000)).await.unwrap();
    let started = Instant::now();
    let before_long = owner.ledger_summary().await.unwrap();
    tokio::time::sleep(attack_time).await;
    owner.cancel_job(&long).await.unwrap();
    let long_time = started.elapsed();
    let after_long = settled(&owner).await;
    let long_released = before_long.supply.pool - after_long.supply.pool;

    // What one epoch can release at most: the pool's share at the highest demand factor.
    let most_per_epoch = before.supply.pool * release_ppq / PPQ
        * u128::from(params.demand_factor_max_ppm)
        / 1_000_000;
    println!(
        "{TINY_JOBS} tiny jobs in {:.1} s released {attack_released} base units over {attack_epochs} epochs; \
         one long job in {:.1} s released {long_released}; at most {most_per_epoch} per epoch",
        attack_time.as_secs_f64(),
        long_time.as_secs_f64()
    );
    assert!(attack_released > 0 && long_released > 0, "work was paid");
    // Epochs follow ledger time: no more settled than the seconds that passed (+ the one open
    // at the start), however many jobs ended.
    let elapsed_epochs = attack_time.as_millis() as u64 / EPOCH_MS + 2;
    assert!(
        attack_epochs <= elapsed_epochs,
        "{attack_epochs} epochs settled in {attack_time:?}"
    );
    assert!(attack_released <= u128::from(elapsed_epochs) * most_per_epoch);
    // And no more than the long job, give or take the epochs at either end of the spans.
    assert!(
        attack_released <= long_released + 2 * most_per_epoch,
        "tiny jobs released {attack_released}, the long job {long_released}"
    );
    net.shutdown().await;
}
