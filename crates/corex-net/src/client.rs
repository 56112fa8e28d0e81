//! The signed HTTPS client that nodes, job owners and wallets use to talk to a coordinator.
//!
//! Every request is signed with the caller's key (see `corex_core::request_signature`), with a
//! fresh random nonce and the current time. It speaks HTTPS only, to the one certificate it
//! pins. Chunked, resumable blob downloads and result uploads live in `crate::transfer`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use corex_core::hash::Hashed;
use corex_core::hash::hex_encode;
use corex_core::messages::{
    ApiError, Capability, ChallengeCommit, ChallengeIssued, ChallengeVector, DeclineRevealRequest,
    DeviceReport, JobOutputs, JobReport, JobStatus, JobWatchRequest, LeaseRequest, LeaseResponse,
    RegisterRequest, RegisterResponse, SubmitJobRequest, SubmitJobResponse,
};
use corex_core::request_signature::{
    CONTENT_DIGEST, SIGNATURE, SIGNATURE_INPUT, SignatureHeaders, sign_request_digest,
};
use corex_core::{Hash, JobSpec, Keypair, NodeId};
use corex_ledger::{AccountView, LedgerSummary, SignedTx, TxBody, TxReceipt};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::NetError;
use crate::keys::random_bytes;
use crate::tls::pinned_client_config;
use crate::transfer::TransferPolicy;

/// What a node needs to know about a job to compute its fragments.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct JobDescriptor {
    pub spec: JobSpec,
    /// The key that submitted the job: a data holder computes only owners it allows.
    pub owner: NodeId,
    pub dataset_hash: Hash,
    /// The shared dataset as a blob (`Dataset::to_bytes`, fetched in hash-checked chunks);
    /// absent for the built-in digits, which every node loads, and for a federated job, whose
    /// data never travels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_blob: Option<Hash>,
}

#[derive(Clone)]
pub struct CoordinatorClient {
    http: reqwest::Client,
    base: String,
    key: Keypair,
    /// How chunk transfers retry and how results are cut for upload.
    transfer: TransferPolicy,
    /// Where downloads keep their verified chunks, so that a restarted node resumes them (a
    /// node gives its data directory); none: downloads stay in memory.
    staging: Option<PathBuf>,
    /// Where chunks fetched one by one (a shared dataset's) are kept by hash across jobs and
    /// restarts; none: they stay in memory.
    chunk_cache: Option<PathBuf>,
}

impl CoordinatorClient {
    /// A client for the coordinator at `base_url` (`https://host:port`) whose certificate
    /// has fingerprint `pin`, signing as `key`.
    pub fn new(base_url: &str, pin: &str, key: Keypair) -> Result<Self, NetError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(pinned_client_config(pin)?)
            .https_only(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|source| NetError::Transport {
                url: base_url.to_owned(),
                source,
            })?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            key,
            transfer: TransferPolicy::default(),
            staging: None,
            chunk_cache: None,
        })
    }

    /// This client with other retry and upload settings.
    pub fn with_transfer_policy(mut self, policy: TransferPolicy) -> Self {
        self.transfer = policy;
        self
    }

    /// This client, keeping partial downloads under `dir` (see `crate::stage`).
    pub fn with_download_staging(mut self, dir: PathBuf) -> Self {
        self.staging = Some(dir);
        self
    }

    /// This client, keeping chunks fetched one by one under `dir` (see `crate::sparse`).
    pub fn with_chunk_cache(mut self, dir: PathBuf) -> Self {
        self.chunk_cache = Some(dir);
        self
    }

    pub(crate) fn chunk_cache(&self) -> Option<&Path> {
        self.chunk_cache.as_deref()
    }

    pub(crate) fn transfer(&self) -> &TransferPolicy {
        &self.transfer
    }

    pub(crate) fn staging(&self) -> Option<&Path> {
        self.staging.as_deref()
    }

    pub fn id(&self) -> NodeId {
        self.key.id()
    }

    /// Signature headers for a request, with a fresh nonce and the current time.
    pub fn signed_headers(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<SignatureHeaders, NetError> {
        self.signed_headers_digest(method, path, &Hash::of(body))
    }

    /// [`Self::signed_headers`] for a body whose BLAKE3 hash is `body_hash`.
    fn signed_headers_digest(
        &self,
        method: &str,
        path: &str,
        body_hash: &Hash,
    ) -> Result<SignatureHeaders, NetError> {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or_default();
        let nonce = hex_encode(&random_bytes::<16>()?);
        Ok(sign_request_digest(
            &self.key, method, path, body_hash, created, &nonce,
        ))
    }

    /// Sends a request with exactly the given headers (none: unsigned) and returns the raw
    /// status and body. The typed methods below are built on it; tests use it to send bad input.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
        headers: Option<&SignatureHeaders>,
    ) -> Result<(u16, Bytes), NetError> {
        let url = format!("{}{path}", self.base);
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| NetError::Decode {
            url: url.clone(),
            reason: format!("bad method {method}"),
        })?;
        let mut request = self.http.request(method, &url).body(body.into());
        if let Some(headers) = headers {
            request = request
                .header(CONTENT_DIGEST, &headers.content_digest)
                .header(SIGNATURE_INPUT, &headers.signature_input)
                .header(SIGNATURE, &headers.signature);
        }
        let transport = |source| NetError::Transport {
            url: url.clone(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport)?;
        Ok((status, bytes))
    }

    /// A signed request; a non-2xx answer becomes [`NetError::Api`].
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<Bytes, NetError> {
        let body = body.into();
        let headers = self.signed_headers(method, path, &body)?;
        self.send_signed(method, path, body, &headers).await
    }

    /// [`Self::call`] with a body whose hash was taken where it was made, so that signing it
    /// does not hash it again.
    pub async fn call_hashed(
        &self,
        method: &str,
        path: &str,
        body: Hashed<Bytes>,
    ) -> Result<Bytes, NetError> {
        let headers = self.signed_headers_digest(method, path, &body.hash())?;
        self.send_signed(method, path, body.into_bytes(), &headers)
            .await
    }

    async fn send_signed(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        headers: &SignatureHeaders,
    ) -> Result<Bytes, NetError> {
        let (status, bytes) = self.send_raw(method, path, body, Some(headers)).await?;
        if (200..300).contains(&status) {
            return Ok(bytes);
        }
        let error = serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| ApiError {
            error: "unknown".into(),
            message: String::from_utf8_lossy(&bytes).into_owned(),
        });
        Err(NetError::Api {
            url: format!("{}{path}", self.base),
            status,
            error,
        })
    }

    pub(crate) async fn call_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<T, NetError> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|error| NetError::Decode {
            url: format!("{}{path}", self.base),
            reason: error.to_string(),
        })
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, NetError> {
        self.call_json("POST", path, json_body(path, body)?).await
    }

    pub async fn register(&self, device: DeviceReport) -> Result<RegisterResponse, NetError> {
        self.post_json("/v1/nodes/register", &RegisterRequest { device })
            .await
    }

    pub async fn nodes(
        &self,
    ) -> Result<std::collections::BTreeMap<NodeId, corex_core::messages::NodeInfo>, NetError> {
        self.call_json("GET", "/v1/nodes", Vec::new()).await
    }

    /// Downloads `bytes` bytes from the coordinator's bench endpoint; returns how many came.
    pub async fn bench_download(&self, bytes: usize) -> Result<usize, NetError> {
        Ok(self
            .call("GET", &format!("/v1/bench/download/{bytes}"), Vec::new())
            .await?
            .len())
    }

    pub async fn lease(&self, wait_ms: u64) -> Result<LeaseResponse, NetError> {
        self.post_json("/v1/lease", &LeaseRequest { wait_ms }).await
    }

    /// Tells the coordinator this node cannot reveal the checkpoints an audit asked of it for
    /// `fragment`, so that it replays the whole fragment now.
    pub async fn decline_reveal(&self, fragment: &Hash) -> Result<(), NetError> {
        let path = "/v1/reveals/decline";
        let body = json_body(
            path,
            &DeclineRevealRequest {
                fragment: *fragment,
            },
        )?;
        self.call("POST", path, body).await?;
        Ok(())
    }

    pub async fn job(&self, job: &Hash) -> Result<JobDescriptor, NetError> {
        self.call_json("GET", &format!("/v1/jobs/{job}/spec"), Vec::new())
            .await
    }

    pub async fn submit_job(&self, spec: &JobSpec) -> Result<Hash, NetError> {
        let response: SubmitJobResponse = self
            .post_json("/v1/jobs", &SubmitJobRequest { spec: spec.clone() })
            .await?;
        Ok(response.job)
    }

    /// Declines, as a data holder, the federated job of `fragment` (see `DeclineJobRequest`).
    pub async fn decline_job(&self, fragment: &Hash, reason: &str) -> Result<(), NetError> {
        let path = "/v1/holders/decline";
        let body = json_body(
            path,
            &corex_core::messages::DeclineJobRequest {
                fragment: *fragment,
                reason: reason.to_owned(),
            },
        )?;
        self.call("POST", path, body).await.map(drop)
    }

    /// Cancels a running job of this key's.
    pub async fn cancel_job(&self, job: &Hash) -> Result<(), NetError> {
        self.call("POST", &format!("/v1/jobs/{job}/cancel"), Vec::new())
            .await
            .map(drop)
    }

    /// The jobs this key may read: its own, public ones (every job, for an operator).
    pub async fn jobs(&self) -> Result<Vec<JobStatus>, NetError> {
        self.call_json("GET", "/v1/jobs", Vec::new()).await
    }

    pub async fn job_status(&self, job: &Hash) -> Result<JobStatus, NetError> {
        self.call_json("GET", &format!("/v1/jobs/{job}"), Vec::new())
            .await
    }

    /// The job's status once more than `after_round` rounds are complete or it has left the
    /// running state, or after `wait_ms` at the latest (a long poll: see `JobWatchRequest`).
    pub async fn watch_job(
        &self,
        job: &Hash,
        after_round: u32,
        wait_ms: u64,
    ) -> Result<JobStatus, NetError> {
        let request = JobWatchRequest {
            after_round,
            wait_ms,
        };
        self.post_json(&format!("/v1/jobs/{job}/watch"), &request)
            .await
    }

    pub async fn job_report(&self, job: &Hash) -> Result<JobReport, NetError> {
        self.call_json("GET", &format!("/v1/jobs/{job}/report"), Vec::new())
            .await
    }

    /// The trained weights of a finished job, as safetensors bytes.
    pub async fn download_weights(&self, job: &Hash) -> Result<Bytes, NetError> {
        let weights: Hash = self
            .call_json("GET", &format!("/v1/jobs/{job}/weights"), Vec::new())
            .await?;
        self.fetch_blob(&weights).await
    }

    /// What a finished job of output work (inference, transform) produced.
    pub async fn job_outputs(&self, job: &Hash) -> Result<JobOutputs, NetError> {
        self.call_json("GET", &format!("/v1/jobs/{job}/outputs"), Vec::new())
            .await
    }

    pub async fn challenge(&self) -> Result<ChallengeIssued, NetError> {
        self.call_json("POST", "/v1/nodes/challenge", Vec::new())
            .await
    }

    pub async fn commit_challenge(&self, commitment: Hash) -> Result<ChallengeVector, NetError> {
        self.post_json(
            "/v1/nodes/challenge/commit",
            &ChallengeCommit { commitment },
        )
        .await
    }

    /// Sends the challenge product (f32 little-endian bytes).
    pub async fn answer_challenge(&self, product: Vec<u8>) -> Result<Capability, NetError> {
        self.call_json("POST", "/v1/nodes/challenge/answer", product)
            .await
    }

    pub async fn ledger_summary(&self) -> Result<LedgerSummary, NetError> {
        self.call_json("GET", "/v1/ledger", Vec::new()).await
    }

    /// The account `id` on the ledger; `None` if the ledger has never seen it.
    pub async fn ledger_account(&self, id: &NodeId) -> Result<Option<AccountView>, NetError> {
        match self
            .call_json("GET", &format!("/v1/ledger/accounts/{id}"), Vec::new())
            .await
        {
            Ok(view) => Ok(Some(view)),
            Err(error) if error.api_code() == Some("unknown_account") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Signs `body` with this client's key and the next nonce, submits it, and returns the
    /// receipt once the block holding it is stored.
    pub async fn submit_tx(&self, body: TxBody) -> Result<TxReceipt, NetError> {
        let summary = self.ledger_summary().await?;
        let nonce = self
            .ledger_account(&self.key.id())
            .await?
            .map_or(0, |view| view.account.nonce)
            + 1;
        let tx = SignedTx::sign(&self.key, &summary.genesis_hash, nonce, body);
        self.post_json("/v1/ledger/txs", &tx).await
    }
}

/// `body` as the JSON of a request to `path`.
pub(crate) fn json_body<B: Serialize>(path: &str, body: &B) -> Result<Bytes, NetError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|error| NetError::Decode {
            url: path.to_owned(),
            reason: error.to_string(),
        })
}
