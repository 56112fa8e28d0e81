//! The ledger over the API: its summary, accounts, blocks, and transaction submission.
//! Every request is signed like any other; a refused transaction changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::routing::{get, post};
use corex_ledger::SignedTx;

use crate::api::{ApiResult, authenticate, json, parse_json};
use crate::error::CoordinatorError;
use crate::server::Shared;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/ledger", get(summary))
        .route("/v1/ledger/accounts/{id}", get(account))
        .route("/v1/ledger/blocks/{height}", get(block))
        .route("/v1/ledger/txs", post(submit_tx))
}

async fn summary(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    authenticate(&shared, request).await?;
    let summary = shared.ledger().chain().summary();
    json(&summary)
}

async fn account(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult {
    authenticate(&shared, request).await?;
    let id = id
        .parse()
        .map_err(|_| CoordinatorError::MalformedId(id.chars().take(80).collect()))?;
    let view = shared
        .ledger()
        .chain()
        .account_view(&id)
        .ok_or_else(|| CoordinatorError::UnknownLedgerAccount(id.to_hex()))?;
    json(&view)
}

async fn block(
    State(shared): State<Arc<Shared>>,
    Path(height): Path<String>,
    request: Request,
) -> ApiResult {
    authenticate(&shared, request).await?;
    let height: u64 = height
        .parse()
        .map_err(|_| CoordinatorError::MalformedId(height.chars().take(80).collect()))?;
    let worker = shared.clone();
    let block = tokio::task::spawn_blocking(move || worker.ledger().block(height))
        .await
        .map_err(|error| CoordinatorError::Storage(error.to_string()))??
        .ok_or(CoordinatorError::UnknownBlock(height))?;
    json(&block)
}

/// Includes a signed transaction in a block; answers once the block is stored durably.
async fn submit_tx(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let (_, body) = authenticate(&shared, request).await?;
    let tx: SignedTx = parse_json(&body)?;
    let worker = shared.clone();
    let receipt = tokio::task::spawn_blocking(move || {
        let now_ms = worker.clock().unix_millis();
        worker.ledger().submit(tx, now_ms)
    })
    .await
    .map_err(|error| CoordinatorError::Storage(error.to_string()))??;
    json(&receipt)
}
