//! `corex status`: the network at a glance, from a running coordinator's signed read API: the
//! ledger (height, epoch, supply, the last settlement), the nodes by backend with their
//! verified speed, and the jobs the key may read. A key file that does not exist is not
//! made: the reads are then signed with a throwaway key (what any stranger sees).

use std::collections::BTreeMap;
use std::path::Path;

use corex_core::Keypair;
use corex_core::messages::JobState;
use corex_ledger::format_cxt;
use corex_net::{CoordinatorClient, load_keypair};

/// A node counts as online when the coordinator heard from it within this long.
const ONLINE_MS: u64 = 60_000;

pub async fn run(coordinator: &str, pin: &str, key: &Path) -> anyhow::Result<()> {
    let key = if key.exists() {
        load_keypair(key)?
    } else {
        Keypair::from_secret(corex_net::random_bytes::<32>()?)
    };
    let client = CoordinatorClient::new(coordinator, pin, key)?;
    let (ledger, nodes, jobs) =
        tokio::try_join!(client.ledger_summary(), client.nodes(), client.jobs())?;
    println!(
        "coordinator {coordinator} · chain {} · height {} · epoch {}",
        ledger.chain_id, ledger.height, ledger.epoch
    );
    let supply = &ledger.supply;
    println!(
        "supply {} CXT: pool {}, balances {}, stakes {}, locked rewards {}, fund {}",
        format_cxt(supply.total()),
        format_cxt(supply.pool),
        format_cxt(supply.balances),
        format_cxt(supply.stakes),
        format_cxt(supply.locked_rewards),
        format_cxt(supply.fund)
    );
    if let Some(settled) = &ledger.last_settlement {
        println!(
            "last settlement: epoch {} released {} CXT to {} nodes",
            settled.epoch,
            format_cxt(settled.release),
            settled.payouts.len()
        );
    }
    let newest_seen = nodes
        .values()
        .map(|info| info.last_seen_ms)
        .max()
        .unwrap_or(0);
    let mut by_backend: BTreeMap<&str, (usize, usize, u64)> = BTreeMap::new();
    for info in nodes.values() {
        let entry = by_backend.entry(info.device.backend.name()).or_default();
        entry.0 += 1;
        if newest_seen.saturating_sub(info.last_seen_ms) <= ONLINE_MS {
            entry.1 += 1;
        }
        if let Some(capability) = info.capability.as_ref().filter(|c| c.believed) {
            entry.2 += capability.demonstrated_mflops;
        }
    }
    println!("{} nodes registered", nodes.len());
    for (backend, (registered, recent, mflops)) in &by_backend {
        println!(
            "  {backend:<5} {registered} registered, {recent} seen in the last minute, {:.1} GFLOP/s verified",
            *mflops as f64 / 1e3
        );
    }
    println!("{} jobs readable with this key", jobs.len());
    for job in &jobs {
        let state = match &job.state {
            JobState::Running => "running".to_owned(),
            JobState::Finished => "finished".to_owned(),
            JobState::Failed { reason } => format!("failed: {reason}"),
            JobState::Cancelled => "cancelled".to_owned(),
        };
        let metric = match (job.last_test_accuracy, job.last_test_loss) {
            (Some(accuracy), _) => format!("{:.2} %", accuracy * 100.0),
            (None, Some(loss)) => format!("{loss:.3} nats"),
            _ => "—".into(),
        };
        println!(
            "  {} {:<24} round {:>5}/{:<5} {metric:<10} {state}",
            job.job.short(),
            job.name,
            job.round,
            job.rounds
        );
    }
    println!("explorer: {coordinator}/explorer · metrics: {coordinator}/metrics");
    Ok(())
}
