//! The job owner's API: datasets (`POST /v1/datasets`), job submission, cancellation, and the
//! reads of a job (status, spec, report, weights, outputs), and following a job's status as it
//! moves (`POST /v1/jobs/{id}/watch`, a long poll woken when a round closes).
//!
//! Submission runs its checks in a fixed order, each before anything the next one would
//! allocate: the body within the spec limit, the signature, the admission policy, the resource
//! budget, the spec's own rules, the owner's quotas, and only then the dataset (built in,
//! uploaded by this owner, or named in the operator's directory; never a path). Reads of a
//! private job are the owner's and the operators'. A refusal changes nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use corex_core::job::job_id;
use corex_core::messages::{
    JobState, JobStatus, JobWatchRequest, SubmitJobRequest, SubmitJobResponse,
    UploadDatasetRequest, UploadDatasetResponse,
};
use corex_core::{DatasetSource, Granularity, Hash, JobSpec, NodeId, WorkSpec};
use corex_ml::Dataset;
use corex_net::JobDescriptor;

use crate::api::{
    ApiResult, authenticate, authenticate_within, done, json, mismatched, parse_hash, parse_json,
};
use crate::core::{Answer, Event};
use crate::engine::Coordinator;
use crate::error::CoordinatorError;
use crate::job_run::JobRun;
use crate::server::{Shared, measure_replay_speed};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/datasets", post(upload_dataset))
        .route("/v1/jobs", post(submit_job).get(list_jobs))
        .route("/v1/jobs/{id}", get(job_status))
        .route("/v1/jobs/{id}/watch", post(watch_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/spec", get(job_spec))
        .route("/v1/jobs/{id}/report", get(job_report))
        .route("/v1/jobs/{id}/weights", get(job_weights))
        .route("/v1/jobs/{id}/outputs", get(job_outputs))
}

/// Admits `owner` under the operator's policy, looking its stake up only when the policy asks.
pub(crate) fn admit_owner(shared: &Shared, owner: &NodeId) -> Result<(), CoordinatorError> {
    let admission = &shared.config.admission;
    let stake = if admission.needs_stake(owner) {
        let ledger = shared.ledger();
        ledger
            .chain()
            .state()
            .account(owner)
            .map_or(0, |account| account.stake)
    } else {
        0
    };
    admission.admit(owner, stake)
}

/// Registers a dataset the owner uploaded as chunks: assembled from its staged chunks,
/// decoded off the async threads, kept under its content hash within the owner's quota.
async fn upload_dataset(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let limit = shared.config.max_manifest_body_bytes();
    let (owner, body) = authenticate_within(&shared, request, limit).await?;
    admit_owner(&shared, &owner)?;
    let UploadDatasetRequest { manifest } = parse_json(&body.into_bytes())?;
    let most = shared.config.max_dataset_bytes;
    if manifest.total_bytes > most as u64 {
        return Err(CoordinatorError::Dataset(format!(
            "{} bytes is above this coordinator's dataset limit of {most}",
            manifest.total_bytes
        )));
    }
    let quota = shared.config.max_stored_bytes_per_owner;
    let wanted = manifest.clone();
    let bytes = shared.core.read(move |engine| {
        let stored = engine.stored_bytes(&owner);
        if stored.saturating_add(wanted.total_bytes) > quota {
            return Err(CoordinatorError::OwnerQuota(format!(
                "{} keeps {stored} bytes here; {} more is above the limit of {quota}",
                owner.short(),
                wanted.total_bytes
            )));
        }
        engine.uploads.assemble(owner, &wanted)
    });
    let bytes = bytes.await?;
    let total = bytes.len() as u64;
    let dataset = tokio::task::spawn_blocking(move || crate::datasets::decode_upload(&bytes))
        .await
        .map_err(|error| CoordinatorError::Dataset(error.to_string()))??;
    let response = UploadDatasetResponse {
        dataset: Hash(dataset.content_hash()),
        samples: dataset.len() as u64,
        features: dataset.feature_count() as u64,
        classes: dataset.class_count() as u64,
    };
    let chunks = manifest.chunks;
    let registered = shared.core.ask(|request| Event::DatasetUploaded {
        request,
        owner,
        dataset: Arc::new(dataset),
        bytes: total,
        chunks,
    });
    done(registered.await?)?;
    Ok((StatusCode::CREATED, axum::Json(response)).into_response())
}

/// The dataset `spec` runs on, for `owner`: the owner's upload, or loaded (built in) or read
/// (named) off the async threads.
async fn resolve_dataset(
    shared: &Shared,
    owner: NodeId,
    spec: &JobSpec,
) -> Result<Arc<Dataset>, CoordinatorError> {
    let dataset_error = |error: corex_ml::MlError| CoordinatorError::Dataset(error.to_string());
    let load = match spec.dataset.source.clone() {
        DatasetSource::Uploaded { dataset } => {
            let uploaded = shared
                .core
                .read(move |engine| engine.datasets.uploaded_by(&owner, &dataset));
            return uploaded.await;
        }
        DatasetSource::Digits => Box::new(move || Dataset::digits().map_err(dataset_error))
            as Box<dyn FnOnce() -> _ + Send>,
        DatasetSource::Packaged { name } => {
            Box::new(move || Dataset::packaged(name).map_err(dataset_error))
        }
        DatasetSource::Named { name, label_column } => {
            let dir = shared.config.datasets_dir.clone();
            let most = shared.config.max_dataset_bytes;
            Box::new(move || {
                crate::datasets::read_named(dir.as_deref(), &name, label_column.as_deref(), most)
            })
        }
    };
    tokio::task::spawn_blocking(load)
        .await
        .map_err(|error| CoordinatorError::Dataset(error.to_string()))?
        .map(Arc::new)
}

async fn submit_job(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let limit = shared.config.transport.max_spec_body_bytes;
    let (owner, body) = authenticate_within(&shared, request, limit).await?;
    admit_owner(&shared, &owner)?;
    let SubmitJobRequest { spec } = parse_json(&body.into_bytes())?;
    shared
        .config
        .limits
        .check(&spec)
        .map_err(|error| CoordinatorError::OverBudget(error.to_string()))?;
    spec.validate()
        .map_err(|error| CoordinatorError::InvalidSpec(error.to_string()))?;
    let dataset = resolve_dataset(&shared, owner, &spec).await?;
    // An inference job runs a trained model on data scaled as that model's training data was.
    let weights = match &spec.work {
        WorkSpec::Inference {
            weights: Some(weights),
        } => {
            let weights = *weights;
            let blob = shared.core.read(move |engine| {
                Ok(engine
                    .blobs
                    .get(&weights)
                    .ok()
                    .map(|blob| blob.bytes.clone()))
            });
            blob.await?.map(|bytes| (weights, bytes))
        }
        _ => None,
    };
    let services = shared.services.clone();
    let sequence = tokio::task::spawn_blocking(move || services.store.take_job_sequence())
        .await
        .map_err(|error| CoordinatorError::Storage(error.to_string()))??;
    let id = job_id(&spec, &owner, sequence);
    let prepared = {
        let spec = spec.clone();
        let data_dir = shared.services.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            // Kept before the job is acknowledged: a restart must find its data.
            crate::durability::keep_dataset(&data_dir, &id, &spec, &dataset)?;
            let inherited = match weights {
                Some((hash, bytes)) => corex_ml::standardization_of(&bytes).map_err(|error| {
                    CoordinatorError::InvalidSpec(format!(
                        "inference weights {hash} are not a model's safetensors: {error}"
                    ))
                })?,
                None => None,
            };
            crate::prepared::prepare(&spec, dataset, inherited)
        })
        .await
        .map_err(|error| CoordinatorError::Dataset(error.to_string()))??
    };
    // Adaptive granularity weighs nodes' speeds against the coordinator's own for audits:
    // measured once, when the first such job comes.
    let adaptive = matches!(spec.granularity, Granularity::Adaptive { .. });
    let unmeasured = shared
        .core
        .read(|engine| Ok(engine.config.replay_mflops.is_none()));
    let replay_mflops = if adaptive && unmeasured.await? {
        let mflops = measure_replay_speed().await?;
        tracing::info!(mflops, "replay speed measured");
        Some(mflops)
    } else {
        None
    };
    let submitted = shared.core.ask(|request| Event::JobSubmitted {
        request,
        owner,
        spec: Box::new(spec),
        prepared,
        sequence,
        replay_mflops,
    });
    let Answer::JobSubmitted(job) = submitted.await? else {
        return Err(mismatched());
    };
    Ok((StatusCode::CREATED, axum::Json(SubmitJobResponse { job })).into_response())
}

/// Cancels a running job (its owner or an operator).
async fn cancel_job(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult {
    let (by, _) = authenticate(&shared, request).await?;
    let job = parse_hash(&id)?;
    let cancelled = shared
        .core
        .ask(|request| Event::JobCancelled { request, by, job });
    done(cancelled.await?)
}

/// The statuses of the jobs the caller may read.
async fn list_jobs(State(shared): State<Arc<Shared>>, request: Request) -> ApiResult {
    let (reader, _) = authenticate(&shared, request).await?;
    let statuses = shared.core.read(move |engine| {
        Ok(engine
            .jobs_for(&reader)
            .map(|job| job.status())
            .collect::<Vec<_>>())
    });
    json(&statuses.await?)
}

/// Answers a read of job `id` with what `read` takes from it, if the caller may read it.
async fn read_job<T: serde::Serialize + Send + 'static>(
    shared: &Shared,
    id: &str,
    request: Request,
    read: impl FnOnce(&Coordinator, &JobRun) -> Result<T, CoordinatorError> + Send + 'static,
) -> ApiResult {
    let (reader, _) = authenticate(shared, request).await?;
    let id = parse_hash(id)?;
    let answer = shared.core.read(move |engine| {
        let job = engine.job_for(&reader, &id)?;
        read(engine, job)
    });
    json(&answer.await?)
}

async fn job_status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult {
    read_job(&shared, &id, request, |_, job| Ok(job.status())).await
}

/// The job's status once it has moved past `after_round` or left the running state, or at the
/// deadline (`wait_ms`, at most the long-poll limit): readable by whoever may read the status.
/// Every round's close wakes the waiting requests (as it wakes lease requests), and each reads
/// the status again; no state is held while it waits.
async fn watch_job(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult {
    let (reader, body) = authenticate(&shared, request).await?;
    let id = parse_hash(&id)?;
    let JobWatchRequest {
        after_round,
        wait_ms,
    } = parse_json(&body)?;
    let wait = Duration::from_millis(wait_ms.min(shared.config.max_long_poll_ms));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let woken = shared.services.work_available.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let status: JobStatus = shared
            .core
            .read(move |engine| Ok(engine.job_for(&reader, &id)?.status()))
            .await?;
        let moved = status.round > after_round || status.state != JobState::Running;
        if moved || tokio::time::Instant::now() >= deadline {
            return json(&status);
        }
        tokio::select! {
            () = &mut woken => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// What a node needs to compute a job's fragments: readable by the owner, the operators, and
/// any registered node (nodes compute private jobs too); everyone for a public job.
async fn job_spec(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult {
    let (reader, _) = authenticate(&shared, request).await?;
    let id = parse_hash(&id)?;
    let descriptor = shared.core.read(move |engine| {
        let job = match engine.job_for(&reader, &id) {
            Err(CoordinatorError::NotJobOwner(_)) if engine.is_registered(&reader) => {
                engine.job(&id)?
            }
            other => other?,
        };
        Ok(JobDescriptor {
            spec: job.spec.clone(),
            owner: job.owner,
            dataset_hash: job.dataset_hash,
            dataset_blob: job.dataset_blob,
        })
    });
    json(&descriptor.await?)
}

async fn job_report(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult {
    read_job(&shared, &id, request, |engine, job| engine.report(&job.id)).await
}

async fn job_weights(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult {
    read_job(&shared, &id, request, |_, job| {
        if !job.spec.work.trains() {
            return Err(CoordinatorError::NoWeights(job.id));
        }
        job.weights.ok_or(CoordinatorError::JobNotFinished(job.id))
    })
    .await
}

async fn job_outputs(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult {
    read_job(&shared, &id, request, |_, job| {
        if job.spec.work.trains() {
            return Err(CoordinatorError::NoOutputs(job.id));
        }
        job.outputs
            .clone()
            .ok_or(CoordinatorError::JobNotFinished(job.id))
    })
    .await
}
