//! Resumable, content-addressed transfers over the signed client.
//!
//! Downloads (model versions, weights): the manifest is checked against the blob's name, then
//! each chunk is fetched and checked against its hash. A chunk that arrives altered, or whose
//! request fails with a transient error (dropped connection, 5xx, 429), is fetched again, up to
//! [`TransferPolicy::attempts`] times with exponential backoff; chunks already verified are never
//! fetched again. With a staging directory (the node's data directory), verified chunks are also
//! kept on disk (`crate::stage`), so a restarted node resumes a partial download.
//!
//! Uploads (results): a tensor that fits in one upload chunk goes inline in one request (a chunk
//! is the unit of resumption anyway). A larger one is cut into chunks; the client asks which of
//! them the coordinator lacks, PUTs only those (each retried like a download chunk), then
//! submits the header with the tensor's manifest. If the coordinator answers `missing_chunks`
//! (staged chunks expired meanwhile), the client asks again and sends what is missing, a bounded
//! number of times. A later call for the same result after a failed one sends only the chunks
//! the coordinator does not hold yet.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use corex_core::Hash;
use corex_core::chunk::{CHUNK_SIZE, MIN_UPLOAD_CHUNK_SIZE, Manifest};
use corex_core::hash::Hashed;
use corex_core::messages::{
    ChunkedResult, MissingChunksRequest, MissingChunksResponse, ResultHeader, UploadDatasetRequest,
    UploadDatasetResponse,
};
use corex_core::result_frame::ResultTensor;

use crate::client::{CoordinatorClient, json_body};
use crate::error::NetError;
use crate::stage::ChunkStage;

/// How often a result submission asks for missing chunks and submits again before giving up.
const SUBMIT_ROUNDS: u32 = 3;

/// Most bytes reserved up front for a download: a manifest's size is the peer's word.
const MAX_PREALLOCATION: u64 = 64 * 1024 * 1024;

/// How chunk transfers retry, and how results are cut for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferPolicy {
    /// Tries per request (chunk download, chunk upload, submission), the first included.
    pub attempts: u32,
    /// Wait after the first failed try; it doubles after each further one.
    pub first_backoff: Duration,
    /// Longest wait between tries.
    pub max_backoff: Duration,
    /// Size of the chunks a result tensor is cut into (at least `MIN_UPLOAD_CHUNK_SIZE`, at most
    /// what the coordinator accepts: 1 MiB by default).
    pub upload_chunk_size: usize,
}

impl Default for TransferPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            upload_chunk_size: CHUNK_SIZE,
        }
    }
}

/// What one result upload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Distinct chunks of the tensor (1 for a result sent inline).
    pub chunks: usize,
    /// Of those, how many the coordinator already held when the upload began.
    pub already_staged: usize,
    /// Chunk uploads completed (or 1 for the inline result).
    pub sent: usize,
    /// Requests tried again after a transient failure.
    pub retries: usize,
}

impl CoordinatorClient {
    /// Fetches the blob named `hash`: its manifest, then its chunks (see [`Self::fetch_chunks`]).
    pub async fn fetch_blob(&self, hash: &Hash) -> Result<Bytes, NetError> {
        let manifest = self.blob_manifest(hash).await?;
        self.fetch_chunks(hash, &manifest).await
    }

    /// Fetches blob `hash` by the chunks that `manifest` names. The manifest's root binds every
    /// chunk hash and each chunk is checked as it arrives, so the blob needs no second pass.
    /// A blob of one chunk is never staged (a stage resumes a partial download, and one chunk is
    /// all there or not at all) and comes back as the response body itself, uncopied.
    pub async fn fetch_chunks(&self, hash: &Hash, manifest: &Manifest) -> Result<Bytes, NetError> {
        if manifest.hash != *hash || !manifest.is_consistent() {
            return Err(NetError::Integrity(format!(
                "manifest for blob {} is inconsistent",
                hash.short()
            )));
        }
        if manifest.chunks.len() == 1 {
            return self.checked_chunk(hash, manifest, 0, None).await;
        }
        let stage = self.open_stage(hash).await;
        let mut blob = Vec::with_capacity(manifest.total_bytes.min(MAX_PREALLOCATION) as usize);
        for index in 0..manifest.chunks.len() {
            blob.extend_from_slice(
                &self
                    .checked_chunk(hash, manifest, index, stage.as_ref())
                    .await?,
            );
        }
        if let Some(stage) = stage
            && let Err(error) = stage.finish().await
        {
            tracing::warn!(%error, "could not remove a finished download's staged chunks");
        }
        Ok(Bytes::from(blob))
    }

    /// Chunk `index` of blob `hash`, hash-checked: from `stage` when it holds it, else fetched
    /// (and kept in `stage`); refused when its length does not fit the manifest's cut.
    async fn checked_chunk(
        &self,
        hash: &Hash,
        manifest: &Manifest,
        index: usize,
        stage: Option<&ChunkStage>,
    ) -> Result<Bytes, NetError> {
        let expected = &manifest.chunks[index];
        let staged = match stage {
            Some(stage) => stage.read(expected).await.map(Bytes::from),
            None => None,
        };
        let chunk = match staged {
            Some(chunk) => chunk,
            None => {
                let chunk = self.fetch_chunk(hash, index, expected).await?;
                if let Some(stage) = stage
                    && let Err(error) = stage.keep(expected, &chunk).await
                {
                    tracing::warn!(%error, "could not stage a downloaded chunk");
                }
                chunk
            }
        };
        if chunk.len() != manifest.range_of(index).len() {
            return Err(NetError::Integrity(format!(
                "chunk {index} of blob {} has the wrong length",
                hash.short()
            )));
        }
        Ok(chunk)
    }

    /// The on-disk stage for `blob`, when this client stages downloads and the stage opens
    /// (a staging failure only costs the ability to resume after a restart).
    async fn open_stage(&self, blob: &Hash) -> Option<ChunkStage> {
        let root = self.staging()?;
        match ChunkStage::open(root, blob).await {
            Ok(stage) => Some(stage),
            Err(error) => {
                tracing::warn!(%error, "cannot stage downloads; fetching into memory only");
                None
            }
        }
    }

    /// Chunk `index` of `blob`, fetched again while it fails its hash check or its request
    /// fails transiently.
    pub(crate) async fn fetch_chunk(
        &self,
        blob: &Hash,
        index: usize,
        expected: &Hash,
    ) -> Result<Bytes, NetError> {
        let path = format!("/v1/blobs/{blob}/chunks/{index}");
        let mut retries = 0;
        self.retrying(
            &path,
            &mut retries,
            |error| error.is_transient() || matches!(error, NetError::Integrity(_)),
            || async {
                let chunk = self.call("GET", &path, Vec::new()).await?;
                if Hash::of(&chunk) != *expected {
                    return Err(NetError::Integrity(format!(
                        "chunk {index} of blob {} failed its hash check",
                        blob.short()
                    )));
                }
                Ok(chunk)
            },
        )
        .await
    }

    /// Submits a fragment result: inline when the tensor fits in one upload chunk, otherwise as
    /// chunks the coordinator does not hold yet followed by the header and manifest.
    pub async fn submit_result(
        &self,
        header: &ResultHeader,
        tensor: ResultTensor,
    ) -> Result<UploadReport, NetError> {
        let chunk_size = self.transfer().upload_chunk_size.max(MIN_UPLOAD_CHUNK_SIZE);
        let mut report = UploadReport::default();
        if tensor.as_bytes().len() <= chunk_size {
            let body: Hashed<Bytes> = tensor.into_frame(header).map_into();
            self.retrying(
                "/v1/results",
                &mut report.retries,
                NetError::is_transient,
                || self.call_hashed("POST", "/v1/results", body.clone()),
            )
            .await?;
            report.chunks = 1;
            report.sent = 1;
            return Ok(report);
        }
        let tensor = tensor.as_bytes();
        let manifest = Manifest::of(tensor, chunk_size);
        let submission = json_body(
            "/v1/results/chunked",
            &ChunkedResult {
                header: header.clone(),
                tensor: manifest.clone(),
            },
        )?;
        self.upload_and_submit(
            tensor,
            &manifest,
            "/v1/results/chunked",
            submission,
            &mut report,
        )
        .await?;
        Ok(report)
    }

    /// Uploads a dataset's encoding (`corex_ml::Dataset::to_bytes`) as chunks the coordinator
    /// does not hold yet, then registers it (`POST /v1/datasets`); an interrupted upload
    /// resumes where it stopped. Returns the dataset's content hash and shape.
    pub async fn upload_dataset(&self, encoded: &[u8]) -> Result<UploadDatasetResponse, NetError> {
        let chunk_size = self.transfer().upload_chunk_size.max(MIN_UPLOAD_CHUNK_SIZE);
        let manifest = Manifest::of(encoded, chunk_size);
        let request = json_body(
            "/v1/datasets",
            &UploadDatasetRequest {
                manifest: manifest.clone(),
            },
        )?;
        let mut report = UploadReport::default();
        let answer = self
            .upload_and_submit(encoded, &manifest, "/v1/datasets", request, &mut report)
            .await?;
        serde_json::from_slice(&answer).map_err(|error| NetError::Decode {
            url: "/v1/datasets".into(),
            reason: error.to_string(),
        })
    }

    /// Sends the chunks of `blob` (cut as `manifest` says) that the coordinator lacks, then
    /// `submission` to `path`; sends expired chunks again when the coordinator says so.
    async fn upload_and_submit(
        &self,
        blob: &[u8],
        manifest: &Manifest,
        path: &str,
        submission: Bytes,
        report: &mut UploadReport,
    ) -> Result<Bytes, NetError> {
        let distinct: BTreeSet<Hash> = manifest.chunks.iter().copied().collect();
        report.chunks = distinct.len();
        let mut round = 1;
        loop {
            let missing = self
                .missing_chunks(&manifest.chunks, &mut report.retries)
                .await?;
            if round == 1 {
                report.already_staged = report.chunks.saturating_sub(missing.len());
            }
            let mut sent = BTreeSet::new();
            for (index, hash) in manifest.chunks.iter().enumerate() {
                if !missing.contains(hash) || !sent.insert(*hash) {
                    continue;
                }
                let chunk_path = format!("/v1/uploads/{hash}");
                let bytes = Bytes::copy_from_slice(&blob[manifest.range_of(index)]);
                self.retrying(
                    &chunk_path,
                    &mut report.retries,
                    NetError::is_transient,
                    || self.call("PUT", &chunk_path, bytes.clone()),
                )
                .await?;
                report.sent += 1;
            }
            let submitted = self
                .retrying(path, &mut report.retries, NetError::is_transient, || {
                    self.call("POST", path, submission.clone())
                })
                .await;
            match submitted {
                Ok(answer) => return Ok(answer),
                Err(error)
                    if error.api_code() == Some("missing_chunks") && round < SUBMIT_ROUNDS =>
                {
                    tracing::warn!(%error, "staged chunks expired before the submission; sending them again");
                    round += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Which of `chunks` the coordinator does not hold for this node.
    pub async fn missing_uploads(&self, chunks: &[Hash]) -> Result<BTreeSet<Hash>, NetError> {
        let mut retries = 0;
        self.missing_chunks(chunks, &mut retries).await
    }

    async fn missing_chunks(
        &self,
        chunks: &[Hash],
        retries: &mut usize,
    ) -> Result<BTreeSet<Hash>, NetError> {
        let distinct: BTreeSet<Hash> = chunks.iter().copied().collect();
        let request = json_body(
            "/v1/uploads/missing",
            &MissingChunksRequest {
                chunks: distinct.iter().copied().collect(),
            },
        )?;
        let response: MissingChunksResponse = self
            .retrying(
                "/v1/uploads/missing",
                retries,
                NetError::is_transient,
                || self.call_json("POST", "/v1/uploads/missing", request.clone()),
            )
            .await?;
        // Only chunks that were asked about: the answer cannot make the client send others.
        Ok(response
            .missing
            .into_iter()
            .filter(|hash| distinct.contains(hash))
            .collect())
    }

    /// Runs `request` until it succeeds, fails in a way `retryable` does not accept, or has been
    /// tried `attempts` times, waiting with exponential backoff between tries.
    async fn retrying<T, Request, Answer>(
        &self,
        what: &str,
        retries: &mut usize,
        retryable: impl Fn(&NetError) -> bool,
        mut request: Request,
    ) -> Result<T, NetError>
    where
        Request: FnMut() -> Answer,
        Answer: Future<Output = Result<T, NetError>>,
    {
        let policy = self.transfer();
        let mut delay = policy.first_backoff;
        let mut attempt = 1;
        loop {
            match request().await {
                Err(error) if retryable(&error) && attempt < policy.attempts => {
                    tracing::warn!(%error, attempt, "{what} failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(policy.max_backoff);
                    attempt += 1;
                    *retries += 1;
                }
                outcome => return outcome,
            }
        }
    }
}
