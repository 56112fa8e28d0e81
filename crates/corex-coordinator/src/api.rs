//! The HTTPS API: routes, request authentication and error bodies.
//!
//! Every request must carry a valid signature (see `corex_core::request_signature`) with a
//! fresh, unused nonce; the body is read up to the configured limit before anything else.
//! Errors come back as `{"error": code, "message": sentence}` with a 4xx status, and a refused
//! request leaves the coordinator's state as it was (apart from remembering the nonce).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use corex_core::hash::Hashed;
use corex_core::messages::{
    ApiError, ChallengeCommit, DeclineJobRequest, DeclineRevealRequest, LeaseRequest,
    LeaseResponse, RegisterRequest,
};
use corex_core::request_signature::{
    CONTENT_DIGEST, RequestSignatureError, SIGNATURE, SIGNATURE_INPUT, verify_request_headers,
};
use corex_core::result_frame::DigestedResult;
use corex_core::{Hash, NodeId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::{Answer, Event};
use crate::engine::CHALLENGE_SIZE;
use crate::error::CoordinatorError;
use crate::job_run::SignedTensor;
use crate::lease_order::priority_of;
use crate::server::{Shared, lock};

impl IntoResponse for CoordinatorError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let body = ApiError {
            error: self.code().to_owned(),
            message: self.to_string(),
        };
        (status, axum::Json(body)).into_response()
    }
}

pub(crate) type ApiResult = Result<Response, CoordinatorError>;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/register", post(register))
        .route("/v1/nodes/challenge", post(issue_challenge))
        .route("/v1/nodes/challenge/commit", post(commit_challenge))
        .route("/v1/nodes/challenge/answer", post(answer_challenge))
        .route("/v1/lease", post(lease))
        .route("/v1/bench/download/{bytes}", get(bench_download))
        .route("/v1/results", post(submit_result))
        .route("/v1/reveals/decline", post(decline_reveal))
        .route("/v1/holders/decline", post(decline_job))
        .route("/v1/blobs/{hash}", get(blob_manifest))
        .route("/v1/blobs/{hash}/chunks/{index}", get(blob_chunk))
        .merge(crate::jobs_api::routes())
        .merge(crate::ledger_api::routes())
        .merge(crate::uploads_api::routes())
        .merge(crate::explorer::routes())
        .fallback(|request: Request| async move {
            CoordinatorError::NoSuchEndpoint(format!(
                "{} {}",
                request.method(),
                request.uri().path()
            ))
        })
        .with_state(shared)
}

/// Authenticates a request that carries a small JSON message (or nothing) as its body.
pub(crate) async fn authenticate(
    shared: &Shared,
    request: Request,
) -> Result<(NodeId, Bytes), CoordinatorError> {
    let limit = shared.config.transport.max_message_body_bytes;
    authenticate_within(shared, request, limit)
        .await
        .map(|(node, body)| (node, body.into_bytes()))
}

/// [`authenticate`] with a body limit of `limit` bytes.
pub(crate) async fn authenticate_within(
    shared: &Shared,
    request: Request,
    limit: usize,
) -> Result<(NodeId, Hashed<Bytes>), CoordinatorError> {
    authenticate_digested(shared, request, limit, |body| {
        let hashed = Hashed::new(body);
        let digest = hashed.hash();
        (hashed, digest)
    })
    .await
}

/// The one place every request is authenticated, in this order, so that nothing is read or
/// stored for a request that fails an earlier step: a declared body over `limit` is refused;
/// the signature is checked from the headers alone (it covers the content-digest); the
/// signer's request rate, the signature's freshness and its nonce are checked; only then is
/// the body read, at most `limit` bytes of it, and `digest` hashes it (into whatever form the
/// handler wants it hashed, and its BLAKE3 hash), which must be the signed content-digest.
/// No engine lock is taken.
pub(crate) async fn authenticate_digested<D>(
    shared: &Shared,
    request: Request,
    limit: usize,
    digest: impl FnOnce(Bytes) -> (D, Hash),
) -> Result<(NodeId, D), CoordinatorError> {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(CoordinatorError::BodyTooLarge { limit });
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let signed = verify_request_headers(
        parts.method.as_str(),
        parts.uri.path(),
        header(CONTENT_DIGEST),
        header(SIGNATURE_INPUT),
        header(SIGNATURE),
    )?;
    let signer = signed.request.signer;
    shared.key_rates.check(&signer)?;
    lock(&shared.nonces).admit(
        &signed.request,
        shared.clock().unix_seconds(),
        shared.config.clock_skew_s,
    )?;
    let (body, body_hash) = digest(read_body(body, limit).await?);
    if body_hash != signed.body_hash {
        return Err(RequestSignatureError::DigestMismatch.into());
    }
    Ok((signer, body))
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, CoordinatorError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| CoordinatorError::BodyTooLarge { limit })
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, CoordinatorError> {
    serde_json::from_slice(body).map_err(|error| CoordinatorError::MalformedBody(error.to_string()))
}

pub(crate) fn parse_hash(text: &str) -> Result<Hash, CoordinatorError> {
    text.parse()
        .map_err(|_| CoordinatorError::MalformedId(text.chars().take(80).collect()))
}

pub(crate) fn json<T: Serialize>(value: &T) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

async fn register(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> ApiResult {
    let (node, body) = authenticate(&shared, request).await?;
    let RegisterRequest { device } = parse_json(&body)?;
    let endpoint = peer.ip().to_string();
    let registered = shared.core.ask(|request| Event::NodeRegistered {
        request,
        node,
        device,
        endpoint,
    });
    let Answer::Registered(response) = registered.await? else {
        return Err(mismatched());
    };
    json(&response)
}

/// The core answered a request with an answer of another kind (a bug, said as a 500).
pub(crate) fn mismatched() -> CoordinatorError {
    CoordinatorError::CoreFailed("the core answered with an answer of another kind".into())
}

/// A change the core took, answered 204.
pub(crate) fn done(answer: Answer) -> ApiResult {
    match answer {
        Answer::Done => Ok(StatusCode::NO_CONTENT.into_response()),
        _ => Err(mismatched()),
    }
}

fn random_seed() -> Result<u64, CoordinatorError> {
    corex_net::random_bytes::<8>()
        .map(u64::from_le_bytes)
        .map_err(|error| CoordinatorError::Storage(error.to_string()))
}

async fn issue_challenge(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let (node, _) = authenticate(&shared, request).await?;
    let seed = random_seed()?;
    let asked = shared.core.ask(|request| Event::ChallengeAsked {
        request,
        node,
        seed,
    });
    let Answer::Challenge(issued) = asked.await? else {
        return Err(mismatched());
    };
    json(&issued)
}

async fn commit_challenge(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let (node, body) = authenticate(&shared, request).await?;
    let ChallengeCommit { commitment } = parse_json(&body)?;
    let vector_seed = random_seed()?;
    let committed = shared.core.ask(|request| Event::ChallengeCommitted {
        request,
        node,
        commitment,
        vector_seed,
    });
    let Answer::ChallengeVector(vector) = committed.await? else {
        return Err(mismatched());
    };
    json(&vector)
}

/// The product, as raw f32 little-endian bytes, checked on the compute pool. A claim the
/// challenge does not bear out goes to the ledger as a suspicious soft reject; the speed
/// shown is what the coordinator believes.
async fn answer_challenge(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let limit = CHALLENGE_SIZE * CHALLENGE_SIZE * std::mem::size_of::<f32>();
    let (node, body) = authenticate_within(&shared, request, limit).await?;
    let body = body.into_bytes();
    let product = corex_core::tensor::bytes_to_f32s(&body)
        .map_err(|error| CoordinatorError::MalformedBody(error.to_string()))?;
    let answered = shared.core.ask(|request| Event::ChallengeAnswered {
        request,
        node,
        product,
    });
    let Answer::Capability(capability) = answered.await? else {
        return Err(mismatched());
    };
    json(&capability)
}

/// Largest download `corex node bench` may ask for.
const MAX_BENCH_DOWNLOAD: usize = 16 * 1024 * 1024;

/// `bytes` zero bytes (TLS encrypts them like any payload): a node's throughput measure.
async fn bench_download(
    State(shared): State<Arc<Shared>>,
    Path(bytes): Path<String>,
    request: Request,
) -> ApiResult {
    authenticate(&shared, request).await?;
    let bytes: usize = bytes
        .parse()
        .ok()
        .filter(|bytes| *bytes <= MAX_BENCH_DOWNLOAD)
        .ok_or_else(|| {
            CoordinatorError::MalformedBody(format!(
                "bench download size must be 0..={MAX_BENCH_DOWNLOAD} bytes"
            ))
        })?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Bytes::from(vec![0u8; bytes]),
    )
        .into_response())
}

/// The node registry; network addresses and host names only for the operators.
async fn list_nodes(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let (reader, _) = authenticate(&shared, request).await?;
    let nodes = shared
        .core
        .read(move |engine| Ok(engine.nodes_for(&reader)));
    json(&nodes.await?)
}

async fn lease(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let started = std::time::Instant::now();
    let answer = lease_answer(&shared, request).await;
    let outcome = match &answer {
        Ok(LeaseResponse::Work { .. }) => "work",
        Ok(LeaseResponse::Reveal { .. }) => "reveal",
        Ok(LeaseResponse::Idle { .. }) => "idle",
        Err(_) => "refused",
    };
    shared
        .services
        .metrics
        .lease_answered(outcome, started.elapsed());
    json(&answer?)
}

async fn lease_answer(
    shared: &Shared,
    request: Request,
) -> Result<LeaseResponse, CoordinatorError> {
    let (node, body) = authenticate(shared, request).await?;
    let LeaseRequest { wait_ms } = parse_json(&body)?;
    let wait = Duration::from_millis(wait_ms.min(shared.config.max_long_poll_ms));
    let deadline = tokio::time::Instant::now() + wait;
    let info = shared
        .core
        .read(move |engine| Ok(engine.node(&node).cloned()))
        .await?;
    let priority = priority_of(&node, info.as_ref(), &shared.ledger());
    let place = shared.lease_queue.enter(node, priority);
    loop {
        let notified = shared.services.work_available.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let ahead = place.ahead();
        let asked = shared.core.ask(|request| Event::LeaseAsked {
            request,
            node,
            ahead,
        });
        let Answer::Lease(response) = asked.await? else {
            return Err(mismatched());
        };
        let retry = match response {
            LeaseResponse::Idle { retry_ms } => Duration::from_millis(retry_ms),
            LeaseResponse::Work { .. } | LeaseResponse::Reveal { .. } => return Ok(response),
        };
        if tokio::time::Instant::now() >= deadline {
            return Ok(response);
        }
        // Asks again on new work, when a straggler copy falls due, or at the deadline.
        let again = deadline.min(tokio::time::Instant::now() + retry);
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(again) => {}
        }
    }
}

/// A framed result: its tensor is hashed once, for both the content digest and the header's
/// `result_hash` (see `corex_core::result_frame`).
async fn submit_result(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let started = std::time::Instant::now();
    let answer = take_result(&shared, request).await;
    let outcome = if answer.is_ok() { "taken" } else { "refused" };
    let metrics = &shared.services.metrics;
    metrics.result_answered(outcome, started.elapsed());
    answer
}

async fn take_result(shared: &Shared, request: Request) -> ApiResult {
    let limit = shared.config.max_body_bytes;
    let (node, body) = authenticate_digested(shared, request, limit, |body| {
        let digested = DigestedResult::new(body);
        let digest = digested.digest();
        (digested, digest)
    })
    .await?;
    shared.services.metrics.moved("received", body.len() as u64);
    // Decoded, hashed against its header and its signature checked before the core.
    let (header, signed) = tokio::task::spawn_blocking(move || {
        let (header, tensor) = body
            .decode()
            .map_err(|error| CoordinatorError::MalformedBody(error.to_string()))?;
        let signed = SignedTensor::verify(node, &header, &tensor)?;
        Ok::<_, CoordinatorError>((header, signed))
    })
    .await
    .map_err(|error| CoordinatorError::Training(error.to_string()))??;
    let header = Box::new(header);
    let taken = shared.core.ask(|request| Event::ResultArrived {
        request,
        node,
        header,
        signed,
    });
    done(taken.await?)
}

/// A node that cannot reveal the checkpoints an audit asked of it says so: the coordinator
/// replays the whole fragment now instead of waiting for the audit deadline.
async fn decline_reveal(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let (node, body) = authenticate(&shared, request).await?;
    let DeclineRevealRequest { fragment } = parse_json(&body)?;
    let declined = shared.core.ask(|request| Event::RevealDeclined {
        request,
        node,
        fragment,
    });
    done(declined.await?)
}

/// A data holder will not compute a federated job (its own policy): its fragment leaves the
/// round and no later round names it; nothing is recorded against it.
async fn decline_job(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let (node, body) = authenticate(&shared, request).await?;
    let DeclineJobRequest { fragment, reason } = parse_json(&body)?;
    let reason: String = reason.chars().take(256).collect();
    tracing::info!(node = %node.short(), fragment = %fragment.short(), %reason, "a data holder declines a job");
    let declined = shared.core.ask(|request| Event::JobDeclined {
        request,
        node,
        fragment,
    });
    done(declined.await?)
}

async fn blob_manifest(
    State(shared): State<Arc<Shared>>,
    Path(hash): Path<String>,
    request: Request,
) -> ApiResult {
    let (reader, _) = authenticate(&shared, request).await?;
    let hash = parse_hash(&hash)?;
    let manifest = shared.core.read(move |engine| {
        engine.check_blob_reader(&reader, &hash)?;
        engine.blobs.manifest(&hash)
    });
    json(manifest.await?.as_ref())
}

async fn blob_chunk(
    State(shared): State<Arc<Shared>>,
    Path((hash, index)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let (reader, _) = authenticate(&shared, request).await?;
    let hash = parse_hash(&hash)?;
    let index: usize = index.parse().map_err(|_| CoordinatorError::UnknownChunk {
        blob: hash,
        index: usize::MAX,
    })?;
    let chunk = shared
        .core
        .read(move |engine| {
            engine.check_blob_reader(&reader, &hash)?;
            engine.blobs.chunk(&hash, index)
        })
        .await?;
    shared.services.metrics.moved("sent", chunk.len() as u64);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], chunk).into_response())
}
