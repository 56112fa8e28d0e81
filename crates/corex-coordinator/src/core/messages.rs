//! What goes into the coordinator's core ([`Event`]) and what comes out of it ([`Command`]).
//!
//! An event is something that happened at the edge: a request that passed authentication and
//! its body checks (with the request's id, to answer it by), a computation that finished on
//! the compute pool, a timer. A command is something the shell must do: answer a request,
//! start a computation, persist, hand the ledger records, wake waiting lease requests. The
//! shell carries commands out in order; an answer is sent only once every `Persist` before it
//! in the same batch is durable.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use corex_core::hash::Hashed;
use corex_core::messages::{
    Capability, ChallengeIssued, ChallengeVector, ChunkedResult, DeviceReport, LeaseResponse,
    RegisterResponse, ResultHeader,
};
use corex_core::{Hash, JobSpec, NodeId};
use corex_ml::Dataset;

use crate::durability::Checkpoint;
use crate::engine::{ChallengeCheck, Coordinator};
use crate::error::CoordinatorError;
use crate::job_run::{
    CloseWork, ClosedWork, JobCheckpoint, KeptResult, Progress, SavedProgression, SignedTensor,
};
use crate::ledger::{LedgerRecord, Suspicion};
use crate::prepared::PreparedData;
use crate::store::StoredNode;

/// The shell's name for a request waiting for its answer.
pub type RequestId = u64;

/// A read of the core's state, answered with whatever it returns (boxed for the shell to
/// unbox). Reads change nothing.
pub type Read =
    Box<dyn FnOnce(&Coordinator) -> Result<Box<dyn Any + Send>, CoordinatorError> + Send>;

/// Something that happened at the edge, for the core to take in.
pub enum Event {
    /// A node asks to join (or joins again) from network address `endpoint`.
    NodeRegistered {
        request: RequestId,
        node: NodeId,
        device: DeviceReport,
        endpoint: String,
    },
    /// A node asks for a capability challenge; `seed` comes from the OS.
    ChallengeAsked {
        request: RequestId,
        node: NodeId,
        seed: u64,
    },
    ChallengeCommitted {
        request: RequestId,
        node: NodeId,
        commitment: Hash,
        vector_seed: u64,
    },
    /// A node's answer to its committed challenge: the product, already decoded.
    ChallengeAnswered {
        request: RequestId,
        node: NodeId,
        product: Vec<f32>,
    },
    /// The compute pool checked a challenge answer ([`Command::CheckChallenge`]); `Err`: the
    /// check itself failed (it panicked).
    ChallengeChecked {
        request: RequestId,
        node: NodeId,
        capability: Result<Capability, String>,
    },
    /// A node asks for work; `ahead` nodes of higher priority wait too.
    LeaseAsked {
        request: RequestId,
        node: NodeId,
        ahead: usize,
    },
    /// A result whose tensor the edge decoded, hashed and checked against its signature.
    ResultArrived {
        request: RequestId,
        node: NodeId,
        header: Box<ResultHeader>,
        signed: SignedTensor,
    },
    /// A result whose tensor the node uploaded as chunks.
    ChunkedResultArrived {
        request: RequestId,
        node: NodeId,
        result: Box<ChunkedResult>,
    },
    /// A node cannot reveal the checkpoints an audit asked of it.
    RevealDeclined {
        request: RequestId,
        node: NodeId,
        fragment: Hash,
    },
    /// A data holder will not compute a federated job.
    JobDeclined {
        request: RequestId,
        node: NodeId,
        fragment: Hash,
    },
    /// A chunk of a result (a registered node) or of a dataset (`owner_upload`).
    ChunkStaged {
        request: RequestId,
        node: NodeId,
        chunk: Hash,
        bytes: Hashed<Bytes>,
        owner_upload: bool,
    },
    MissingChunksAsked {
        request: RequestId,
        node: NodeId,
        chunks: Vec<Hash>,
        owner_upload: bool,
    },
    /// An owner's uploaded dataset, assembled and decoded at the edge.
    DatasetUploaded {
        request: RequestId,
        owner: NodeId,
        dataset: Arc<Dataset>,
        bytes: u64,
        chunks: Vec<Hash>,
    },
    /// A job that passed admission, the budget and the spec's rules, its data prepared and
    /// kept; `sequence` is a submission number never used before; `replay_mflops` the
    /// coordinator's replay speed when the edge measured it for this job.
    JobSubmitted {
        request: RequestId,
        owner: NodeId,
        spec: Box<JobSpec>,
        prepared: PreparedData,
        sequence: u64,
        replay_mflops: Option<u64>,
    },
    JobCancelled {
        request: RequestId,
        by: NodeId,
        job: Hash,
    },
    /// The compute pool finished a round's close ([`Command::CloseRound`]); `Err`: why not.
    CloseComputed {
        job: Hash,
        closed: Result<Box<ClosedWork>, String>,
    },
    /// A submitted job's first checkpoint is stored (`Err`: why it could not be); the job
    /// leases work only from then on.
    JobStored {
        job: Hash,
        stored: Result<(), String>,
    },
    /// A job's checkpoint is stored, with its history up to `history_stored` rounds.
    CheckpointStored { job: Hash, history_stored: usize },
    /// Restored at start: jobs whose kept results completed their round.
    Restored { progressed: Vec<(Hash, Progress)> },
    /// The sweep timer: overdue leases and audit deadlines, idle uploads, audit events for the
    /// ledger; `entropy` (from the OS) is mixed into the audit seeds.
    TimerFired { entropy: Option<[u8; 32]> },
    /// A read of the state.
    Read { request: RequestId, read: Read },
}

impl Event {
    /// The request this event is for, if it is for one.
    pub fn request(&self) -> Option<RequestId> {
        match self {
            Self::NodeRegistered { request, .. }
            | Self::ChallengeAsked { request, .. }
            | Self::ChallengeCommitted { request, .. }
            | Self::ChallengeAnswered { request, .. }
            | Self::ChallengeChecked { request, .. }
            | Self::LeaseAsked { request, .. }
            | Self::ResultArrived { request, .. }
            | Self::ChunkedResultArrived { request, .. }
            | Self::RevealDeclined { request, .. }
            | Self::JobDeclined { request, .. }
            | Self::ChunkStaged { request, .. }
            | Self::MissingChunksAsked { request, .. }
            | Self::DatasetUploaded { request, .. }
            | Self::JobSubmitted { request, .. }
            | Self::JobCancelled { request, .. }
            | Self::Read { request, .. } => Some(*request),
            Self::CloseComputed { .. }
            | Self::JobStored { .. }
            | Self::CheckpointStored { .. }
            | Self::Restored { .. }
            | Self::TimerFired { .. } => None,
        }
    }
}

/// What an answered request gets.
pub enum Answer {
    /// Taken; nothing to say (204).
    Done,
    Registered(RegisterResponse),
    Challenge(ChallengeIssued),
    ChallengeVector(ChallengeVector),
    Capability(Capability),
    Lease(LeaseResponse),
    MissingChunks(Vec<Hash>),
    JobSubmitted(Hash),
    Read(Box<dyn Any + Send>),
}

/// What must be durable before the answers after it in the same batch go out.
pub enum Persist {
    /// Nodes' registration, proven capability and audit record.
    Standing(Vec<StoredNode>),
    /// An accepted fragment result, kept until its round closes.
    Result(Box<KeptResult>),
    /// A job's checkpoint, stored at once (a job submitted or cancelled).
    Job(Box<JobCheckpoint>, Option<Box<SavedProgression>>),
}

/// Something the shell must do, in the order given.
pub enum Command {
    Answer {
        request: RequestId,
        answer: Result<Answer, CoordinatorError>,
    },
    Persist(Persist),
    /// Store a job's progress behind the ledger: its files (an ended job's), then, once the
    /// ledger holds `recorded_round`, its checkpoint; then [`Event::CheckpointStored`].
    StoreProgress {
        checkpoint: Box<Checkpoint>,
        recorded_round: Option<u32>,
    },
    /// Hand the ledger recorder these records, in this order.
    AppendLedger(Vec<LedgerRecord>),
    RecordSuspicion {
        node: NodeId,
        suspicion: Suspicion,
    },
    /// Leases that expired: soft rejects for the ledger.
    RecordTimeouts(Vec<(Hash, NodeId)>),
    /// Compute a round's close on the compute pool; back as [`Event::CloseComputed`].
    CloseRound {
        job: Hash,
        work: Box<CloseWork>,
    },
    /// Check a challenge answer on the compute pool; back as [`Event::ChallengeChecked`].
    CheckChallenge {
        request: RequestId,
        node: NodeId,
        check: Box<ChallengeCheck>,
        product: Vec<f32>,
    },
    /// New work may be there: wake the lease requests waiting for it.
    WakeLeaseWaiters,
}

impl Command {
    pub(crate) fn answer(request: RequestId, answer: Result<Answer, CoordinatorError>) -> Self {
        Self::Answer { request, answer }
    }
}
