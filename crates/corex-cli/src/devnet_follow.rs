//! Following a devnet's jobs from the outside, as an operator would: waiting for the nodes to
//! register, following a job to its end behind a progress bar (a long poll answered as each
//! round closes), a warm-up job run first, and the ledger settling the last epoch.

use std::time::{Duration, Instant};

use corex_core::messages::{JobReport, JobState};
use corex_core::{Hash, JobSpec};
use corex_net::CoordinatorClient;
use corex_verify::AuditPolicy;
use indicatif::{ProgressBar, ProgressStyle};

use crate::devnet::{DevnetOptions, WarmUp};
use crate::processes::Children;

/// Waits until all `nodes` have registered and answered their capability challenge, so that
/// the job's first round is already sized to measured speeds; after 60 s it goes on with the
/// nodes it has, saying so.
pub(crate) async fn wait_for_nodes(
    client: &CoordinatorClient,
    nodes: u32,
    children: &mut Children,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = client
            .nodes()
            .await?
            .values()
            .filter(|info| info.capability.is_some())
            .count();
        if ready >= nodes as usize {
            return Ok(());
        }
        if let Some(name) = children.exited() {
            anyhow::bail!(
                "{name} exited during start-up; see its log in the devnet's logs/ folder"
            );
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                ready,
                nodes,
                "not every node proved its capability within 60 s; submitting the job anyway"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the job until it ends, drawing the progress bar; fails on timeout or a dead child.
pub(crate) async fn follow(
    client: &CoordinatorClient,
    job: &Hash,
    spec: &JobSpec,
    options: &DevnetOptions,
    children: &mut Children,
) -> anyhow::Result<JobReport> {
    let bar = if options.show_progress {
        ProgressBar::new(u64::from(spec.rounds))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} round {pos}/{len} [{bar:30}] {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let deadline = Instant::now() + options.timeout;
    let mut status = client.job_status(job).await?;
    loop {
        bar.set_position(u64::from(status.round));
        bar.set_message(format!(
            "loss {} · {} · {} nodes",
            status
                .last_train_loss
                .map_or("-".into(), |loss| format!("{loss:.4}")),
            crate::quality::describe(
                &spec.model,
                status.last_test_loss,
                status.last_test_accuracy
            ),
            status.nodes.len()
        ));
        if status.state != JobState::Running {
            bar.finish();
            return Ok(client.job_report(job).await?);
        }
        if let Some(name) = children.exited() {
            bar.abandon();
            anyhow::bail!("{name} exited while the job was running; see the devnet's logs/ folder");
        }
        if Instant::now() >= deadline {
            bar.abandon();
            anyhow::bail!(
                "the job did not finish within {} s",
                options.timeout.as_secs()
            );
        }
        // A long poll: answered when a round closes, or after a second to look at the nodes.
        status = client.watch_job(job, status.round, FOLLOW_WAIT_MS).await?;
    }
}

/// How long a follower's status request may wait for the next round before it checks that
/// the devnet's processes still run.
const FOLLOW_WAIT_MS: u64 = 1_000;

/// How many results each node returns in the warm-up, as a multiple of what an honest node
/// needs in expectation for its audit rate to reach the floor: the waits are geometric, so the
/// expectation alone leaves many nodes above it.
const WARM_UP_RESULTS_OVER_EXPECTED: f64 = 1.5;

/// Runs `spec` with another seed (the same seed would give the same results, which the
/// coordinator flags as copies of judged bytes) to the end on the devnet, for enough rounds
/// that its nodes' audit rates reach the floor, and notes where its processes' CPU stood then.
pub(crate) async fn warm_up(
    client: &CoordinatorClient,
    spec: &JobSpec,
    options: &DevnetOptions,
    children: &mut Children,
    started: Instant,
) -> anyhow::Result<WarmUp> {
    let spec = &JobSpec {
        seed: spec.seed.wrapping_add(1),
        rounds: warm_up_rounds(spec, options.nodes),
        ..spec.clone()
    };
    let job = client.submit_job(spec).await?;
    tracing::info!(job = %job.short(), "warm-up job submitted");
    let report = follow(client, &job, spec, options, children).await?;
    anyhow::ensure!(
        report.status.state == JobState::Finished,
        "the warm-up job did not finish: {:?}",
        report.status.state
    );
    Ok(WarmUp {
        job,
        wall_s: started.elapsed().as_secs_f64(),
        own_cpu_s: crate::cpu_time::cpu_seconds()?.0,
        process_cpu_s: children.cpu_seconds(),
    })
}

/// Rounds of `spec` that give each of `nodes` nodes enough results to be proven (at least the
/// job's own rounds, at most what a job may have).
fn warm_up_rounds(spec: &JobSpec, nodes: u32) -> u32 {
    let per_node =
        AuditPolicy::default().expected_results_to_lowest_rate() * WARM_UP_RESULTS_OVER_EXPECTED;
    let results = (per_node.ceil() as u32).saturating_mul(nodes.max(1));
    results
        .div_ceil(spec.fragments_per_round())
        .clamp(spec.rounds, corex_core::job::MAX_ROUNDS.max(spec.rounds))
}

/// Waits until the ledger has settled the epoch of the job's last rounds (the coordinator's
/// timer closes it once ledger time passes its end), so the summary shows all work paid.
pub(crate) async fn wait_for_settlement(client: &CoordinatorClient) -> anyhow::Result<()> {
    let summary = client.ledger_summary().await?;
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let deadline = Instant::now()
        + Duration::from_millis(summary.epoch_ends_ms.saturating_sub(wall_ms) + 10_000);
    let mut unsettled = summary.unsettled_nodes;
    while unsettled > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the ledger did not settle the job's last epoch (it ended at {} ms)",
            summary.epoch_ends_ms
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        unsettled = client.ledger_summary().await?.unsettled_nodes;
    }
    Ok(())
}
