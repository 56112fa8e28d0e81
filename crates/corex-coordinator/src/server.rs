//! The coordinator process shell: the TLS listener, the shared state behind a lock, the lease
//! sweeper, the ledger recorder, and persistence of finished jobs (report, and weights or
//! outputs) into the data directory.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use corex_core::{Hash, Keypair, NodeId};
use corex_net::TlsIdentity;
use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::api::router;
use crate::config::CoordinatorConfig;
use crate::durability;
use crate::engine::{CHALLENGE_SIZE, Coordinator};
use crate::error::CoordinatorError;
use crate::job_run::Progress;
use crate::journal::{Journal, record};
use crate::lease_order::LeaseQueue;
use crate::ledger::{ClosedRound, LedgerFeed, LedgerRecord, LedgerService};
use crate::nonce::NonceCache;
use crate::store::{StateStore, write_atomically};
use crate::transport::{ConnectionLimiter, KeyRateLimiter};
use crate::verification::Verifier;

/// Monotonic milliseconds for leases, wall-clock seconds for signature freshness.
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn millis(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn unix_seconds(&self) -> u64 {
        self.unix_millis() / 1_000
    }

    /// Wall-clock milliseconds, for ledger block timestamps.
    pub fn unix_millis(&self) -> u64 {
        unix_millis()
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

pub struct Shared {
    engine: Mutex<Coordinator>,
    /// Nonces of admitted requests: checked on every request, apart from the engine so that
    /// authentication never waits on it.
    pub nonces: Mutex<NonceCache>,
    /// Requests per signing key over time.
    pub key_rates: KeyRateLimiter,
    pub config: CoordinatorConfig,
    /// Woken when fragments may have become available (new job, new round, expired lease).
    pub work_available: Notify,
    /// The lease requests waiting for work now, in priority order.
    pub lease_queue: LeaseQueue,
    pub clock: Clock,
    /// Where finished jobs' reports and weights or outputs are written.
    pub data_dir: PathBuf,
    /// The coordinator's own durable state (`coordinator.redb`).
    pub store: StateStore,
    pub ledger: Arc<Mutex<LedgerService>>,
    /// Closed rounds and audit seed events on their way to the ledger, in the order they
    /// happened.
    closed_rounds: Mutex<Option<LedgerFeed>>,
}

impl Shared {
    /// The engine, even if a handler panicked while holding it (its state is checked-before-
    /// write, so a poisoned lock holds consistent data).
    /// Queues a closed round for the ledger, after the audit seed events not queued yet. Call
    /// it while holding the engine lock (`engine` is that guard), so that rounds reach the
    /// ledger in the order they closed and reveals in the order they were made.
    pub fn send_closed_round(&self, engine: &Coordinator, closed: ClosedRound) {
        let mut feed = lock(&self.closed_rounds);
        if let Some(feed) = feed.as_mut()
            && !feed.send_round(&engine.verifier, closed)
        {
            tracing::warn!("the ledger recorder has stopped; a round was not recorded");
        }
    }

    /// Sends a round that `progress` closed to the ledger recorder, or starts the close of a
    /// complete round off the lock ([`close_round`]); a job that moved (a round closed, the
    /// job ended) has its checkpoint taken here and stored behind the ledger
    /// ([`store_checkpoint`]). Call it under the engine lock (`engine` is that guard), right
    /// after the step that made the progress: whatever happens to the request that caused it,
    /// the close runs and the checkpoint is stored.
    pub fn record_progress(
        self: &Arc<Self>,
        engine: &mut Coordinator,
        job: &Hash,
        progress: Progress,
    ) -> Result<(), CoordinatorError> {
        if progress == Progress::Closing {
            tokio::spawn(close_round(self.clone(), *job));
            return Ok(());
        }
        let mut recorded_round = None;
        let mut standing = Vec::new();
        if matches!(progress, Progress::RoundClosed | Progress::JobFinished)
            && let Some(record) = engine.job(job)?.history().last()
        {
            recorded_round = Some(record.round);
            // The audit records of the round's nodes moved with its verdicts.
            let nodes: std::collections::BTreeSet<NodeId> = record
                .results
                .iter()
                .map(|result| result.node)
                .chain(record.audits.iter().map(|audit| audit.auditor))
                .collect();
            standing = engine.standing_of(nodes);
            let closed = ClosedRound {
                job: *job,
                record: record.clone(),
            };
            self.send_closed_round(engine, closed);
        }
        if matches!(
            progress,
            Progress::RoundClosed | Progress::JobFinished | Progress::JobFailed
        ) {
            let (checkpoint, saved) = engine.take_checkpoint(job, self.clock.millis())?;
            tokio::spawn(durability::store_progress(
                self.clone(),
                durability::Checkpoint {
                    job: checkpoint,
                    saved,
                    standing,
                },
                recorded_round,
            ));
        }
        Ok(())
    }

    /// After the engine lock is released: wakes lease requests when new work (a round, audit
    /// tasks) appeared.
    pub fn announce_progress(&self, progress: Progress) {
        if progress != Progress::Accepted {
            self.work_available.notify_waiters();
        }
    }

    pub fn ledger(&self) -> MutexGuard<'_, LedgerService> {
        lock(&self.ledger)
    }

    pub fn engine(&self) -> MutexGuard<'_, Coordinator> {
        lock(&self.engine)
    }

    /// Writes `jobs/<id>/report.json` and `jobs/<id>/weights.safetensors`, or for a job of
    /// output work `jobs/<id>/outputs.f32` and `jobs/<id>/outputs.indices.u32`.
    pub async fn persist_finished_job(&self, job: &Hash) -> Result<(), CoordinatorError> {
        let (report, files) = {
            let engine = self.engine();
            let report = engine.report(job)?;
            let blob = |hash: Hash| engine.blobs.get(&hash).ok().map(|blob| blob.bytes.clone());
            let mut files = Vec::new();
            if let Some(weights) = engine.job(job)?.weights.and_then(blob) {
                files.push(("weights.safetensors", weights));
            }
            if let Some(outputs) = &report.outputs {
                files.extend(blob(outputs.values).map(|bytes| ("outputs.f32", bytes)));
                files.extend(blob(outputs.indices).map(|bytes| ("outputs.indices.u32", bytes)));
            }
            (report, files)
        };
        let dir = self.data_dir.join("jobs").join(job.to_hex());
        let storage = |error: std::io::Error| CoordinatorError::Storage(error.to_string());
        let report_json = serde_json::to_vec_pretty(&report)
            .map_err(|error| CoordinatorError::Storage(error.to_string()))?;
        let target = dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&target)?;
            if let Some(jobs) = target.parent() {
                std::fs::File::open(jobs)?.sync_all()?;
            }
            // The results first, the report last: a report on disk means its files are whole.
            for (name, bytes) in files {
                write_atomically(&target, name, &bytes)?;
            }
            write_atomically(&target, "report.json", &report_json)
        })
        .await
        .map_err(|error| CoordinatorError::Storage(error.to_string()))?
        .map_err(storage)?;
        tracing::info!(job = %job.short(), dir = %dir.display(), "job finished; report and results written");
        Ok(())
    }
}

/// Computes the close of `job`'s complete round on a blocking thread, with no lock held, then
/// applies it under the engine lock: the next round opens (or the job ends), the round goes to
/// the ledger, waiting lease requests wake. A computation that fails or panics fails the job
/// with the reason in its status; nothing is dropped without a log line.
async fn close_round(shared: Arc<Shared>, job: Hash) {
    let Some(work) = shared.engine().take_close_work(&job) else {
        return;
    };
    let closed = match tokio::task::spawn_blocking(move || work.compute()).await {
        Ok(Ok(closed)) => Ok(closed),
        Ok(Err(error)) => Err(error.to_string()),
        Err(error) => Err(format!("the computation failed: {}", join_failure(error))),
    };
    let worker = shared.clone();
    let applied = tokio::task::spawn_blocking(move || {
        let mut engine = worker.engine();
        let progress = engine.finish_close(&job, closed, worker.clock.millis())?;
        worker.record_progress(&mut engine, &job, progress)?;
        Ok::<_, CoordinatorError>(progress)
    })
    .await;
    match applied {
        Ok(Ok(progress)) => shared.announce_progress(progress),
        Ok(Err(error)) => {
            tracing::error!(job = %job.short(), %error, "a round's close could not be applied")
        }
        Err(error) => tracing::error!(
            job = %job.short(),
            error = %join_failure(error),
            "applying a round's close failed"
        ),
    }
}

/// What a background task that did not finish says: its panic message, or that it was cancelled.
pub(crate) fn join_failure(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return error.to_string();
    }
    let panic = error.into_panic();
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("panicked: {message}")
}

/// The coordinator's speed at a challenge-sized matrix product (MFLOP/s), the better of two
/// runs (the first also warms up): about what it replays an audit at.
pub(crate) async fn measure_replay_speed() -> Result<u64, CoordinatorError> {
    tokio::task::spawn_blocking(|| {
        let n = CHALLENGE_SIZE;
        let (a, b) = corex_verify::challenge_matrices(0, n);
        let mut best = Duration::MAX;
        for _ in 0..2 {
            let started = Instant::now();
            corex_ml::matmul(&a, &b, n)
                .map_err(|error| CoordinatorError::Training(error.to_string()))?;
            best = best.min(started.elapsed());
        }
        let flops = 2 * (n as u128).pow(3);
        Ok((flops / best.as_micros().max(1)) as u64)
    })
    .await
    .map_err(|error| CoordinatorError::Training(error.to_string()))?
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
    // The coordinator's own key holds the operator's rights (in the engine's copy too).
    let mut config = config;
    config.admission.operators.insert(identity.id());
    let clock = Clock {
        start: Instant::now(),
    };
    // The audit seed chain's anchor goes on the ledger before any result can exist.
    let verifier = Verifier::new(
        corex_net::random_bytes::<32>()
            .map_err(|error| CoordinatorError::Storage(error.to_string()))?,
        config.audit_chain_length,
    );
    let mut ledger = LedgerService::open(
        &data_dir,
        identity.clone(),
        config.genesis.clone(),
        clock.unix_millis(),
    )?;
    ledger.commit_audit_anchor(verifier.anchor(), clock.unix_millis())?;
    let ledger = Arc::new(Mutex::new(ledger));
    {
        let summary = lock(&ledger).chain().summary();
        tracing::info!(chain = %summary.chain_id, height = summary.height, epoch = summary.epoch, "ledger opened");
    }
    // What an earlier run stored comes back before anything is served: the nodes' standing
    // (registration, proven capability, audit record), then the jobs: running ones resume at
    // the round their checkpoint opened, ended ones are served again. The nodes the ledger
    // removed stay out whatever their stored record says.
    let removed = lock(&ledger).removed_nodes();
    let mut engine = Coordinator::new(identity.clone(), config.clone(), verifier);
    let restore_dir = data_dir.clone();
    let (engine, store, progressed) = tokio::task::spawn_blocking(move || {
        let store = StateStore::open(&restore_dir)?;
        let nodes = store.load_nodes()?;
        if !nodes.is_empty() {
            tracing::info!(nodes = nodes.len(), "node standing restored");
        }
        engine.restore_standing(nodes, 0);
        if !removed.is_empty() {
            tracing::info!(nodes = removed.len(), "nodes the ledger removed are banned");
        }
        for node in removed {
            engine.verifier.ban(node);
        }
        let progressed = durability::restore_jobs(&mut engine, &store, &restore_dir, 0)?;
        Ok::<_, CoordinatorError>((engine, store, progressed))
    })
    .await
    .map_err(|error| CoordinatorError::Storage(error.to_string()))??;
    let (round_sender, round_receiver) = unbounded_channel();
    let recorder = tokio::spawn(record_rounds(ledger.clone(), round_receiver));
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        nonces: Mutex::new(NonceCache::default()),
        key_rates: KeyRateLimiter::new(&config.transport),
        config,
        work_available: Notify::new(),
        lease_queue: LeaseQueue::default(),
        clock,
        data_dir,
        store,
        ledger,
        closed_rounds: Mutex::new(Some(LedgerFeed::new(round_sender))),
    });
    // A round the restored results completed closes as any other.
    for (job, progress) in progressed {
        let mut engine = shared.engine();
        if let Err(error) = shared.record_progress(&mut engine, &job, progress) {
            tracing::error!(job = %job.short(), %error, "a restored round could not go on");
        }
    }
    let tls_config = RustlsConfig::from_config(Arc::new(
        tls.server_config()
            .map_err(|error| CoordinatorError::Storage(error.to_string()))?,
    ));
    listener
        .set_nonblocking(true)
        .map_err(|error| CoordinatorError::Storage(error.to_string()))?;
    let mut app = router(shared.clone());
    if shared.config.journal {
        let journal = Arc::new(Journal::open(
            &shared.data_dir,
            shared.config.max_body_bytes,
        )?);
        app = app.layer(axum::middleware::from_fn_with_state(journal, record));
    }
    let limits = &shared.config.transport;
    let app = with_transport_layers(app, limits);
    let handle = axum_server::Handle::new();
    let sweeper = tokio::spawn(sweep_leases(shared.clone()));
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(2)));
    });
    // Connections over the limits are closed before their TLS handshake; a handshake, a
    // request head and a first request must each come within their timeouts.
    let acceptor = RustlsAcceptor::new(tls_config)
        .handshake_timeout(Duration::from_millis(limits.handshake_timeout_ms))
        .acceptor(ConnectionLimiter::new(limits));
    let mut server = axum_server::from_tcp(listener)
        .map_err(|error| CoordinatorError::Storage(error.to_string()))?
        .acceptor(acceptor)
        .handle(handle)
        .first_request_timeout(limits.header_timeout());
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.header_timeout())
        .max_buf_size(limits.max_header_bytes);
    server
        .http_builder()
        .http2()
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    let served = server
        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await;
    sweeper.abort();
    // Close the channel and let the recorder write every round that closed.
    drop(lock(&shared.closed_rounds).take());
    if recorder.await.is_err() {
        tracing::warn!("the ledger recorder failed while stopping");
    }
    // Work still running off the async threads (a sweep, a handler's blocking part) holds the
    // shared state, and so the ledger's database: wait for it, so that a coordinator started
    // on this data directory right after this one returns can open the ledger.
    let _ = sweeper.await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&shared) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    served.map_err(|error| CoordinatorError::Storage(error.to_string()))
}

/// HTTP/2 streams one connection may have open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// The request-level limits, outermost first: more than `max_in_flight_requests` at once are
/// answered 503 at once (load shedding, never a queue), a request unanswered after
/// `request_timeout_ms` gets 408, and a body that stalls for `body_timeout_ms` is cut off.
fn with_transport_layers(
    app: axum::Router,
    limits: &crate::transport::TransportLimits,
) -> axum::Router {
    use axum::error_handling::HandleErrorLayer;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
    app.layer(
        tower::ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                CoordinatorError::Overloaded.into_response()
            }))
            .load_shed()
            .concurrency_limit(limits.max_in_flight_requests)
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_millis(limits.request_timeout_ms),
            ))
            .layer(RequestBodyTimeoutLayer::new(Duration::from_millis(
                limits.body_timeout_ms,
            ))),
    )
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes closed rounds and audit seed events to the ledger one by one, off the async threads.
async fn record_rounds(
    ledger: Arc<Mutex<LedgerService>>,
    mut rounds: UnboundedReceiver<LedgerRecord>,
) {
    while let Some(record) = rounds.recv().await {
        let ledger = ledger.clone();
        let recorded =
            tokio::task::spawn_blocking(move || lock(&ledger).record(&record, unix_millis())).await;
        match recorded {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "a closed round could not be recorded on the ledger")
            }
            Err(error) => tracing::warn!(%error, "the ledger recorder task failed"),
        }
    }
}

/// Returns overdue leases to the pool and wakes waiting lease requests; closes rounds whose
/// audit deadline passed (the coordinator replays what no node returned); drops idle nodes'
/// staged uploads; hands the ledger new audit seed events and mixes fresh OS randomness into
/// the seeds; closes the ledger epochs whose time has passed.
/// A sweep that panics is logged and the next one runs on time.
async fn sweep_leases(shared: Arc<Shared>) {
    let mut interval =
        tokio::time::interval(Duration::from_millis(shared.config.sweep_interval_ms));
    loop {
        interval.tick().await;
        if let Err(error) = tokio::spawn(sweep_once(shared.clone())).await {
            tracing::error!(error = %join_failure(error), "a lease sweep failed");
        }
    }
}

async fn sweep_once(shared: Arc<Shared>) {
    let worker = shared.clone();
    let closed = tokio::task::spawn_blocking(move || {
        let mut engine = worker.engine();
        let closed = engine.close_overdue_rounds(worker.clock.millis());
        closed
            .into_iter()
            .filter_map(|(job, progress)| match progress {
                Ok(progress) => match worker.record_progress(&mut engine, &job, progress) {
                    Ok(()) => Some((job, progress)),
                    Err(error) => {
                        tracing::warn!(%error, "a closed round could not be queued for the ledger");
                        None
                    }
                },
                Err(error) => {
                    tracing::warn!(job = %job.short(), %error, "closing an audited round failed");
                    None
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_else(|error| {
        tracing::error!(error = %join_failure(error), "closing overdue rounds failed");
        Vec::new()
    });
    for (_, progress) in closed {
        shared.announce_progress(progress);
    }
    let expired = {
        let mut engine = shared.engine();
        let now_ms = shared.clock.millis();
        engine.uploads.expire(now_ms);
        // Keys seen once (an attacker can mint any number) cost no memory for long.
        shared.key_rates.forget_idle();
        if let Some(feed) = lock(&shared.closed_rounds).as_mut() {
            feed.flush_audit_events(&mut engine.verifier);
        }
        if let Ok(fresh) = corex_net::random_bytes::<32>() {
            engine.verifier.seeds.mix_entropy(fresh);
        }
        engine.expire(now_ms)
    };
    let worker = shared.clone();
    let closed = tokio::task::spawn_blocking(move || {
        worker.ledger().close_epochs(worker.clock.unix_millis())
    })
    .await;
    if let Ok(Err(error)) = closed {
        tracing::warn!(%error, "the ledger could not close an epoch");
    }
    if expired.is_empty() {
        return;
    }
    tracing::info!(freed = expired.len(), "leases expired; fragments re-issued");
    shared.work_available.notify_waiters();
    // A timeout is a soft reject: the work is dropped, nothing is slashed.
    let worker = shared.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        worker
            .ledger()
            .record_timeouts(&expired, worker.clock.unix_millis())
    })
    .await;
    if let Ok(Err(error)) = recorded {
        tracing::warn!(%error, "timeouts could not be recorded on the ledger");
    }
}
