//! Protocol messages between nodes, job owners and the coordinator (JSON unless noted).
//!
//! Names say the direction: requests go to the coordinator, responses come back. The one
//! binary body is a fragment result, framed by [`crate::result_frame`] so that the tensor travels
//! as raw little-endian bytes rather than as text; a result too large for one upload chunk goes
//! up as chunks and is submitted as a [`ChunkedResult`] instead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::chunk::Manifest;
use crate::compression::FeedbackCommitment;
pub use crate::device::{DeviceBandwidth, DeviceBenchmark, DeviceReport, MatmulSpeed};
use crate::feedback_state::StatePaths;
use crate::fragment::Fragment;
use crate::hash::Hash;
use crate::identity::{Keypair, NodeId, Signature};
use crate::job::JobSpec;
use crate::model_update::ModelUpdate;
use crate::trace::StepTrace;

/// What the coordinator knows about a registered node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub device: DeviceReport,
    /// Coordinator-clock milliseconds of first registration and of the latest request.
    pub registered_ms: u64,
    pub last_seen_ms: u64,
    /// What the capability challenge showed, once the node has answered one.
    #[serde(default)]
    pub capability: Option<Capability>,
    /// The network address (IP) the node registered from, as the coordinator saw it.
    #[serde(default)]
    pub endpoint: String,
    /// Median speed its recent timed fragments showed (MFLOP/s, lease to result).
    #[serde(default)]
    pub observed_mflops: Option<u64>,
    /// Set when its fragment times contradict its capability challenge (behaviour analysis).
    #[serde(default)]
    pub behaviour_flag: Option<String>,
}

/// The outcome of a capability challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// Size of the challenge product.
    pub n: u32,
    /// Speed shown: `2n³` FLOP over the time from the challenge to the commitment, in MFLOP/s.
    pub demonstrated_mflops: u64,
    pub claimed_gflops: Option<u64>,
    /// False when the product was wrong, or the claim exceeds 4× the speed shown.
    pub believed: bool,
}

/// A capability challenge: compute `A·B` for the `n × n` matrices seeded by `seed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeIssued {
    pub seed: u64,
    pub n: u32,
}

/// The node's commitment to its product, sent before it learns the check vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeCommit {
    pub commitment: Hash,
}

/// The check vector's seed, drawn after the commitment arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeVector {
    pub vector_seed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub device: DeviceReport,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub node: NodeId,
    pub coordinator: NodeId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// How long the coordinator may hold the request open waiting for work (long poll).
    pub wait_ms: u64,
}

/// A job's follower asks for its status once it has moved past what the follower saw: the
/// coordinator answers as soon as more than `after_round` rounds are complete or the job has
/// left the running state, and at the latest after `wait_ms` (bounded by its long-poll limit),
/// so that following a job costs a request per round rather than one per polling tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobWatchRequest {
    pub after_round: u32,
    pub wait_ms: u64,
}

/// A node that cannot reveal the checkpoints an audit asked of it for `fragment` (it
/// restarted, or dropped them to stay within its memory budget) says so, and the coordinator
/// replays the whole fragment at once instead of waiting for the audit deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclineRevealRequest {
    pub fragment: Hash,
}

/// `POST /v1/holders/decline`: a data holder will not compute this federated job (its owner
/// is not one the holder allows, its privacy is below the holder's floor, or the holder's
/// privacy budget for it is spent). The holder's fragments leave the job, unpaid and unpunished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclineJobRequest {
    pub fragment: Hash,
    /// Why, for the job's log (at most 256 bytes are kept).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LeaseResponse {
    /// Compute this fragment before `deadline_ms` from now; after that it may be re-issued.
    /// `model` is the manifest of the fragment's model version, so a node that lacks it can
    /// fetch the chunks at once (it checks the manifest against `fragment.model`).
    /// With `audit`, the fragment is an audit task: its replay goes back whole, never
    /// compressed. With `updates` (the last rounds' compressed model updates, oldest first,
    /// the last one ending at `fragment.model`), a node that holds the version one of them
    /// starts from applies it and those after it instead of fetching the model whole (see
    /// [`crate::model_update`]); it checks the result against `fragment.model`.
    Work {
        fragment: Box<Fragment>,
        model: Manifest,
        deadline_ms: u64,
        #[serde(default)]
        audit: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        updates: Vec<ModelUpdate>,
    },
    /// No work right now; ask again after `retry_ms`.
    Idle { retry_ms: u64 },
    /// An audit picked a segment of the node's traced result for `fragment` (at model version
    /// `model`): send the parameters it committed to at the steps `steps`, concatenated in
    /// that order, as a result for [`Fragment::derive_reveal_id`](crate::Fragment::derive_reveal_id).
    /// With `leaves` (a prefix audit, see [`crate::trace`]: ascending leaf indices), each
    /// checkpoint is opened at those leaves only instead of sent whole: their values,
    /// checkpoint by checkpoint, with their paths in the header's `checkpoint_paths`.
    /// With `feedback` (a compressed result: the leaves of its error-feedback states the audit
    /// opens, ascending), those leaves of the state before the result and then of the state
    /// after it follow the checkpoints, with their paths in the header's `state_paths` (see
    /// [`crate::feedback_state`]).
    Reveal {
        fragment: Hash,
        model: Hash,
        steps: Vec<u32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        leaves: Vec<u32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        feedback: Vec<u32>,
    },
}

/// The header of a fragment result. The node signs `commitment`, which binds node, fragment,
/// model version and the hash of the result tensor bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultHeader {
    pub fragment: Hash,
    pub model: Hash,
    /// Mean loss over the fragment's samples, as the node computed it.
    pub loss: f32,
    pub samples: u32,
    /// Wall time of the computation on the node.
    pub compute_ms: u64,
    /// BLAKE3 of the tensor bytes that follow the header.
    pub result_hash: Hash,
    pub commitment_signature: Signature,
    /// A federated result's commitment to the local data behind it (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_commitment: Option<LocalDataCommitment>,
    /// A traced local-steps result's step trace (see [`crate::trace`]); the signed commitment
    /// then covers it too. Absent for every other result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<StepTrace>,
    /// A compressed result's error-feedback states (the tensor is then the compressed bytes,
    /// and the signed commitment covers the states too). Absent for every other result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<FeedbackCommitment>,
    /// A reveal's paths to the feedback-state leaves it opens (see
    /// [`crate::feedback_state`]). Absent for every other result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_paths: Option<StatePaths>,
    /// A reveal's paths to the checkpoint leaves a prefix audit opens, checkpoint by
    /// checkpoint, leaf by leaf (see [`crate::trace`]). Absent for every other result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_paths: Option<Vec<Vec<Hash>>>,
}

/// What an untraced result reports besides its tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResultReport {
    pub loss: f32,
    pub samples: u32,
    pub compute_ms: u64,
}

impl ResultHeader {
    /// The header `key` sends with an untraced, non-federated result of `fragment` at model
    /// version `model` whose tensor bytes hash to `result_hash`: `key`'s signature over the
    /// commitment `H(node ‖ fragment ‖ model ‖ result)`.
    pub fn signed(
        key: &Keypair,
        fragment: Hash,
        model: Hash,
        result_hash: Hash,
        report: ResultReport,
    ) -> Self {
        let commitment =
            crate::fragment::result_commitment(&key.id(), &fragment, &model, &result_hash);
        Self {
            fragment,
            model,
            loss: report.loss,
            samples: report.samples,
            compute_ms: report.compute_ms,
            result_hash,
            commitment_signature: key.sign(commitment.as_bytes()),
            data_commitment: None,
            trace: None,
            feedback: None,
            state_paths: None,
            checkpoint_paths: None,
        }
    }
}

/// What a data holder commits to about the local data behind a federated result, without
/// revealing any of it: both hashes are salted with a secret that never leaves the node, so
/// nobody can test a guess of the data against them, yet the holder cannot later claim other
/// data or other samples than the ones it committed to (it opens them by revealing the salt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalDataCommitment {
    /// `BLAKE3("corex-local-shard" ‖ salt ‖ content hash of the local dataset)`; one holder's
    /// results of one job all carry the same.
    pub shard: Hash,
    /// `BLAKE3("corex-local-samples" ‖ salt ‖ the sample indices used, u32 LE)`.
    pub samples: Hash,
}

/// A result whose tensor went up as chunks (`PUT /v1/uploads/{chunk hash}`) instead of inline:
/// the same header as in the frame, and the manifest of the tensor bytes. The coordinator
/// assembles the tensor from the chunks this node staged and checks it like an inline result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkedResult {
    pub header: ResultHeader,
    pub tensor: Manifest,
}

/// Asks which of these chunks the coordinator does not hold for the asking node, so that an
/// upload cut off resumes with only those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingChunksRequest {
    pub chunks: Vec<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingChunksResponse {
    /// The asked-for chunks not staged for this node, in the order asked, without repeats.
    pub missing: Vec<Hash>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitJobRequest {
    pub spec: JobSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitJobResponse {
    pub job: Hash,
}

/// `POST /v1/datasets`: registers a dataset whose encoding (`corex_ml::Dataset::to_bytes`) the
/// owner has uploaded as chunks (`PUT /v1/uploads/{hash}`), named by `manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadDatasetRequest {
    pub manifest: Manifest,
}

/// The registered dataset: its content hash (what a spec's `Uploaded { dataset }` names) and
/// its shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadDatasetResponse {
    pub dataset: Hash,
    pub samples: u64,
    pub features: u64,
    pub classes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    Running,
    Finished,
    Failed {
        reason: String,
    },
    /// Its owner (or an operator) cancelled it; rounds it closed before stay recorded.
    Cancelled,
}

/// Work credited to one node in one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeContribution {
    /// Accepted fragments (the ones that count and are paid).
    pub fragments: u64,
    pub samples: u64,
    pub flops: u64,
    /// Of the accepted fragments, how many were replayed by an audit.
    #[serde(default)]
    pub audited: u64,
    /// Results whose audit failed (hard rejects).
    #[serde(default)]
    pub rejected: u64,
    /// Audit replays this node computed for other nodes' results and that were accepted.
    #[serde(default)]
    pub audits_done: u64,
    /// Milliseconds from lease to result, summed over its accepted fragments.
    #[serde(default)]
    pub busy_ms: u64,
}

/// What verification concluded about a result that passed intake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum ResultVerdict {
    /// Counted and paid. `audited`: its replay matched. `flag`: what gradient consistency
    /// noticed (a flag always forces an audit, and only the audit decides).
    Accepted { audited: bool, flag: Option<String> },
    /// The replay disagreed: the work was not done as assigned. The replay's gradient took
    /// its place in the aggregate; the ledger slashes.
    Rejected {
        reason: String,
        /// BLAKE3 of (fragment, submitted result hash, replay result hash).
        evidence: Hash,
    },
    /// A federated result the owner's held-out validation found harmful or out of line with
    /// its round: statistics, not proof (an honest holder with unusual data can trip them),
    /// so it is left out of the aggregate and unpaid, but never slashed and never removes the
    /// holder (a soft reject on the ledger).
    Discarded {
        reason: String,
        /// BLAKE3 of (fragment, result hash, the held-out figures).
        evidence: Hash,
    },
}

/// One result of a round: who computed which fragment, its signed commitment, its cost and
/// the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub node: NodeId,
    pub fragment: Hash,
    pub commitment: Hash,
    pub flops: u64,
    pub verdict: ResultVerdict,
    /// The node whose replay audited this result, when a node did (absent: the coordinator
    /// replayed it, or it was not audited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audited_by: Option<NodeId>,
    /// The steps `[first, end)` a segment audit replayed and found in agreement, when one
    /// settled this result's audit (see [`crate::trace`]); absent for a whole-fragment replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audited_steps: Option<[u32; 2]>,
    /// A federated result's commitment to its local data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_commitment: Option<LocalDataCommitment>,
    /// A federated result's held-out validation loss: the loss on the job owner's validation
    /// data of the round's model moved by this result alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_loss: Option<f32>,
    /// A federated result's leave-one-out gain: the validation loss of the round's aggregate
    /// without it minus that with it (positive: the result helped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_gain: Option<f32>,
}

/// An audit replay a node computed, and what became of it. A replay that agrees with the
/// result it audits is accepted (and paid as verification work); one that disagrees is
/// arbitrated by the coordinator's own replay, and a replay that is wrong is hard-rejected
/// like any false result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAudit {
    pub auditor: NodeId,
    /// The audited fragment.
    pub fragment: Hash,
    /// The auditor's commitment over the audit task's id (`Fragment::derive_audit_id`).
    pub commitment: Hash,
    pub flops: u64,
    pub verdict: ResultVerdict,
}

/// One finished round, as recorded in the job report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    pub round: u32,
    /// Model version the round started from.
    pub model: Hash,
    /// Sample-weighted mean of the fragments' reported losses: the training loss, for an
    /// inference job the predictions' cross-entropy, 0 for a transform job.
    pub train_loss: f32,
    pub test_loss: Option<f32>,
    pub test_accuracy: Option<f32>,
    /// Every result with its verdict, in fragment order.
    pub results: Vec<ResultRecord>,
    /// The audit seed revealed at this round's close (it follows the previous one in the
    /// coordinator's seed chain): which results were replayed follows from it.
    pub audit_seed: Hash,
    /// Audit replays computed by nodes this round, in fragment order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audits: Vec<NodeAudit>,
    /// Milliseconds from the round's first lease to its aggregation.
    pub wall_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub job: Hash,
    pub name: String,
    pub owner: NodeId,
    pub state: JobState,
    /// Rounds completed so far.
    pub round: u32,
    pub rounds: u32,
    /// Hash of the newest model version.
    pub model: Hash,
    pub last_train_loss: Option<f32>,
    /// The newest held-out loss (for a language model, nats per byte).
    #[serde(default)]
    pub last_test_loss: Option<f32>,
    pub last_test_accuracy: Option<f32>,
    pub nodes: BTreeMap<NodeId, NodeContribution>,
    /// Fragments and audit tasks given to another node (or, for an audit, replayed by the
    /// coordinator) after their holder's lease expired, and straggler copies.
    pub re_issued_fragments: u64,
}

/// The full record of a job: written by the coordinator, downloaded by the owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    pub status: JobStatus,
    pub spec: JobSpec,
    pub dataset_hash: Hash,
    pub rounds: Vec<RoundRecord>,
    pub coordinator: NodeId,
    pub wall_ms: u64,
    /// The privacy spent by each data holder of a differentially private federated job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyReport>,
    /// What a finished job of output work (inference, transform) produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<JobOutputs>,
    /// The statistics tabular features were standardized with, fitted on the training split;
    /// apply them (`Standardization::apply_row`) to any data the trained model sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardization: Option<crate::scaling::Standardization>,
}

/// What a job of output work (inference, transform) produced, published as two blobs
/// (`GET /v1/blobs/{hash}`). Such a job passes over its dataset once, in sample order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutputs {
    /// The rows: f32 little-endian, row-major, `rows × width`, in the order of the rounds'
    /// sample indices (round by round, fragment by fragment): row `i` is the output for
    /// sample `indices[i]`.
    pub values: Hash,
    /// The dataset sample of each row: `rows` u32 little-endian.
    pub indices: Hash,
    pub rows: u64,
    /// Values per row: the model's classes (logits), or the transform's output width.
    pub width: u32,
    /// For inference: the fraction of rows whose highest logit is the sample's label, over
    /// every predicted sample (training samples included when the weights were trained on
    /// this dataset: not a held-out score; the rounds' `test_accuracy` is that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_accuracy: Option<f32>,
}

/// The differential privacy a federated job's data holders spent, from the accountant over
/// the local steps each actually took (Rényi DP of the Poisson-subsampled Gaussian).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyReport {
    pub clip_norm: f64,
    pub noise_multiplier: f64,
    pub delta: f64,
    /// The largest ε of any holder: the guarantee every holder's data has.
    pub epsilon: f64,
    pub holders: Vec<HolderPrivacy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolderPrivacy {
    pub node: NodeId,
    /// Poisson sampling rate of each local step: `local_batch / samples`.
    pub sampling_rate: f64,
    /// Noisy local steps taken on this holder's data.
    pub steps: u64,
    pub epsilon: f64,
}

/// The body of every 4xx/5xx answer: a stable code and a sentence naming the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub message: String,
}
