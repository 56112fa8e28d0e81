//! `corex coordinator` and `corex node`: long-running processes that stop on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use corex_coordinator::CoordinatorConfig;
use corex_net::{CoordinatorClient, TlsIdentity, load_or_create_keypair};
use corex_node::{NodeAgent, NodeConfig};

use crate::endpoint::Endpoint;
pub use crate::node_bench::{BackendChoice, node_bench};

/// Under a node's data directory: the verified chunks of downloads in progress.
const DOWNLOADS_DIR: &str = "downloads";
/// Under a node's data directory: the chunks of shared datasets it fetched, kept by hash.
const CHUNK_CACHE_DIR: &str = "chunks";

pub async fn coordinator(
    listen: SocketAddr,
    data_dir: std::path::PathBuf,
    config: CoordinatorConfig,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let identity = load_or_create_keypair(&data_dir.join("coordinator.key"))?;
    let tls = TlsIdentity::load_or_create(&data_dir)?;
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    let endpoint = Endpoint {
        url: format!("https://{address}"),
        fingerprint: tls.fingerprint(),
        coordinator: identity.id().to_hex(),
    };
    println!(
        "coordinator {} listening on {}",
        identity.id(),
        endpoint.url
    );
    println!("certificate fingerprint (pin): {}", endpoint.fingerprint);
    if config.shared_hardware {
        println!(
            "one-machine network (--allow-shared-hardware): no limit on nodes per device fingerprint or endpoint, and nodes with the same fingerprint may audit each other"
        );
    }
    endpoint.write(&data_dir)?;
    corex_coordinator::run(listener, identity, tls, config, data_dir, shutdown_signal()).await?;
    Ok(())
}

/// How `corex node` runs its agent, from its command line.
pub struct NodeOptions {
    pub threads: u32,
    pub backend: BackendChoice,
    pub slowdown: u32,
    pub adversary: Option<corex_node::Adversary>,
    pub collusion_dir: Option<PathBuf>,
    /// The local data path (and its label column) of a federated data holder.
    pub local_data: Option<(PathBuf, Option<String>)>,
    /// Which federated jobs it agrees to compute as a data holder.
    pub holder: corex_node::HolderPolicy,
    /// Where to serve the node's Prometheus metrics (plain HTTP), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

pub async fn node(
    coordinator: &str,
    pin: &str,
    data_dir: &Path,
    NodeOptions {
        threads,
        backend,
        slowdown,
        adversary,
        collusion_dir,
        local_data,
        holder,
        metrics_listen,
    }: NodeOptions,
) -> anyhow::Result<()> {
    let key = load_or_create_keypair(&data_dir.join("node.key"))?;
    println!("node {} joining {coordinator}", key.id());
    let local_data = match local_data {
        Some((path, label_column)) => {
            let dataset = corex_ml::Dataset::from_csv(&path, label_column.as_deref())
                .with_context(|| format!("loading local data {}", path.display()))?;
            println!(
                "data holder: {} local samples from {} (they stay on this machine)",
                dataset.len(),
                path.display()
            );
            Some(std::sync::Arc::new(dataset))
        }
        None => None,
    };
    // Everything the node writes stays in its data directory: its key, partial downloads and
    // the chunks of shared datasets it fetched.
    let client = CoordinatorClient::new(coordinator, pin, key.clone())?
        .with_download_staging(data_dir.join(DOWNLOADS_DIR))
        .with_chunk_cache(data_dir.join(CHUNK_CACHE_DIR));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    if let Some(adversary) = adversary {
        tracing::warn!(
            adversary = adversary.name(),
            "this node CHEATS (adversary kit)"
        );
    }
    let backend = backend.open(threads)?;
    let telemetry = std::sync::Arc::new(corex_node::NodeTelemetry::new());
    if let Some(listen) = metrics_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the metrics address {listen}"))?;
        println!("metrics at http://{}/metrics", listener.local_addr()?);
        let serving =
            corex_node::telemetry::serve_metrics(listener, telemetry.clone(), stopped.clone());
        tokio::spawn(async move {
            if let Err(error) = serving.await {
                tracing::error!(%error, %listen, "node metrics could not be served");
            }
        });
    }
    let status = tokio::spawn(show_status(telemetry.clone(), stopped.clone()));
    let config = NodeConfig {
        telemetry,
        compute_threads: threads,
        backend,
        slowdown: slowdown.max(1),
        adversary,
        collusion_dir,
        local_data,
        holder,
        ..NodeConfig::default()
    };
    let summary = NodeAgent::new(client, key, config).run(stopped).await?;
    let _ = status.await;
    let traffic = summary.dataset_traffic;
    let latency = summary.result_latency;
    println!(
        "node stopped after {} fragments (results taken in {:.1} ms at p50, {:.1} ms at p99); shared datasets: {:.2} MB fetched in {} chunks, {} chunks from the cache",
        summary.fragments,
        f64::from(latency.p50_us) / 1e3,
        f64::from(latency.p99_us) / 1e3,
        traffic.network_bytes as f64 / 1e6,
        traffic.network_chunks,
        traffic.cached_chunks
    );
    Ok(())
}

/// The node's live status line (on a terminal; hidden otherwise), redrawn twice a second
/// until `stop` turns true.
async fn show_status(
    telemetry: std::sync::Arc<corex_node::NodeTelemetry>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let line = indicatif::ProgressBar::new_spinner();
    loop {
        line.set_message(telemetry.status_line().render());
        line.tick();
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
    }
    line.finish_and_clear();
}

/// Sizes the global compute pool; 0 means one thread per core. Returns the count in use.
pub fn configure_threads(threads: u32) -> anyhow::Result<u32> {
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    } else {
        threads
    };
    // ML runs at the lowest priority, under whatever serves requests on the same machine.
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads as usize)
        .start_handler(|_| corex_ml::lower_current_thread_priority())
        .build_global()
        .context("sizing the compute thread pool")?;
    Ok(threads)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
