//! `corex bench stall`: does a heavy round close stall everyone else?
//!
//! One coordinator and node agents in this process, over real TLS. Idle: a light job (the
//! digits MLP) runs alone. Loaded: a heavy job runs first, and the same light job beside it:
//! every heavy close replays audited CNN fragments of 2,048 samples × 16 local steps (the
//! coordinator replays every audit here: its nodes share one machine, so none may audit
//! another) and evaluates the CNN on 10,000 held-out images, seconds of compute each; nodes
//! work on the light job while the heavy one closes. Measured in both: how long the
//! coordinator takes to answer the nodes' lease requests (they ask without waiting for work,
//! so each answer is immediate) and to take their results (each node times both), and to
//! answer the owner's status requests (a probe every 25 ms). The target: p99 under load
//! within 2× of idle, since no request waits on ML work it did not ask for.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::JobState;
use corex_core::{
    CnnSpec, DatasetSource, DatasetSpec, FeatureScaling, Hash, JobSpec, Keypair, ModelSpec,
};
use corex_net::{CoordinatorClient, TlsIdentity};
use corex_node::{NodeAgent, NodeConfig, NodeRunSummary};
use tokio::sync::watch;

use crate::serve::configure_threads;

pub struct StallBenchOptions {
    pub nodes: u32,
    pub heavy_rounds: u32,
    /// The coordinator's data directory (emptied first).
    pub data_dir: std::path::PathBuf,
}

/// Latencies of one phase, in microseconds.
struct Phase {
    leases: u64,
    lease_p50: u32,
    lease_p99: u32,
    results: u64,
    result_p50: u32,
    result_p99: u32,
    result_max: u32,
    status: Vec<u32>,
    wall_s: f64,
}

pub fn run(options: &StallBenchOptions) -> anyhow::Result<()> {
    block_on_two_workers(bench(options))
}

/// Runs `bench` on a two-worker runtime, ML at one thread per computation: the in-process
/// coordinator-and-nodes benches' setting.
pub(crate) fn block_on_two_workers<T>(
    bench: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    configure_threads(1)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench)
}

async fn bench(options: &StallBenchOptions) -> anyhow::Result<()> {
    let dir = &options.data_dir;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let tls = TlsIdentity::load_or_create(dir)?;
    let pin = tls.fingerprint();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("https://{}", listener.local_addr()?);
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(corex_coordinator::run(
        listener,
        Keypair::from_secret([200; 32]),
        tls,
        coordinator_replays(),
        dir.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let owner = CoordinatorClient::new(&url, &pin, Keypair::from_secret([250; 32]))?;
    let images = corex_ml::Dataset::synthetic_images(20_000, 28, 3)?;
    let uploaded = owner
        .upload_dataset(&images.to_bytes())
        .await
        .context("uploading the heavy job's images")?;
    let heavy = heavy_job(uploaded.dataset, images.class_count(), options.heavy_rounds);
    println!(
        "bench stall: {} nodes in this process; light job '{}' ({} rounds); heavy job: at each of its {} closes the coordinator replays audited CNN fragments (2,048 samples × 16 local steps) and evaluates the CNN on 10,000 held-out images",
        options.nodes,
        light_job("light").name,
        light_job("light").rounds,
        heavy.rounds
    );
    let heavy_replay = heavy_replay_seconds(&heavy, &images)?;
    println!("  one heavy fragment's replay takes {heavy_replay:.2} s on this machine");

    let idle = phase(&url, &pin, &owner, options.nodes, None).await?;
    let loaded = phase(&url, &pin, &owner, options.nodes, Some(&heavy)).await?;
    let _ = stop_server.send(());
    let _ = server.await;

    println!(
        "  {:<8} {:>7} {:>10} {:>10} {:>8} {:>11} {:>11} {:>11} {:>11} {:>11} {:>8}",
        "phase",
        "leases",
        "lease p50",
        "lease p99",
        "results",
        "result p50",
        "result p99",
        "result max",
        "status p50",
        "status p99",
        "wall"
    );
    let ms = |micros: u32| f64::from(micros) / 1_000.0;
    for (name, phase) in [("idle", &idle), ("loaded", &loaded)] {
        println!(
            "  {:<8} {:>7} {:>7.1} ms {:>7.1} ms {:>8} {:>8.1} ms {:>8.1} ms {:>8.1} ms {:>8.1} ms {:>8.1} ms {:>6.1} s",
            name,
            phase.leases,
            ms(phase.lease_p50),
            ms(phase.lease_p99),
            phase.results,
            ms(phase.result_p50),
            ms(phase.result_p99),
            ms(phase.result_max),
            ms(percentile(&phase.status, 50)),
            ms(percentile(&phase.status, 99)),
            phase.wall_s
        );
    }
    let ratio = |loaded: u32, idle: u32| f64::from(loaded) / f64::from(idle.max(1));
    println!(
        "  p99 loaded / idle: leases {:.2}×, results {:.2}×, status {:.2}× (target ≤ 2×)",
        ratio(loaded.lease_p99, idle.lease_p99),
        ratio(loaded.result_p99, idle.result_p99),
        ratio(percentile(&loaded.status, 99), percentile(&idle.status, 99))
    );
    Ok(())
}

/// Runs the light job (and first the heavy one, when given) on fresh node agents; the
/// latencies the nodes and a status probe measured.
async fn phase(
    url: &str,
    pin: &str,
    owner: &CoordinatorClient,
    nodes: u32,
    heavy: Option<&JobSpec>,
) -> anyhow::Result<Phase> {
    let started = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let agents = spawn_agents(url, pin, nodes, 0, &stopped)?;
    let heavy_job = match heavy {
        Some(spec) => Some(owner.submit_job(spec).await?),
        None => None,
    };
    let name = if heavy.is_some() {
        "light-beside-heavy"
    } else {
        "light-alone"
    };
    let light = owner.submit_job(&light_job(name)).await?;
    let status = Arc::new(Mutex::new(Vec::new()));
    let probe = tokio::spawn(probe_status(owner.clone(), light, status.clone()));
    for job in heavy_job.iter().chain(std::iter::once(&light)) {
        wait_for_end(owner, job).await?;
    }
    probe.abort();
    let _ = stop.send(true);
    let mut summaries: Vec<NodeRunSummary> = Vec::new();
    for agent in agents {
        summaries.push(agent.await??);
    }
    let results = summaries.iter().map(|s| s.result_latency.count).sum();
    let leases = summaries.iter().map(|s| s.lease_latency.count).sum();
    let worst = |pick: fn(&NodeRunSummary) -> u32| summaries.iter().map(pick).max().unwrap_or(0);
    let status = std::mem::take(&mut *status.lock().map_err(|_| anyhow::anyhow!("probe"))?);
    Ok(Phase {
        leases,
        lease_p50: worst(|s| s.lease_latency.p50_us),
        lease_p99: worst(|s| s.lease_latency.p99_us),
        results,
        // Per node percentiles; the worst node's are reported.
        result_p50: worst(|s| s.result_latency.p50_us),
        result_p99: worst(|s| s.result_latency.p99_us),
        result_max: worst(|s| s.result_latency.max_us),
        status,
        wall_s: started.elapsed().as_secs_f64(),
    })
}

/// Node agents for the keys of seeds `1..=nodes`, one compute thread each, in this process,
/// their lease requests waiting up to `lease_wait_ms` for work; they stop when `stopped` turns
/// true.
pub(crate) fn spawn_agents(
    url: &str,
    pin: &str,
    nodes: u32,
    lease_wait_ms: u64,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<AgentTask>> {
    (1..=nodes)
        .map(|seed| {
            let key = Keypair::from_secret([seed as u8; 32]);
            let client = CoordinatorClient::new(url, pin, key.clone())?;
            let config = NodeConfig {
                compute_threads: 1,
                lease_wait_ms,
                ..NodeConfig::default()
            };
            Ok(tokio::spawn(
                NodeAgent::new(client, key, config).run(stopped.clone()),
            ))
        })
        .collect()
}

/// An in-process node agent's task.
pub(crate) type AgentTask = tokio::task::JoinHandle<Result<NodeRunSummary, corex_node::NodeError>>;

/// Times the owner's status request for `job` every 25 ms.
async fn probe_status(owner: CoordinatorClient, job: Hash, into: Arc<Mutex<Vec<u32>>>) {
    loop {
        let asked = Instant::now();
        if owner.job_status(&job).await.is_ok()
            && let Ok(mut latencies) = into.lock()
        {
            latencies.push(u32::try_from(asked.elapsed().as_micros()).unwrap_or(u32::MAX));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_for_end(owner: &CoordinatorClient, job: &Hash) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let status = owner.job_status(job).await?;
        match status.state {
            JobState::Running => {}
            JobState::Finished => return Ok(()),
            state => anyhow::bail!("job {} ended {state:?}", job.short()),
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "job {} did not finish",
            job.short()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One machine's coordinator, with per-key request rates lifted: the light job's nodes send
/// hundreds of requests a second, and a 429 answered after the default 200 per second would
/// show up here as the client's 200 ms backoff, not as waiting on the coordinator.
pub(crate) fn bench_config() -> CoordinatorConfig {
    let mut config = CoordinatorConfig::one_machine();
    config.transport.requests_per_key_per_s = 100_000;
    config.transport.request_burst_per_key = 100_000;
    config
}

/// [`bench_config`] with production's audit rule: no node audits another on the same machine,
/// so the coordinator replays every audit itself.
fn coordinator_replays() -> CoordinatorConfig {
    CoordinatorConfig {
        shared_hardware: false,
        ..bench_config()
    }
}

/// Wall seconds one of `heavy`'s fragments takes to replay here (what each of its audits
/// costs the coordinator).
fn heavy_replay_seconds(heavy: &JobSpec, images: &corex_ml::Dataset) -> anyhow::Result<f64> {
    let parameters = corex_ml::init_parameters(&heavy.model, heavy.seed);
    let indices: Vec<u32> = (0..heavy.fragment_samples).collect();
    let started = Instant::now();
    corex_ml::run_fragment(
        &corex_ml::Backend::cpu(),
        &heavy.work,
        &heavy.model,
        &parameters,
        images,
        &indices,
    )?;
    Ok(started.elapsed().as_secs_f64())
}

/// Nearest-rank percentile of `values` (0 when empty).
fn percentile(values: &[u32], percent: usize) -> u32 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    corex_node::nearest_rank(&sorted, percent)
}

/// The light job: the digits MLP, 1,500 rounds of 4 fragments.
fn light_job(name: &str) -> JobSpec {
    JobSpec {
        name: name.into(),
        model: ModelSpec::mlp(64, vec![32], 10),
        rounds: 1_500,
        global_batch: 256,
        fragment_samples: 64,
        eval_every: 10,
        ..JobSpec::digits_h16()
    }
}

/// The heavy job: a small CNN on 20,000 synthetic images, half of them held out, two
/// fragments of 2,048 samples × 16 local steps a round, evaluated at every close.
fn heavy_job(dataset: Hash, classes: usize, rounds: u32) -> JobSpec {
    JobSpec {
        name: "heavy-close".into(),
        model: ModelSpec::Cnn(CnnSpec {
            channels: 1,
            height: 28,
            width: 28,
            conv: vec![16, 32],
            kernel: 3,
            hidden: vec![32],
            classes,
        }),
        dataset: DatasetSpec {
            source: DatasetSource::Uploaded { dataset },
            test_fraction: 0.5,
            split_seed: 1,
            scaling: FeatureScaling::None,
        },
        rounds,
        global_batch: 4_096,
        fragment_samples: 2_048,
        eval_every: 1,
        ..JobSpec::digits_h16()
    }
}
