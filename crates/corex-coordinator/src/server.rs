//! The coordinator process: opens the ledger and the stored state, restores them into the
//! core and starts its thread (`runtime`), then serves the API over TLS with the sweep timer
//! and the ledger recorder beside it, until shutdown.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use corex_core::Keypair;
use corex_net::TlsIdentity;
use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::api::router;
use crate::config::CoordinatorConfig;
use crate::core::{CoordinatorCore, Event};
use crate::durability;
use crate::engine::{CHALLENGE_SIZE, Coordinator};
use crate::error::CoordinatorError;
use crate::journal::{Journal, record};
use crate::lease_order::LeaseQueue;
use crate::ledger::{LedgerRecord, LedgerService};
use crate::nonce::NonceCache;
use crate::runtime::{self, CoreHandle, Services, join_failure};
use crate::store::StateStore;
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
    /// The way into the core, which owns the coordinator's state (see `crate::core`).
    pub core: CoreHandle,
    /// Nonces of admitted requests: checked on every request, apart from the core so that
    /// authentication never waits on it.
    pub nonces: Mutex<NonceCache>,
    /// Requests per signing key over time.
    pub key_rates: KeyRateLimiter,
    pub config: CoordinatorConfig,
    /// The lease requests waiting for work now, in priority order.
    pub lease_queue: LeaseQueue,
    pub services: Arc<Services>,
}

impl Shared {
    pub fn ledger(&self) -> MutexGuard<'_, LedgerService> {
        lock(&self.services.ledger)
    }

    pub fn clock(&self) -> &Clock {
        &self.services.clock
    }
}

/// What a panic's payload says.
pub(crate) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
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
            corex_ml::matmul(&corex_ml::Backend::cpu(), &a, &b, n)
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
        config.audit_policy,
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
    // What an earlier run stored comes back before anything is served.
    let removed = lock(&ledger).removed_nodes();
    let mut engine = Coordinator::new(identity.clone(), config.clone(), verifier);
    let restore_dir = data_dir.clone();
    let (engine, store, progressed) = tokio::task::spawn_blocking(move || {
        let store = StateStore::open(&restore_dir)?;
        let progressed = durability::restore(&mut engine, &store, &restore_dir, removed)?;
        Ok::<_, CoordinatorError>((engine, store, progressed))
    })
    .await
    .map_err(|error| CoordinatorError::Storage(error.to_string()))??;
    let (round_sender, round_receiver) = unbounded_channel();
    let recorder = tokio::spawn(record_rounds(ledger.clone(), round_receiver));
    let services = Arc::new(Services {
        store,
        data_dir,
        ledger,
        clock,
        work_available: Notify::new(),
        metrics: crate::metrics::CoordinatorMetrics::new(),
    });
    let (core, core_thread) =
        runtime::start(CoordinatorCore::new(engine), services.clone(), round_sender)
            .map_err(|error| CoordinatorError::Storage(error.to_string()))?;
    // Whatever ends this function from here, the core's thread stops.
    let stop_core = runtime::StopOnDrop(core.clone());
    // A round the restored results completed closes as any other.
    core.tell(Event::Restored { progressed });
    let shared = Arc::new(Shared {
        core: core.clone(),
        nonces: Mutex::new(NonceCache::default()),
        key_rates: KeyRateLimiter::new(&config.transport),
        config,
        lease_queue: LeaseQueue::default(),
        services: services.clone(),
    });
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
            &shared.services.data_dir,
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
    let _ = sweeper.await;
    // In this order, so that a coordinator started on this data directory right after this
    // one returns can open its databases: the handlers still running finish; then the core
    // stops after the events sent before, which closes the recorder's channel, and the
    // recorder writes every round that closed; then the work still holding the stores (a
    // checkpoint being stored, a ledger write) finishes.
    wait_for_last(&shared).await;
    drop(shared);
    drop(stop_core);
    if tokio::task::spawn_blocking(move || core_thread.join())
        .await
        .is_err()
    {
        tracing::warn!("the core's thread failed while stopping");
    }
    if recorder.await.is_err() {
        tracing::warn!("the ledger recorder failed while stopping");
    }
    wait_for_last(&services).await;
    drop(services);
    served.map_err(|error| CoordinatorError::Storage(error.to_string()))
}

/// Waits (up to 40 s) until `shared` is the last reference to what it points at.
async fn wait_for_last<T>(shared: &Arc<T>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while Arc::strong_count(shared) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if Arc::strong_count(shared) > 1 {
        tracing::warn!("work still holds the coordinator's state at shutdown");
    }
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

/// The sweep timer: hands the core a timer event (overdue leases and audit deadlines, idle
/// uploads, audit seed events for the ledger, fresh OS randomness for the seeds), forgets idle
/// signing keys, and closes the ledger epochs whose time has passed.
async fn sweep_leases(shared: Arc<Shared>) {
    let mut interval =
        tokio::time::interval(Duration::from_millis(shared.config.sweep_interval_ms));
    loop {
        interval.tick().await;
        let entropy = corex_net::random_bytes::<32>().ok();
        shared.core.tell(Event::TimerFired { entropy });
        // Keys seen once (an attacker can mint any number) cost no memory for long.
        shared.key_rates.forget_idle();
        let services = shared.services.clone();
        let closed = tokio::task::spawn_blocking(move || {
            lock(&services.ledger).close_epochs(services.clock.unix_millis())
        })
        .await;
        match closed {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the ledger could not close an epoch"),
            Err(error) => {
                tracing::error!(error = %join_failure(error), "closing ledger epochs failed")
            }
        }
    }
}
