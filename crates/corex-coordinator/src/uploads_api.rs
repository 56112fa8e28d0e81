//! Chunked result uploads over the API: `PUT /v1/uploads/{hash}` stages one chunk (its body
//! limit is the upload chunk limit, and the bytes must hash to the path's hash),
//! `POST /v1/uploads/missing` says which chunks a node still has to send, and
//! `POST /v1/results/chunked` submits a result by header and manifest, judged like an inline
//! result once the coordinator has assembled its tensor. Staging lives in `crate::uploads`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::routing::{post, put};
use corex_core::NodeId;
use corex_core::messages::{ChunkedResult, MissingChunksRequest, MissingChunksResponse};

use crate::api::{ApiResult, authenticate_within, done, json, mismatched, parse_hash, parse_json};
use crate::core::{Answer, Event};
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
async fn uploads_as_owner(shared: &Shared, key: &NodeId) -> Result<bool, CoordinatorError> {
    let node = *key;
    let registered = shared
        .core
        .read(move |engine| Ok(engine.is_registered(&node)));
    if registered.await? {
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
    shared
        .services
        .metrics
        .moved("received", body.as_slice().len() as u64);
    let hash = parse_hash(&hash)?;
    let owner_upload = uploads_as_owner(&shared, &node).await?;
    let staged = shared.core.ask(|request| Event::ChunkStaged {
        request,
        node,
        chunk: hash,
        bytes: body,
        owner_upload,
    });
    done(staged.await?)
}

async fn missing_chunks(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let limit = shared.config.max_manifest_body_bytes();
    let (node, body) = authenticate_within(&shared, request, limit).await?;
    let MissingChunksRequest { chunks } = parse_json(&body.into_bytes())?;
    let owner_upload = uploads_as_owner(&shared, &node).await?;
    let asked = shared.core.ask(|request| Event::MissingChunksAsked {
        request,
        node,
        chunks,
        owner_upload,
    });
    let Answer::MissingChunks(missing) = asked.await? else {
        return Err(mismatched());
    };
    json(&MissingChunksResponse { missing })
}

async fn submit_chunked_result(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let limit = shared.config.max_manifest_body_bytes();
    let (node, body) = authenticate_within(&shared, request, limit).await?;
    let result: Box<ChunkedResult> = Box::new(parse_json(&body.into_bytes())?);
    let taken = shared.core.ask(|request| Event::ChunkedResultArrived {
        request,
        node,
        result,
    });
    done(taken.await?)
}
