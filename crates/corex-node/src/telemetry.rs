//! What a node shows its operator: Prometheus metrics (served on `--metrics-listen` by
//! [`serve_metrics`], plain HTTP, meant for a local scraper) and the snapshot behind `corex
//! node`'s live status line. The agent reports what it does (fragments leased and computed,
//! results taken); its verdicts and earnings come from the ledger, which the agent reads every
//! few seconds ([`NodeTelemetry::ledger_seen`]), so they are the network's figures, not the
//! node's belief.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use corex_core::FragmentKind;
use corex_ledger::{AccountView, BASE_UNITS_PER_CXT};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HowLabels {
    how: &'static str,
}

/// How a node got a model version it had not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelObtained {
    /// Made from a held version and the rounds' compressed updates.
    Updates,
    /// Fetched whole.
    Whole,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// What the status line shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStatusLine {
    /// The job and round of the latest fragment.
    pub job: Option<String>,
    pub round: Option<u32>,
    pub fragments: u64,
    /// From the ledger: results accepted, soft rejects, hard rejects.
    pub accepted: u64,
    pub soft_rejects: u64,
    pub hard_rejects: u64,
    /// From the ledger: rewards vested and locked, in base units.
    pub earned: u128,
    /// The latest fragment's speed, GFLOP/s.
    pub gflops: f64,
}

impl NodeStatusLine {
    pub fn render(&self) -> String {
        let job = match (&self.job, self.round) {
            (Some(job), Some(round)) => format!("{job} round {round}"),
            _ => "waiting for work".into(),
        };
        format!(
            "{job} · {} fragments · ledger: {} accepted, {} soft / {} hard rejects · {:.6} CXT earned · {:.1} GFLOP/s",
            self.fragments,
            self.accepted,
            self.soft_rejects,
            self.hard_rejects,
            self.earned as f64 / BASE_UNITS_PER_CXT as f64,
            self.gflops
        )
    }
}

pub struct NodeTelemetry {
    registry: Registry,
    computed: Family<KindLabels, Counter>,
    submitted: Counter,
    verdicts: Family<VerdictLabels, Counter>,
    models: Family<HowLabels, Counter>,
    model_bytes: Family<HowLabels, Counter>,
    gflops: FloatGauge,
    earned: FloatGauge,
    status: Mutex<NodeStatusLine>,
}

impl Default for NodeTelemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for NodeTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTelemetry")
            .field("status", &self.status_line())
            .finish()
    }
}

impl NodeTelemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("corex_node");
        let telemetry = Self {
            registry: Registry::default(),
            computed: Family::default(),
            submitted: Counter::default(),
            verdicts: Family::default(),
            models: Family::default(),
            model_bytes: Family::default(),
            gflops: FloatGauge::default(),
            earned: FloatGauge::default(),
            status: Mutex::new(NodeStatusLine::default()),
        };
        registry.register(
            "fragments_computed",
            "Fragments computed, by kind",
            telemetry.computed.clone(),
        );
        registry.register(
            "results_submitted",
            "Results the coordinator took for judgement",
            telemetry.submitted.clone(),
        );
        registry.register(
            "results_judged",
            "Verdicts on this node's results as the ledger records them (accepted, soft_reject, hard_reject)",
            telemetry.verdicts.clone(),
        );
        registry.register(
            "models_obtained",
            "Model versions obtained that were not held, by how (updates: a held version and the rounds' compressed updates; whole)",
            telemetry.models.clone(),
        );
        registry.register(
            "model_bytes_fetched",
            "Bytes fetched to obtain model versions, by how",
            telemetry.model_bytes.clone(),
        );
        registry.register(
            "compute_speed_gflops",
            "The latest fragment's computation speed, GFLOP/s",
            telemetry.gflops.clone(),
        );
        registry.register(
            "earned_cxt",
            "Rewards on the ledger (vested and locked), CXT",
            telemetry.earned.clone(),
        );
        Self {
            registry,
            ..telemetry
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, NodeStatusLine> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn status_line(&self) -> NodeStatusLine {
        self.status().clone()
    }

    /// A fragment of `job`'s round `round` was leased.
    pub fn fragment_leased(&self, job: &str, round: u32) {
        let mut status = self.status();
        status.job = Some(job.chars().take(40).collect());
        status.round = Some(round);
    }

    /// A fragment of `kind` costing `flops` was computed in `compute_ms`.
    pub fn fragment_computed(&self, kind: FragmentKind, flops: u64, compute_ms: u64) {
        self.computed
            .get_or_create(&KindLabels { kind: kind.name() })
            .inc();
        let gflops = flops as f64 / (compute_ms.max(1) as f64 * 1e6);
        self.gflops.set(gflops);
        let mut status = self.status();
        status.fragments += 1;
        status.gflops = gflops;
    }

    /// A model version not held was obtained `how`, fetching `bytes`.
    pub fn model_obtained(&self, how: ModelObtained, bytes: u64) {
        let how = match how {
            ModelObtained::Updates => "updates",
            ModelObtained::Whole => "whole",
        };
        self.models.get_or_create(&HowLabels { how }).inc();
        self.model_bytes
            .get_or_create(&HowLabels { how })
            .inc_by(bytes);
    }

    pub fn result_submitted(&self) {
        self.submitted.inc();
    }

    /// What the ledger holds of this node now: its verdict counts move by what they grew.
    pub fn ledger_seen(&self, view: &AccountView) {
        let Some(node) = &view.node else { return };
        let profile = &node.profile;
        let failures = profile.failures;
        let hard = u64::from(profile.hard_rejects);
        let earned = view.account.balance + view.account.locked_total();
        let mut status = self.status();
        let grow = |verdict: &'static str, before: u64, now: u64| {
            if now > before {
                self.verdicts
                    .get_or_create(&VerdictLabels { verdict })
                    .inc_by(now - before);
            }
        };
        grow("accepted", status.accepted, profile.tasks_done);
        grow("soft_reject", status.soft_rejects, failures);
        grow("hard_reject", status.hard_rejects, hard);
        status.accepted = status.accepted.max(profile.tasks_done);
        status.soft_rejects = status.soft_rejects.max(failures);
        status.hard_rejects = status.hard_rejects.max(hard);
        status.earned = earned;
        self.earned.set(earned as f64 / BASE_UNITS_PER_CXT as f64);
    }

    /// The OpenMetrics exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "node metrics could not be encoded");
        }
        text
    }
}

/// How often the agent reads its account on the ledger.
const LEDGER_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads `node`'s ledger account every few seconds into `telemetry`, until `stop` turns true.
pub(crate) async fn follow_ledger(
    client: corex_net::CoordinatorClient,
    node: corex_core::NodeId,
    telemetry: Arc<NodeTelemetry>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match client.ledger_account(&node).await {
            Ok(Some(view)) => telemetry.ledger_seen(&view),
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "the ledger account could not be read"),
        }
        if crate::pacing::wait_or_stop(&mut stop, LEDGER_EVERY).await {
            return;
        }
    }
}

/// Serves `GET /metrics` on `listener` (plain HTTP) until `stop` turns true.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    telemetry: Arc<NodeTelemetry>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use axum::http::header;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let telemetry = telemetry.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    telemetry.encode(),
                )
            }
        }),
    );
    if let Ok(listen) = listener.local_addr() {
        tracing::info!(%listen, "node metrics served at /metrics");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_versions_are_counted_by_how_they_came() {
        let telemetry = NodeTelemetry::new();
        telemetry.model_obtained(ModelObtained::Whole, 1_000);
        telemetry.model_obtained(ModelObtained::Updates, 60);
        telemetry.model_obtained(ModelObtained::Updates, 40);
        let text = telemetry.encode();
        for line in [
            "corex_node_models_obtained_total{how=\"whole\"} 1",
            "corex_node_models_obtained_total{how=\"updates\"} 2",
            "corex_node_model_bytes_fetched_total{how=\"whole\"} 1000",
            "corex_node_model_bytes_fetched_total{how=\"updates\"} 100",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
