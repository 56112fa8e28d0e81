//! The error type of the coordinator. Every refusal names the problem with a stable code
//! and maps to an HTTP status, so a client can tell a bad request from a stale one.

use corex_core::Hash;
use corex_core::request_signature::RequestSignatureError;
use corex_ledger::LedgerError;
use corex_scheduler::LeaseError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoordinatorError {
    #[error("malformed body: {0}")]
    MalformedBody(String),
    #[error("body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    Signature(#[from] RequestSignatureError),
    #[error("signature was created at {created}, outside ±{skew_s} s of the coordinator's clock")]
    StaleSignature { created: u64, skew_s: u64 },
    #[error("nonce {nonce} was already used by this key: replayed request refused")]
    ReplayedNonce { nonce: String },
    #[error("no capability challenge is waiting for this step; request one first")]
    NoChallenge,
    #[error(
        "node {0} failed too many audits (or the ledger removed it after repeated hard rejects) and gets no more work"
    )]
    Banned(String),
    #[error("registration refused: {0}")]
    SybilLimit(String),
    #[error("node {0} is not registered; POST /v1/nodes/register first")]
    UnregisteredNode(String),
    #[error("malformed id '{0}': expected 64 hex digits")]
    MalformedId(String),
    #[error("no such endpoint: {0}")]
    NoSuchEndpoint(String),
    #[error("unknown job {0}")]
    UnknownJob(Hash),
    #[error("unknown fragment {0}")]
    UnknownFragment(Hash),
    #[error("unknown blob {0}")]
    UnknownBlob(Hash),
    #[error("blob {blob} has no chunk {index}")]
    UnknownChunk { blob: Hash, index: usize },
    #[error("chunk bytes hash to {actual}, not to {claimed} named in the path")]
    ChunkHashMismatch { claimed: Hash, actual: Hash },
    #[error(
        "node {node} would have {would_stage} bytes of uploads staged; the limit is {limit} (submit the result, or wait for staged chunks to expire)"
    )]
    UploadQuota {
        node: String,
        would_stage: usize,
        limit: usize,
    },
    #[error("the coordinator holds its limit of {limit} bytes of staged uploads; try again later")]
    UploadsFull { limit: usize },
    #[error(
        "{} chunk(s) named by the manifest were never uploaded or have expired: {}; PUT /v1/uploads/{{hash}} them and submit again",
        .0.len(),
        list_chunks(.0)
    )]
    MissingChunks(Vec<Hash>),
    #[error("bad manifest: {0}")]
    BadManifest(String),
    #[error("fragment {0} belongs to a round that is already closed")]
    FragmentClosed(Hash),
    #[error("result is for model version {got}, but the round works on {current}")]
    StaleModel { got: Hash, current: Hash },
    #[error("{0}")]
    Lease(#[from] LeaseError),
    #[error("result claims {got} samples, the fragment has {expected}")]
    WrongSampleCount { expected: u32, got: u32 },
    #[error("result tensor does not hash to the result_hash in its header")]
    ResultHashMismatch,
    #[error("commitment signature does not verify for this node, fragment, model and result")]
    BadCommitment,
    #[error("wrong tensor shape: {0}")]
    WrongShape(String),
    #[error("tensor has a non-finite value (NaN or infinity) at index {index}")]
    NonFinite { index: usize },
    #[error("reported loss {0} is not finite")]
    NonFiniteLoss(f32),
    #[error("bad step trace: {0}")]
    BadTrace(String),
    #[error("no audit asked this node to reveal checkpoints for fragment {0}")]
    RevealNotAsked(Hash),
    #[error(
        "revealed parameters after step {step} do not hash to the checkpoint committed with the result"
    )]
    CheckpointMismatch { step: u32 },
    /// A compressed result's error-feedback chain does not continue: it must start from the
    /// node's last accepted state, or from zeros.
    #[error("feedback state {got} is neither this node's last accepted state nor zeros")]
    FeedbackChainBroken { got: Hash },
    /// A compressed job's result sent whole, or an uncompressed job's (or an audit's, or a
    /// reveal's) sent compressed.
    #[error("{0}")]
    CompressionMismatch(String),
    #[error(
        "revealed error-feedback state `{which}` does not hash to the one committed with the result"
    )]
    FeedbackMismatch { which: &'static str },
    #[error("a federated result must carry a data_commitment to the local data it used")]
    MissingDataCommitment,
    #[error(
        "local data commitment {got} differs from the {committed} this holder committed to earlier in the job"
    )]
    ShardChanged { committed: Hash, got: Hash },
    #[error("invalid job spec: {0}")]
    InvalidSpec(String),
    #[error("job {0} has not finished")]
    JobNotFinished(Hash),
    #[error("job {0} does not train: it publishes outputs (GET /v1/jobs/{0}/outputs), not weights")]
    NoWeights(Hash),
    #[error("job {0} trains: it publishes weights (GET /v1/jobs/{0}/weights), not outputs")]
    NoOutputs(Hash),
    #[error("dataset: {0}")]
    Dataset(String),
    #[error("training failed: {0}")]
    Training(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("the coordinator's core could not answer: {0}")]
    CoreFailed(String),
    #[error("ledger refused the transaction: {0}")]
    Ledger(#[from] LedgerError),
    #[error("unknown ledger account {0}")]
    UnknownLedgerAccount(String),
    #[error("the ledger has no block {0}")]
    UnknownBlock(u64),
    #[error("not admitted: {0}")]
    NotAdmitted(String),
    #[error("owner quota: {0}")]
    OwnerQuota(String),
    #[error("{0}")]
    OverBudget(String),
    #[error("unknown dataset: {0}")]
    UnknownDataset(String),
    #[error("job {0} is private: only its owner and the coordinator's operators may do that")]
    NotJobOwner(Hash),
    #[error("job {0} is not running")]
    JobNotRunning(Hash),
    #[error("key {0} is over its request rate; slow down")]
    RateLimited(String),
    #[error("the coordinator is handling as many requests as it allows; try again shortly")]
    Overloaded,
}

impl CoordinatorError {
    /// HTTP status: 4xx for anything the caller can fix or must not retry, 5xx for our faults.
    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedBody(_) | Self::MalformedId(_) => 400,
            Self::NoSuchEndpoint(_) => 404,
            Self::BodyTooLarge { .. } => 413,
            Self::Signature(_)
            | Self::StaleSignature { .. }
            | Self::ReplayedNonce { .. }
            | Self::BadCommitment => 401,
            Self::UnregisteredNode(_)
            | Self::Banned(_)
            | Self::SybilLimit(_)
            | Self::RevealNotAsked(_) => 403,
            Self::Lease(LeaseError::LeasedToOther { .. }) => 403,
            Self::UnknownJob(_)
            | Self::UnknownFragment(_)
            | Self::UnknownBlob(_)
            | Self::UnknownChunk { .. }
            | Self::NoWeights(_)
            | Self::NoOutputs(_) => 404,
            Self::UploadQuota { .. } | Self::MissingChunks(_) => 409,
            Self::ChunkHashMismatch { .. } | Self::BadManifest(_) => 422,
            Self::UploadsFull { .. } => 503,
            Self::Lease(LeaseError::UnknownFragment(_)) => 404,
            Self::FragmentClosed(_)
            | Self::StaleModel { .. }
            | Self::Lease(_)
            | Self::JobNotFinished(_)
            | Self::NoChallenge
            | Self::FeedbackChainBroken { .. } => 409,
            Self::WrongSampleCount { .. }
            | Self::ResultHashMismatch
            | Self::WrongShape(_)
            | Self::NonFinite { .. }
            | Self::NonFiniteLoss(_)
            | Self::BadTrace(_)
            | Self::CheckpointMismatch { .. }
            | Self::CompressionMismatch(_)
            | Self::FeedbackMismatch { .. }
            | Self::MissingDataCommitment
            | Self::ShardChanged { .. }
            | Self::InvalidSpec(_)
            | Self::Dataset(_) => 422,
            Self::Training(_) | Self::Storage(_) | Self::CoreFailed(_) => 500,
            Self::UnknownLedgerAccount(_) | Self::UnknownBlock(_) => 404,
            Self::NotAdmitted(_) | Self::NotJobOwner(_) => 403,
            Self::UnknownDataset(_) => 404,
            Self::OwnerQuota(_) | Self::JobNotRunning(_) => 409,
            Self::OverBudget(_) => 422,
            Self::RateLimited(_) => 429,
            Self::Overloaded => 503,
            Self::Ledger(error) => match error {
                LedgerError::BadSignature(_) => 401,
                LedgerError::NotCoordinator(_) => 403,
                LedgerError::UnknownAccount(_) | LedgerError::NotANode(_) => 404,
                LedgerError::NonceReplayed { .. }
                | LedgerError::NonceSkipped { .. }
                | LedgerError::AlreadyRegistered(_)
                | LedgerError::EpochNotOver { .. }
                | LedgerError::RoundOutOfOrder { .. } => 409,
                _ => 422,
            },
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedBody(_) => "malformed_body",
            Self::MalformedId(_) => "malformed_id",
            Self::NoSuchEndpoint(_) => "no_such_endpoint",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::Signature(RequestSignatureError::MissingHeader(_)) => "unsigned_request",
            Self::Signature(RequestSignatureError::BadSignature(_)) => "bad_signature",
            Self::Signature(RequestSignatureError::DigestMismatch) => "digest_mismatch",
            Self::Signature(RequestSignatureError::Malformed { .. }) => "malformed_signature",
            Self::StaleSignature { .. } => "stale_signature",
            Self::ReplayedNonce { .. } => "replayed_nonce",
            Self::UnregisteredNode(_) => "unregistered_node",
            Self::Banned(_) => "banned",
            Self::SybilLimit(_) => "sybil_limit",
            Self::NoChallenge => "no_challenge",
            Self::UnknownJob(_) => "unknown_job",
            Self::UnknownFragment(_) | Self::Lease(LeaseError::UnknownFragment(_)) => {
                "unknown_fragment"
            }
            Self::UnknownBlob(_) => "unknown_blob",
            Self::UnknownChunk { .. } => "unknown_chunk",
            Self::ChunkHashMismatch { .. } => "chunk_hash_mismatch",
            Self::UploadQuota { .. } => "upload_quota",
            Self::UploadsFull { .. } => "uploads_full",
            Self::MissingChunks(_) => "missing_chunks",
            Self::BadManifest(_) => "bad_manifest",
            Self::FragmentClosed(_) => "fragment_closed",
            Self::StaleModel { .. } => "stale_model",
            Self::Lease(LeaseError::LeasedToOther { .. }) => "leased_to_other",
            Self::Lease(LeaseError::NotLeased(_)) => "not_leased",
            Self::Lease(LeaseError::AlreadyDone(_)) => "already_done",
            Self::WrongSampleCount { .. } => "wrong_sample_count",
            Self::ResultHashMismatch => "result_hash_mismatch",
            Self::BadCommitment => "bad_commitment",
            Self::WrongShape(_) => "wrong_shape",
            Self::NonFinite { .. } => "non_finite",
            Self::NonFiniteLoss(_) => "non_finite_loss",
            Self::BadTrace(_) => "bad_trace",
            Self::RevealNotAsked(_) => "reveal_not_asked",
            Self::CheckpointMismatch { .. } => "checkpoint_mismatch",
            Self::FeedbackChainBroken { .. } => "feedback_chain_broken",
            Self::CompressionMismatch(_) => "compression_mismatch",
            Self::FeedbackMismatch { .. } => "feedback_mismatch",
            Self::MissingDataCommitment => "missing_data_commitment",
            Self::ShardChanged { .. } => "shard_changed",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::JobNotFinished(_) => "job_not_finished",
            Self::NoWeights(_) => "no_weights",
            Self::NoOutputs(_) => "no_outputs",
            Self::Dataset(_) => "dataset",
            Self::Training(_) => "training",
            Self::Storage(_) => "storage",
            Self::CoreFailed(_) => "core_failed",
            Self::UnknownLedgerAccount(_) => "unknown_account",
            Self::UnknownBlock(_) => "unknown_block",
            Self::NotAdmitted(_) => "not_admitted",
            Self::OwnerQuota(_) => "owner_quota",
            Self::OverBudget(_) => "over_budget",
            Self::UnknownDataset(_) => "unknown_dataset",
            Self::NotJobOwner(_) => "not_job_owner",
            Self::JobNotRunning(_) => "job_not_running",
            Self::RateLimited(_) => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Ledger(error) => match error {
                LedgerError::BadSignature(_) => "bad_tx_signature",
                LedgerError::NotCoordinator(_) => "not_coordinator",
                LedgerError::UnknownAccount(_) => "unknown_account",
                LedgerError::NotANode(_) => "not_a_node",
                LedgerError::AlreadyRegistered(_) => "already_registered",
                LedgerError::NodeRemoved(_) => "node_removed",
                LedgerError::NonceReplayed { .. } => "nonce_replayed",
                LedgerError::NonceSkipped { .. } => "nonce_skipped",
                LedgerError::ZeroAmount => "zero_amount",
                LedgerError::Overdraft { .. } => "overdraft",
                LedgerError::UnstakeTooMuch { .. } => "unstake_too_much",
                LedgerError::UnbondingNotDone { .. } => "unbonding_not_done",
                LedgerError::EpochNotOver { .. } => "epoch_not_over",
                LedgerError::QualityOutOfRange(_) => "quality_out_of_range",
                LedgerError::RoundOutOfOrder { .. } => "round_out_of_order",
                _ => "ledger",
            },
        }
    }
}

/// The first few chunk hashes in full, and how many more: enough to name them in a sentence.
fn list_chunks(chunks: &[Hash]) -> String {
    const NAMED: usize = 8;
    let named: Vec<String> = chunks.iter().take(NAMED).map(Hash::to_hex).collect();
    match chunks.len().checked_sub(NAMED) {
        Some(more) if more > 0 => format!("{} and {more} more", named.join(", ")),
        _ => named.join(", "),
    }
}
