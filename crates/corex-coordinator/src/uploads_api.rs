//! Chunked result uploads over the API: `PUT /v1/uploads/{hash}` stages one chunk (its body
//! limit is the upload chunk limit, and the bytes must hash to the path's hash),
//! `POST /v1/uploads/missing` says which chunks a node still has to send, and
//! `POST /v1/results/chunked` submits a result by header and manifest, judged like an inline
//! result once the coordinator has assembled its tensor. Staging lives in `crate::uploads`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{post, put};
use corex_core::NodeId;
use corex_core::messages::{ChunkedResult, MissingChunksRequest, MissingChunksResponse};

use crate::api::{ApiResult, authenticate_within, json, judge_result, parse_hash, parse_json};
use crate::error::CoordinatorError;
use crate::server::Shared;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/uploads/missing", post(missing_chunks))
        .route("/v1/uploads/{hash}", put(upload_chunk))
        .route("/v1/results/chunked", post(submit_chunked_result))
}

/// Whether `key` uploads as a job owner (a dataset) rather than as a registered node (a
/// result); a key that is neither is refused.
fn uploads_as_owner(shared: &Shared, key: &NodeId) -> Result<bool, CoordinatorError> {
    if shared.engine().nodes().contains_key(key) {
        return Ok(false);
    }
    crate::jobs_api::admit_owner(shared, key).map_err(|refusal| {
        CoordinatorError::NotAdmitted(format!(
            "{} is not a registered node (POST /v1/nodes/register), nor an admitted job owner: {refusal}",
            key.short()
        ))
    })?;
    Ok(true)
}

async fn upload_chunk(
    State(shared): State<Arc<Shared>>,
    Path(hash): Path<String>,
    request: Request,
) -> ApiResult {
    let limit = shared.config.max_upload_chunk_bytes;
    let (node, body) = authenticate_within(&shared, request, limit).await?;
    let hash = parse_hash(&hash)?;
    let owner_upload = uploads_as_owner(&shared, &node)?;
    shared
        .engine()
        .stage_chunk(node, hash, body, shared.clock.millis(), owner_upload)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn missing_chunks(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let limit = shared.config.max_manifest_body_bytes();
    let (node, body) = authenticate_within(&shared, request, limit).await?;
    let MissingChunksRequest { chunks } = parse_json(&body.into_bytes())?;
    let owner_upload = uploads_as_owner(&shared, &node)?;
    let missing =
        shared
            .engine()
            .missing_chunks(node, &chunks, shared.clock.millis(), owner_upload)?;
    json(&MissingChunksResponse { missing })
}

async fn submit_chunked_result(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let limit = shared.config.max_manifest_body_bytes();
    let (node, body) = authenticate_within(&shared, request, limit).await?;
    let result: ChunkedResult = parse_json(&body.into_bytes())?;
    judge_result(shared, node, move |engine, now_ms| {
        engine.submit_chunked_result(node, &result, now_ms)
    })
    .await
}
