//! The public, read-only face of the coordinator on its HTTPS port: the web explorer
//! (`/explorer`: the network, each node, each public job, the ledger) and the Prometheus
//! metrics (`/metrics`). No login and no signature: what is shown is public (the ledger, the
//! registry without addresses or host names, public jobs; a private job only counted).
//!
//! Each page takes what it shows from the core in one read and from the ledger's chain under
//! its lock only while copying a few figures; stored blocks and the index are read from the
//! ledger store after the lock is let go, off the async threads, and pages are rendered with no
//! lock held. Every list is bounded (`views::MAX_ROWS`, pages of blocks and events).

mod pages;
mod plots;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use corex_core::{Hash, NodeId};
use corex_ledger::TOTAL_SUPPLY;
use corex_ledger_store::LedgerStore;
use maud::Markup;
use serde::Deserialize;

use crate::error::CoordinatorError;
use crate::metrics::Gauges;
use crate::server::Shared;

/// Blocks and node events per page.
const PAGE: usize = 25;
const EVENTS_PAGE: usize = 100;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/explorer") }))
        .route("/explorer", get(overview))
        .route("/explorer/nodes/{id}", get(node))
        .route("/explorer/jobs/{id}", get(job))
        .route("/explorer/jobs/{id}/weights", get(weights))
        .route("/explorer/ledger", get(ledger))
        .route("/explorer/ledger/blocks/{height}", get(block))
        .route("/metrics", get(metrics))
}

fn page(markup: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn missing(what: &str) -> Response {
    (StatusCode::NOT_FOUND, page(pages::not_found(what))).into_response()
}

fn failed(error: CoordinatorError) -> Response {
    tracing::warn!(%error, "an explorer page failed");
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, page(pages::not_found(&error.to_string()))).into_response()
}

/// Reads the ledger store off the async threads.
async fn from_store<T: Send + 'static>(
    store: Arc<LedgerStore>,
    read: impl FnOnce(&LedgerStore) -> Result<T, corex_ledger_store::StoreError> + Send + 'static,
) -> Result<T, CoordinatorError> {
    tokio::task::spawn_blocking(move || read(&store))
        .await
        .map_err(|error| CoordinatorError::Storage(error.to_string()))?
        .map_err(|error| CoordinatorError::Storage(error.to_string()))
}

async fn overview(State(shared): State<Arc<Shared>>) -> Response {
    let now = shared.clock().millis();
    let network = shared
        .core
        .read(move |engine| Ok(views::network(engine, now)))
        .await;
    let network = match network {
        Ok(network) => network,
        Err(error) => return failed(error),
    };
    let shown: Vec<NodeId> = network.nodes.iter().map(|row| row.id).collect();
    let figures = views::ledger_figures(shared.ledger().chain(), &shown);
    page(pages::overview(&network, &figures))
}

#[derive(Deserialize)]
struct Before {
    before: Option<u64>,
}

async fn node(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(Before { before }): Query<Before>,
) -> Response {
    let Ok(id) = id.parse::<NodeId>() else {
        return missing("That is not a node id (64 hex digits).");
    };
    let now = shared.clock().millis();
    let activity = shared
        .core
        .read(move |engine| Ok(views::node_activity(engine, &id, now)))
        .await;
    let (account, figures, store) = {
        let ledger = shared.ledger();
        let chain = ledger.chain();
        (
            chain.account_view(&id),
            views::ledger_figures(chain, &[]),
            ledger.reader(),
        )
    };
    let events = from_store(store, move |store| {
        store.node_events(&id, before, EVENTS_PAGE)
    })
    .await;
    match (activity, events) {
        (Ok(activity), Ok(events)) => {
            if activity.row.is_none() && account.is_none() {
                return missing("No node with this id is known here.");
            }
            page(pages::node(
                &id,
                &activity,
                account.as_ref(),
                &figures,
                &events,
            ))
        }
        (Err(error), _) | (_, Err(error)) => failed(error),
    }
}

fn parse_job(id: &str) -> Option<Hash> {
    crate::api::parse_hash(id).ok()
}

async fn job(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_job(&id) else {
        return missing("That is not a job id (64 hex digits).");
    };
    match shared
        .core
        .read(move |engine| Ok(views::job_page(engine, &id)))
        .await
    {
        Ok(Some(job)) => page(pages::job(&job)),
        Ok(None) => missing("No public job with this id."),
        Err(error) => failed(error),
    }
}

/// A public job's trained weights (safetensors), once it has them.
async fn weights(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_job(&id) else {
        return missing("That is not a job id (64 hex digits).");
    };
    let blob = shared
        .core
        .read(move |engine| {
            let job = engine.jobs().find(|job| job.id == id && job.spec.public);
            let Some(weights) = job.and_then(|job| job.weights) else {
                return Ok(None);
            };
            Ok(engine
                .blobs
                .get(&weights)
                .ok()
                .map(|blob| blob.bytes.clone()))
        })
        .await;
    match blob {
        Ok(Some(bytes)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}.safetensors\"", id.short()),
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => missing("No public job with trained weights has this id."),
        Err(error) => failed(error),
    }
}

#[derive(Deserialize)]
struct Below {
    below: Option<u64>,
}

async fn ledger(
    State(shared): State<Arc<Shared>>,
    Query(Below { below }): Query<Below>,
) -> Response {
    let (figures, store) = {
        let ledger = shared.ledger();
        (views::ledger_figures(ledger.chain(), &[]), ledger.reader())
    };
    let height = figures.height;
    let top = below.map_or(height, |below| below.saturating_sub(1));
    let read = from_store(store, move |store| {
        let head = store.block(height)?;
        let blocks = store.blocks_down_from(top, PAGE)?;
        Ok((head, blocks, store.settlements(PAGE)?))
    })
    .await;
    match read {
        Ok((head, blocks, settlements)) => {
            let state_root = head.map(|block| block.header.state_root);
            page(pages::ledger(&figures, state_root, &blocks, &settlements))
        }
        Err(error) => failed(error),
    }
}

async fn block(State(shared): State<Arc<Shared>>, Path(height): Path<String>) -> Response {
    let Ok(height) = height.parse::<u64>() else {
        return missing("That is not a block height.");
    };
    let store = shared.ledger().reader();
    match from_store(store, move |store| store.block(height)).await {
        Ok(Some(block)) => page(pages::block(&block)),
        Ok(None) => missing("No block at this height."),
        Err(error) => failed(error),
    }
}

/// The gauges of a scrape: the core's state in one read, the ledger's figures copied under
/// its lock.
async fn gauges(shared: &Shared) -> Result<Gauges, CoordinatorError> {
    let now = shared.clock().millis();
    let (nodes, jobs, pending) = shared
        .core
        .read(move |engine| {
            let nodes: Vec<(NodeId, &'static str)> = engine
                .registry()
                .filter(|(_, info)| now.saturating_sub(info.last_seen_ms) <= views::ONLINE_MS)
                .map(|(id, info)| (*id, info.device.backend.name()))
                .collect();
            let mut jobs = std::collections::BTreeMap::<String, i64>::new();
            let mut pending = 0;
            for job in engine.jobs() {
                *jobs.entry(views::job_state_name(job.state())).or_default() += 1;
                pending += job.pending_fragments();
            }
            Ok((nodes, jobs, pending))
        })
        .await?;
    let online: Vec<NodeId> = nodes.iter().map(|(id, _)| *id).collect();
    let figures = views::ledger_figures(shared.ledger().chain(), &online);
    let mut by_tier = std::collections::BTreeMap::<(String, String), i64>::new();
    for (id, backend) in nodes {
        let tier = figures
            .tiers
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "unregistered".into());
        *by_tier.entry((tier, backend.to_owned())).or_default() += 1;
    }
    let released = TOTAL_SUPPLY - figures.supply.pool;
    let elapsed_epochs_ms = figures.epoch * figures.epoch_ms;
    Ok(Gauges {
        nodes: by_tier.into_iter().collect(),
        jobs: jobs.into_iter().collect(),
        fragments_pending: pending as i64,
        lease_waiters: shared.lease_queue.requests() as i64,
        ledger_height: figures.height as i64,
        ledger_epoch: figures.epoch as i64,
        supply_cxt: figures.supply_parts(),
        released_cxt: views::cxt(released),
        scheduled_release_cxt: views::cxt(TOTAL_SUPPLY)
            - figures.scheduled_pool_cxt(elapsed_epochs_ms),
    })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let encoded = match gauges(&shared).await {
        Ok(gauges) => shared.services.metrics.encode(&gauges),
        Err(error) => return failed(error),
    };
    match encoded {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => failed(CoordinatorError::Storage(
            "metrics could not be encoded".into(),
        )),
    }
}
