//! The coordinator's Prometheus metrics, served at `GET /metrics` in the OpenMetrics text
//! format (prometheus-client). Counters and histograms move where things happen (requests,
//! closed rounds handed to the ledger, chunks served); gauges are read when scraped
//! ([`Gauges`]: the core's state through one read, the ledger's figures under its lock for a
//! moment), and nothing is encoded while holding either.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use corex_core::FragmentKind;
use corex_core::messages::ResultVerdict;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::ledger::ClosedRound;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    kind: &'static str,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditLabels {
    /// Who replayed: `coordinator`, `node`, or `segment` (one segment of traced steps).
    by: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    tier: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabels {
    part: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type Timings = Family<OutcomeLabels, Histogram, fn() -> Histogram>;

/// Request latencies from 1 ms to about 33 s (a lease's long poll waits up to its limit).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// What a scrape reads from the core and the ledger.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Registered nodes seen lately, by (ledger tier, backend).
    pub nodes: Vec<((String, String), i64)>,
    /// Jobs by state.
    pub jobs: Vec<(String, i64)>,
    /// Fragments of open rounds not leased yet.
    pub fragments_pending: i64,
    /// Lease requests waiting for work.
    pub lease_waiters: i64,
    pub ledger_height: i64,
    pub ledger_epoch: i64,
    /// The supply by part, in CXT (pool, fund, balances, stakes, unbonding, locked rewards).
    pub supply_cxt: Vec<(&'static str, f64)>,
    /// What the pool has released, and what the fixed rule would have released by this epoch
    /// at a demand factor of 1, in CXT.
    pub released_cxt: f64,
    pub scheduled_release_cxt: f64,
}

pub struct CoordinatorMetrics {
    registry: Registry,
    /// Held while a scrape sets the gauges and encodes, so that two scrapes do not mix.
    scraping: Mutex<()>,
    rounds: Family<KindLabels, Counter>,
    results: Family<ResultLabels, Counter>,
    audits: Family<AuditLabels, Counter>,
    node_audits: Family<OutcomeLabels, Counter>,
    lease_latency: Timings,
    result_latency: Timings,
    bytes: Family<DirectionLabels, Counter>,
    nodes: Family<NodeLabels, Gauge>,
    jobs: Family<StateLabels, Gauge>,
    fragments_pending: Gauge,
    lease_waiters: Gauge,
    ledger_height: Gauge,
    ledger_epoch: Gauge,
    supply: Family<PartLabels, FloatGauge>,
    released: FloatGauge,
    scheduled_release: FloatGauge,
}

/// A verdict's name: `accepted`, `rejected` or `discarded`.
pub(crate) fn verdict_name(verdict: &ResultVerdict) -> &'static str {
    match verdict {
        ResultVerdict::Accepted { .. } => "accepted",
        ResultVerdict::Rejected { .. } => "rejected",
        ResultVerdict::Discarded { .. } => "discarded",
    }
}

/// Whether a replay judged the result (a rejected one always was; a discarded federated result
/// is judged by held-out validation, not a replay).
pub(crate) fn was_audited(verdict: &ResultVerdict) -> bool {
    match verdict {
        ResultVerdict::Accepted { audited, .. } => *audited,
        ResultVerdict::Rejected { .. } => true,
        ResultVerdict::Discarded { .. } => false,
    }
}

impl Default for CoordinatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CoordinatorMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("corex");
        let metrics = Self {
            rounds: Family::default(),
            results: Family::default(),
            audits: Family::default(),
            node_audits: Family::default(),
            lease_latency: Family::new_with_constructor(latency_histogram),
            result_latency: Family::new_with_constructor(latency_histogram),
            bytes: Family::default(),
            nodes: Family::default(),
            jobs: Family::default(),
            fragments_pending: Gauge::default(),
            lease_waiters: Gauge::default(),
            ledger_height: Gauge::default(),
            ledger_epoch: Gauge::default(),
            supply: Family::default(),
            released: FloatGauge::default(),
            scheduled_release: FloatGauge::default(),
            registry: Registry::default(),
            scraping: Mutex::new(()),
        };
        let r = &mut registry;
        r.register(
            "rounds_closed",
            "Rounds closed, by the job's fragment kind",
            metrics.rounds.clone(),
        );
        r.register(
            "fragment_results",
            "Results judged in closed rounds, by fragment kind and verdict",
            metrics.results.clone(),
        );
        r.register(
            "audits",
            "Audited results, by who replayed them (coordinator, node, segment) and outcome",
            metrics.audits.clone(),
        );
        r.register(
            "audit_tasks",
            "Audit replays computed by nodes for others, by outcome",
            metrics.node_audits.clone(),
        );
        r.register_with_unit(
            "lease_request_duration",
            "Time to answer a lease request (long polls included), by outcome",
            Unit::Seconds,
            metrics.lease_latency.clone(),
        );
        r.register_with_unit(
            "result_request_duration",
            "Time to take a result, from its request to the answer, by outcome",
            Unit::Seconds,
            metrics.result_latency.clone(),
        );
        r.register_with_unit(
            "transfer",
            "Bytes moved: chunks served (sent), results and uploaded chunks taken (received)",
            Unit::Bytes,
            metrics.bytes.clone(),
        );
        r.register(
            "nodes",
            "Nodes seen in the last minute, by ledger tier and compute backend",
            metrics.nodes.clone(),
        );
        r.register("jobs", "Jobs by state", metrics.jobs.clone());
        r.register(
            "fragments_pending",
            "Fragments of open rounds not leased yet",
            metrics.fragments_pending.clone(),
        );
        r.register(
            "lease_waiters",
            "Lease requests waiting for work",
            metrics.lease_waiters.clone(),
        );
        r.register(
            "ledger_height",
            "Blocks on the ledger",
            metrics.ledger_height.clone(),
        );
        r.register(
            "ledger_epoch",
            "The ledger's open epoch",
            metrics.ledger_epoch.clone(),
        );
        r.register(
            "supply_cxt",
            "The 100,000,000 CXT supply by part",
            metrics.supply.clone(),
        );
        r.register(
            "pool_released_cxt",
            "CXT the mining pool has released so far",
            metrics.released.clone(),
        );
        r.register(
            "pool_scheduled_release_cxt",
            "CXT the fixed release rule would have released by the open epoch at demand 1",
            metrics.scheduled_release.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts a closed round of `kind` handed to the ledger: the round, its results by
    /// verdict, its audits by who replayed them.
    pub fn round_closed(&self, kind: FragmentKind, closed: &ClosedRound) {
        let kind = kind.name();
        self.rounds.get_or_create(&KindLabels { kind }).inc();
        for result in &closed.record.results {
            let verdict = verdict_name(&result.verdict);
            self.results
                .get_or_create(&ResultLabels { kind, verdict })
                .inc();
            if was_audited(&result.verdict) {
                let by = match (result.audited_steps, result.audited_by) {
                    (Some(_), _) => "segment",
                    (None, Some(_)) => "node",
                    (None, None) => "coordinator",
                };
                let outcome = verdict_name(&result.verdict);
                self.audits
                    .get_or_create(&AuditLabels { by, outcome })
                    .inc();
            }
        }
        for audit in &closed.record.audits {
            let outcome = verdict_name(&audit.verdict);
            self.node_audits
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
        }
    }

    /// A lease request answered after `took`: `outcome` is work, reveal, idle or refused.
    pub fn lease_answered(&self, outcome: &'static str, took: Duration) {
        self.lease_latency
            .get_or_create(&OutcomeLabels { outcome })
            .observe(took.as_secs_f64());
    }

    /// A result request answered after `took`: `outcome` is taken or refused.
    pub fn result_answered(&self, outcome: &'static str, took: Duration) {
        self.result_latency
            .get_or_create(&OutcomeLabels { outcome })
            .observe(took.as_secs_f64());
    }

    /// `bytes` moved: `what` is `sent` or `received`.
    pub fn moved(&self, what: &'static str, bytes: u64) {
        self.bytes
            .get_or_create(&DirectionLabels { what })
            .inc_by(bytes);
    }

    /// The exposition, with the gauges set from `gauges`.
    pub fn encode(&self, gauges: &Gauges) -> Result<String, std::fmt::Error> {
        let _scraping = crate::server::lock(&self.scraping);
        self.nodes.clear();
        for ((tier, backend), count) in &gauges.nodes {
            let labels = NodeLabels {
                tier: tier.clone(),
                backend: backend.clone(),
            };
            self.nodes.get_or_create(&labels).set(*count);
        }
        self.jobs.clear();
        for (state, count) in &gauges.jobs {
            let labels = StateLabels {
                state: state.clone(),
            };
            self.jobs.get_or_create(&labels).set(*count);
        }
        self.fragments_pending.set(gauges.fragments_pending);
        self.lease_waiters.set(gauges.lease_waiters);
        self.ledger_height.set(gauges.ledger_height);
        self.ledger_epoch.set(gauges.ledger_epoch);
        for (part, cxt) in &gauges.supply_cxt {
            self.supply.get_or_create(&PartLabels { part }).set(*cxt);
        }
        self.released.set(gauges.released_cxt);
        self.scheduled_release.set(gauges.scheduled_release_cxt);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
