//! The coordinator process shell: the TLS listener, the shared state behind a lock, the lease
//! sweeper, and persistence of finished jobs (report and weights) into the data directory.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum_server::tls_rustls::RustlsConfig;
use corex_core::{Hash, Keypair};
use corex_net::TlsIdentity;
use tokio::sync::Notify;

use crate::api::router;
use crate::config::CoordinatorConfig;
use crate::engine::Coordinator;
use crate::error::CoordinatorError;

/// Monotonic milliseconds for leases, wall-clock seconds for signature freshness.
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn millis(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn unix_seconds(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or_default()
    }
}

pub struct Shared {
    engine: Mutex<Coordinator>,
    pub config: CoordinatorConfig,
    /// Woken when fragments may have become available (new job, new round, expired lease).
    pub work_available: Notify,
    pub clock: Clock,
    /// Where finished jobs' reports and weights are written.
    pub data_dir: PathBuf,
}

impl Shared {
    /// The engine, even if a handler panicked while holding it (its state is checked-before-
    /// write, so a poisoned lock holds consistent data).
    pub fn engine(&self) -> MutexGuard<'_, Coordinator> {
        self.engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `jobs/<id>/report.json` and `jobs/<id>/weights.safetensors`.
    pub async fn persist_finished_job(&self, job: &Hash) -> Result<(), CoordinatorError> {
        let (report, weights) = {
            let engine = self.engine();
            let report = engine.report(job)?;
            let weights = engine
                .job(job)?
                .weights
                .and_then(|hash| engine.blobs.get(&hash).ok().map(|blob| blob.bytes.clone()));
            (report, weights)
        };
        let dir = self.data_dir.join("jobs").join(job.to_hex());
        let storage = |error: std::io::Error| CoordinatorError::Storage(error.to_string());
        tokio::fs::create_dir_all(&dir).await.map_err(storage)?;
        let report_json = serde_json::to_vec_pretty(&report)
            .map_err(|error| CoordinatorError::Storage(error.to_string()))?;
        tokio::fs::write(dir.join("report.json"), report_json)
            .await
            .map_err(storage)?;
        if let Some(weights) = weights {
            tokio::fs::write(dir.join("weights.safetensors"), &weights)
                .await
                .map_err(storage)?;
        }
        tracing::info!(job = %job.short(), dir = %dir.display(), "job finished; report and weights written");
        Ok(())
    }
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn run(
    listener: std::net::TcpListener,
    identity: Keypair,
    tls: TlsIdentity,
    config: CoordinatorConfig,
    data_dir: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    config.validate()?;
    let shared = Arc::new(Shared {
        engine: Mutex::new(Coordinator::new(identity, config.clone())),
        config,
        work_available: Notify::new(),
        clock: Clock {
            start: Instant::now(),
        },
        data_dir,
    });
    let tls_config = RustlsConfig::from_config(Arc::new(
        tls.server_config()
            .map_err(|error| CoordinatorError::Storage(error.to_string()))?,
    ));
    listener
        .set_nonblocking(true)
        .map_err(|error| CoordinatorError::Storage(error.to_string()))?;
    let handle = axum_server::Handle::new();
    let sweeper = tokio::spawn(sweep_leases(shared.clone()));
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(2)));
    });
    let served = axum_server::from_tcp_rustls(listener, tls_config)
        .map_err(|error| CoordinatorError::Storage(error.to_string()))?
        .handle(handle)
        .serve(router(shared).into_make_service())
        .await;
    sweeper.abort();
    served.map_err(|error| CoordinatorError::Storage(error.to_string()))
}

/// Returns overdue leases to the pool and wakes waiting lease requests.
async fn sweep_leases(shared: Arc<Shared>) {
    let mut interval =
        tokio::time::interval(Duration::from_millis(shared.config.sweep_interval_ms));
    loop {
        interval.tick().await;
        let freed = shared.engine().expire(shared.clock.millis());
        if freed > 0 {
            tracing::info!(freed, "leases expired; fragments re-issued");
            shared.work_available.notify_waiters();
        }
    }
}
