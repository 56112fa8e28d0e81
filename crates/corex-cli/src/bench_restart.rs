//! `corex bench restart`: what a coordinator restart costs with a long ledger and a job
//! mid-run.
//!
//! One coordinator and two node agents in this process, over real TLS, run the default job
//! for a few rounds; the coordinator stops with the job running. The ledger is then grown to
//! `blocks` blocks (coordinator records, written in batches), and, in one run: the ledger
//! opened as a restart opens it (from its newest state snapshot, replaying the blocks after
//! it) against the replay from genesis that every open did before snapshots (the same replay
//! `corex ledger audit` does), and the whole coordinator restarted on that directory: the
//! time until it answers the job's status, with the job resumed where it stopped.

use std::time::{Duration, Instant};

use anyhow::Context;
use corex_core::messages::JobState;
use corex_core::{Hash, JobSpec, Keypair};
use corex_ledger::TxBody;
use corex_ledger_store::{LedgerStore, SNAPSHOT_EVERY};
use corex_net::{CoordinatorClient, TlsIdentity};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

pub struct RestartBenchOptions {
    /// Ledger height to grow the chain to.
    pub blocks: u64,
    /// The coordinator's data directory (emptied first).
    pub data_dir: std::path::PathBuf,
}

const COORDINATOR_SEED: u8 = 200;
const OWNER_SEED: u8 = 250;
/// Rounds the job closes before the coordinator stops.
const ROUNDS_BEFORE_STOP: u32 = 5;

pub fn run(options: &RestartBenchOptions) -> anyhow::Result<()> {
    crate::bench_stall::block_on_two_workers(bench(options))
}

/// A coordinator served from `dir` in this process; stop it with the sender.
struct Served {
    url: String,
    pin: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), corex_coordinator::CoordinatorError>>,
}

fn serve(dir: &std::path::Path, listen: &str) -> anyhow::Result<Served> {
    let tls = TlsIdentity::load_or_create(dir)?;
    let pin = tls.fingerprint();
    let listener = std::net::TcpListener::bind(listen)?;
    let url = format!("https://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(corex_coordinator::run(
        listener,
        Keypair::from_secret([COORDINATOR_SEED; 32]),
        tls,
        crate::bench_stall::bench_config(),
        dir.to_path_buf(),
        async move {
            let _ = stopped.await;
        },
    ));
    Ok(Served {
        url,
        pin,
        stop,
        server,
    })
}

async fn bench(options: &RestartBenchOptions) -> anyhow::Result<()> {
    let dir = &options.data_dir;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let spec = JobSpec {
        name: "restart-bench".into(),
        rounds: 400,
        ..JobSpec::digits_h16()
    };
    println!(
        "bench restart: job '{}' stopped after {ROUNDS_BEFORE_STOP} of its {} rounds; ledger grown to {} blocks (a state snapshot every {SNAPSHOT_EVERY})",
        spec.name, spec.rounds, options.blocks
    );

    // A job mid-run, then the coordinator stops.
    let served = serve(dir, "127.0.0.1:0")?;
    let listen = served.url.trim_start_matches("https://").to_owned();
    let owner = CoordinatorClient::new(
        &served.url,
        &served.pin,
        Keypair::from_secret([OWNER_SEED; 32]),
    )?;
    let (stop_nodes, stopped) = watch::channel(false);
    let agents = crate::bench_stall::spawn_agents(&served.url, &served.pin, 2, 1_000, &stopped)?;
    let job = owner.submit_job(&spec).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while owner.job_status(&job).await?.round < ROUNDS_BEFORE_STOP {
        anyhow::ensure!(Instant::now() < deadline, "the job did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_nodes.send(true);
    for agent in agents {
        let _ = agent.await;
    }
    let _ = served.stop.send(());
    let _ = served.server.await;

    let ledger_path = dir.join("ledger.redb");
    let (grown, height) = {
        let path = ledger_path.clone();
        let target = options.blocks;
        tokio::task::spawn_blocking(move || grow_ledger(&path, target)).await??
    };
    let file_mb = std::fs::metadata(&ledger_path)?.len() as f64 / 1e6;
    println!("  ledger: {height} blocks ({grown} added), {file_mb:.0} MB");

    let (opened_ms, replayed_ms) = {
        let path = ledger_path.clone();
        tokio::task::spawn_blocking(move || time_ledger_open(&path)).await??
    };

    let restarted_at = Instant::now();
    let served = serve(dir, &listen)?;
    let owner = CoordinatorClient::new(
        &served.url,
        &served.pin,
        Keypair::from_secret([OWNER_SEED; 32]),
    )?;
    let status = loop {
        match owner.job_status(&job).await {
            Ok(status) => break status,
            Err(error) if error.is_transient() => {
                anyhow::ensure!(
                    restarted_at.elapsed() < Duration::from_secs(600),
                    "the restarted coordinator never answered: {error}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    let restart_ms = restarted_at.elapsed().as_secs_f64() * 1_000.0;
    let _ = served.stop.send(());
    let _ = served.server.await;
    anyhow::ensure!(
        status.state == JobState::Running && status.round >= ROUNDS_BEFORE_STOP,
        "the job did not resume: {status:?}"
    );

    println!("  {:<58} {:>12}", "measure", "time");
    println!(
        "  {:<58} {:>9.0} ms",
        "ledger open from genesis (every open before snapshots)", replayed_ms
    );
    println!(
        "  {:<58} {:>9.0} ms",
        "ledger open from the newest snapshot (a restart now)", opened_ms
    );
    println!(
        "  {:<58} {:>9.0} ms",
        "coordinator restart until it answers, job resumed", restart_ms
    );
    println!(
        "  ledger open: {:.0}× faster; the job resumed at round {} of {}",
        replayed_ms / opened_ms.max(0.001),
        status.round,
        status.rounds
    );
    Ok(())
}

/// Grows the ledger at `path` to `target` blocks of coordinator records, in batches ending
/// at snapshot heights; returns the blocks added and the height.
fn grow_ledger(path: &std::path::Path, target: u64) -> anyhow::Result<(u64, u64)> {
    let key = Keypair::from_secret([COORDINATOR_SEED; 32]);
    let (store, mut chain) =
        LedgerStore::open_or_init(path, || unreachable!("the coordinator made the ledger"))?;
    let start = chain.height();
    let bar = ProgressBar::new(target.saturating_sub(start));
    bar.set_style(ProgressStyle::with_template(
        "  growing the ledger {bar:30} {pos}/{len} blocks ({eta})",
    )?);
    let mut batch = Vec::new();
    while chain.height() < target {
        let height = chain.height() + 1;
        let body = TxBody::CommitAuditChain {
            anchor: Hash::of(&height.to_le_bytes()),
        };
        let (proposal, _) = chain.propose_records(&key, vec![body], chain.timestamp_ms())?;
        let proposal = proposal.context("a coordinator record did not apply")?;
        batch.push(proposal.block);
        chain = proposal.next;
        if chain.height().is_multiple_of(SNAPSHOT_EVERY) || chain.height() == target {
            store.append_batch(&batch, &chain)?;
            bar.inc(batch.len() as u64);
            batch.clear();
        }
    }
    bar.finish_and_clear();
    Ok((chain.height() - start, chain.height()))
}

/// Milliseconds to open the ledger as a restart does, and to replay it from genesis.
fn time_ledger_open(path: &std::path::Path) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let (_, opened) = LedgerStore::open_or_init(path, || unreachable!("the ledger exists"))?;
    let opened_ms = started.elapsed().as_secs_f64() * 1_000.0;
    let started = Instant::now();
    let replayed = corex_ledger_store::audit(path)?;
    let replayed_ms = started.elapsed().as_secs_f64() * 1_000.0;
    anyhow::ensure!(
        replayed.state_root == opened.state().root() && replayed.height == opened.height(),
        "the snapshot's chain is not the replayed one"
    );
    Ok((opened_ms, replayed_ms))
}
