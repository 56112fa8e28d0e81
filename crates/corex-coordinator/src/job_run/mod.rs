//! One running job: its model versions, the current round's fragments and leases, the
//! accepted results, and the aggregation that turns a complete round into the next version.
//!
//! Invariant: a refused result changes nothing here. Every check runs before the first write,
//! so a job fed any mix of bad and good results ends with the same model as a clean run.
//! Aggregation runs in fragment order, never arrival order, so the result is deterministic.
//!
//! A round whose results are all in is planned for audits (the seed is revealed only then).
//! Audited fragments become audit tasks that proven nodes lease like fragments, under ids of
//! their own; the round closes when every task has a node's replay, or at the audit deadline,
//! when the coordinator replays what is left itself. A round with no eligible auditor (no
//! proven node on other hardware) is replayed by the coordinator at once. An audited result
//! with a step trace, unflagged, is instead checked by replaying one segment of its steps from
//! checkpoints its submitter reveals (see `reveals`).
//!
//! A job of output work (inference, transforms) does not train: its model version is fixed
//! for the whole job, its rounds pass over the dataset once, and each closed round's accepted
//! rows (a rejected result replaced by its replay, as for training) are kept in fragment
//! order and published at the end instead of weights (see [`crate::outputs`]).
//!
//! A federated job's round has one fragment per data holder, leased only to that holder and
//! computed on its local data; its results carry a commitment to that data, cannot be
//! replayed, and are judged by [`judge_federated`] instead (the coordinator holds only the
//! job owner's held-out validation split).
//!
//! This file holds the job's state and round opening; `leasing` hands out fragments, audit
//! tasks, reveal requests and straggler copies, `intake` checks results, `audit_phase` runs a
//! complete round's audits and closes overdue rounds, `reveals` runs segment audits, `close`
//! takes a complete round out and applies its close, which `close_compute` computes off the
//! engine lock (judges, aggregates, steps, evaluates), and opens the next round; `compressed`
//! keeps compressed results' error-feedback chains and claims.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use corex_core::fragment::result_commitment;
use corex_core::hash::Hashed;
use corex_core::messages::{
    JobOutputs, JobState, JobStatus, LocalDataCommitment, NodeAudit, NodeContribution,
    ResultHeader, ResultRecord, ResultVerdict, RoundRecord,
};
use corex_core::model_update::MAX_UPDATE_CHAIN;
use corex_core::tensor::{bytes_to_f32s, f32s_to_bytes};
use corex_core::trace::StepTrace;
use corex_core::{Fragment, Granularity, Hash, JobSpec, NodeId, Standardization, WorkSpec};
use corex_ml::{Dataset, Split, Trainer};
use corex_scheduler::{LeaseBook, LeaseError, slice_federated_round, slice_round};

use crate::auditors::Auditors;
use crate::blobs::BlobStore;
use crate::error::CoordinatorError;
use crate::federated::{HeldOut, held_out_checks, judge_federated, may_hold};
use crate::outputs::{Outputs, fixed_parameters, pass_samples};
use crate::prepared::PreparedData;
use crate::verification::{
    AuditPlan, Candidate, NodeReplay, Opened, Replay, ResultKind, RoundJudgement, Screen, Verifier,
};

mod audit_phase;
mod checkpoint;
pub use checkpoint::{JobCheckpoint, SavedProgression};
mod close;
mod close_compute;
pub use close_compute::{CloseWork, ClosedWork};
mod compressed;
use compressed::{Claim, FeedbackChains, OpenedStates, SentCompressed, decode_sent};
mod declines;
mod intake;
pub use intake::{SignedTensor, Submitted};
mod kept;
pub use kept::{KeptMeta, KeptResult};
mod leasing;
pub use leasing::{DEFERRED_RETRY_MS, JobLease};
mod reveals;

use reveals::RevealTask;

/// A federated round closes without the holders that have not delivered once `lease_ms`
/// has passed since it opened, none holds a live lease, and at least 1/this of its fragments
/// are in (partial participation: a holder that went offline does not stall the job).
pub const MIN_FEDERATED_QUORUM: usize = 2;

/// A result that passed every check, waiting for its round to complete.
struct Accepted {
    node: NodeId,
    /// The result tensor: an update (gradient, pseudo-gradient), logits or transformed rows
    /// (shared with the copy kept on disk, see `kept`).
    gradient: Arc<Vec<f32>>,
    loss: f32,
    samples: u32,
    commitment: Hash,
    result_hash: Hash,
    /// Milliseconds from the lease to this result.
    elapsed_ms: u64,
    data_commitment: Option<LocalDataCommitment>,
    /// A traced local-steps result's step trace, which segment audits check.
    trace: Option<StepTrace>,
    /// A compressed result's bytes as sent (`gradient` holds them decoded) and its feedback
    /// states.
    compressed: Option<SentCompressed>,
}

struct RoundState {
    fragments: Vec<Fragment>,
    leases: LeaseBook,
    results: Vec<Option<Accepted>>,
    opened_ms: u64,
    first_lease_ms: Option<u64>,
    /// Set once every result is in and the audits are out.
    auditing: Option<Auditing>,
}

impl RoundState {
    /// A round of `fragments`, none leased yet.
    fn open(fragments: Vec<Fragment>, now_ms: u64) -> Self {
        let count = fragments.len();
        Self {
            leases: LeaseBook::new(count),
            results: (0..count).map(|_| None).collect(),
            fragments,
            opened_ms: now_ms,
            first_lease_ms: None,
            auditing: None,
        }
    }
}

/// A complete round waiting for its audit replays.
struct Auditing {
    plan: AuditPlan,
    tasks: Vec<AuditTask>,
    /// Segment audits waiting for their checkpoints (see `reveals`).
    reveals: Vec<RevealTask>,
    /// Revealed checkpoints published for auditors to replay segments from; retired when
    /// the round closes.
    published: Vec<Hash>,
    /// When the round's last result came in and the audits were planned.
    began_ms: u64,
    /// After this the coordinator replays whatever no node has returned.
    deadline_ms: u64,
}

impl Auditing {
    /// Every audit task has a node's replay and every reveal its checkpoints.
    fn is_complete(&self) -> bool {
        self.tasks.iter().all(|task| task.replay.is_some())
            && self
                .reveals
                .iter()
                .all(|reveal| !reveal.answer.is_awaited())
    }
}

/// One audited fragment, handed to another node to replay.
struct AuditTask {
    /// Position of the audited fragment in the round.
    index: usize,
    /// The fragment under its audit id (`Fragment::derive_audit_id`).
    fragment: Fragment,
    submitter: NodeId,
    /// Who holds the task, until when.
    holder: Option<(NodeId, u64)>,
    replay: Option<NodeReplay>,
    commitment: Option<Hash>,
}

/// The engine's parts a result can touch: the published blobs, the verifier, and the rule of
/// who may audit whom.
pub struct Engine<'a> {
    pub blobs: &'a mut BlobStore,
    pub verifier: &'a mut Verifier,
    pub auditors: Auditors<'a>,
}

/// How long a fragment took its node, from lease to result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentTiming {
    pub cost_flops: u64,
    pub elapsed_ms: u64,
}

/// What accepting a result led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The round still waits for other fragments.
    Accepted,
    /// Every result is in; the round waits for audit replays from nodes.
    Auditing,
    /// The round closed and the next one is open.
    RoundClosed,
    /// The last round closed: the job is finished.
    JobFinished,
    /// Every result and audit is in: the round's close waits for its computation off the
    /// lock (`JobRun::take_close_work`, `CloseWork::compute`, `JobRun::finish_close`).
    Closing,
    /// The round's close failed: the job has failed, and its status says why.
    JobFailed,
}

/// What a running job computes on.
pub struct JobData {
    dataset: Arc<Dataset>,
    split: Split,
    /// The samples rounds are drawn from: the train split (an epoch stream) for training, the
    /// dataset's samples in order (one pass) for output work.
    pool: Vec<u32>,
}

/// What the rounds of a job move forward.
enum Progression {
    /// The model, which the job's optimizer steps at every round's close, and, in a job with
    /// compressed downloads, the version published to the nodes (`corex_core::model_update`).
    Training {
        trainer: Box<Trainer>,
        published: Option<Vec<f32>>,
    },
    /// The rows of a job of output work, collected at parameters fixed for the whole job
    /// (empty for a transform, which has no model).
    Outputs {
        parameters: Vec<f32>,
        collected: Outputs,
    },
}

impl Progression {
    /// The parameters the current round works at: the published version.
    fn parameters(&self) -> Vec<f32> {
        match self {
            Self::Training {
                published: Some(published),
                ..
            } => published.clone(),
            Self::Training { trainer, .. } => trainer.parameters(),
            Self::Outputs { parameters, .. } => parameters.clone(),
        }
    }

    /// The parameters the job's owner gets: the optimizer's, which a compressed download
    /// publishes only in part each round.
    fn trained(&self) -> Vec<f32> {
        match self {
            Self::Training { trainer, .. } => trainer.parameters(),
            Self::Outputs { parameters, .. } => parameters.clone(),
        }
    }
}

pub struct JobRun {
    pub id: Hash,
    pub owner: NodeId,
    pub spec: JobSpec,
    pub dataset_hash: Hash,
    /// The shared dataset published as a blob for nodes to fetch: none for the built-in digits
    /// (every node has them) and none for a federated job (there `dataset` is the owner's
    /// validation data, which stays here).
    pub dataset_blob: Option<Hash>,
    /// The statistics tabular features were standardized with (fitted on the training split).
    pub standardization: Option<Standardization>,
    /// What the job computes on, while it runs (an ended job lets it go).
    data: Option<Arc<JobData>>,
    /// The submission sequence its id was made with.
    sequence: u64,
    /// What the rounds move forward; out of the job while a round's close computes.
    progression: Option<Progression>,
    /// The progression as the last close (or the start) left it, as bytes, until the shell
    /// takes it into a checkpoint (`checkpoint`).
    saved: Option<SavedProgression>,
    /// The round being closed, until the shell takes it to compute (see `close`).
    closing: Option<Box<CloseWork>>,
    /// Hash of the current model version's parameter bytes.
    model: Hash,
    /// The version before the current one, kept so late fetches still resolve.
    previous_model: Option<Hash>,
    /// In a job with compressed downloads, the updates that made the last versions, oldest
    /// first, the last one making the current version: `(version it starts from, the
    /// update's blob)`, at most `MAX_UPDATE_CHAIN`.
    updates: VecDeque<(Hash, Hash)>,
    round: Option<RoundState>,
    completed_rounds: u32,
    closed_fragments: HashSet<Hash>,
    /// Each federated data holder's shard commitment, fixed by its first accepted result.
    shards: BTreeMap<NodeId, Hash>,
    /// Data holders that declined this federated job: no round leases to them again.
    declined: BTreeSet<NodeId>,
    /// Each node's error-feedback chain, in a job whose updates are compressed.
    feedback: Option<FeedbackChains>,
    history: Vec<RoundRecord>,
    /// How many of `history`'s records are known stored (see `checkpoint`).
    history_stored: usize,
    contributions: BTreeMap<NodeId, NodeContribution>,
    reissued: u64,
    state: JobState,
    /// Hash of the trained weights (safetensors), once a training job finished.
    pub weights: Option<Hash>,
    /// The rows a job of output work produced, once finished.
    pub outputs: Option<JobOutputs>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// Whether the job's submission is stored: until then it leases nothing, so that no
    /// result for it is acknowledged before the job itself would survive a crash.
    pub stored: bool,
}

impl JobRun {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: Hash,
        owner: NodeId,
        sequence: u64,
        spec: JobSpec,
        prepared: PreparedData,
        now_ms: u64,
        Engine {
            blobs,
            verifier,
            auditors,
        }: Engine<'_>,
    ) -> Result<Self, CoordinatorError> {
        spec.validate()
            .map_err(|error| CoordinatorError::InvalidSpec(error.to_string()))?;
        let PreparedData {
            dataset,
            split,
            hash: dataset_hash,
            encoded,
            standardization,
        } = prepared;
        let (progression, pool, parameters) = match spec.work.output_width(&spec.model) {
            None => {
                let parameters = corex_ml::init_parameters(&spec.model, spec.seed);
                let trainer = Trainer::new(&spec.model, &parameters, &spec.optimizer)
                    .map_err(|error| CoordinatorError::Training(error.to_string()))?;
                let published = (!spec.download_compression.is_none()).then(|| parameters.clone());
                (
                    Progression::Training {
                        trainer: Box::new(trainer),
                        published,
                    },
                    split.train.clone(),
                    parameters,
                )
            }
            Some(width) => {
                let parameters = fixed_parameters(&spec, blobs)?;
                let progression = Progression::Outputs {
                    parameters: parameters.clone(),
                    collected: Outputs::new(width),
                };
                (progression, pass_samples(&spec, &dataset)?, parameters)
            }
        };
        let model = blobs.publish(f32s_to_bytes(&parameters));
        let saved = progression.saved()?;
        // Nodes load the built-in digits themselves; any other shared dataset goes to them.
        let dataset_blob = encoded.map(|(bytes, manifest)| blobs.publish_cut(bytes, manifest).0);
        let feedback = FeedbackChains::for_spec(&spec);
        let mut run = Self {
            id,
            owner,
            dataset_hash,
            dataset_blob,
            standardization,
            spec,
            data: Some(Arc::new(JobData {
                dataset,
                split,
                pool,
            })),
            sequence,
            progression: Some(progression),
            saved: Some(saved),
            closing: None,
            model,
            previous_model: None,
            updates: VecDeque::new(),
            round: None,
            completed_rounds: 0,
            closed_fragments: HashSet::new(),
            shards: BTreeMap::new(),
            declined: BTreeSet::new(),
            feedback,
            history: Vec::new(),
            history_stored: 0,
            contributions: BTreeMap::new(),
            reissued: 0,
            state: JobState::Running,
            weights: None,
            outputs: None,
            started_ms: now_ms,
            finished_ms: None,
            stored: false,
        };
        let speeds = match run.spec.granularity {
            Granularity::Adaptive { .. } => auditors.live_speeds(),
            Granularity::Fixed => Vec::new(),
        };
        run.open_round(&speeds, verifier, now_ms);
        Ok(run)
    }

    /// Opens the next round, its fragments sized (with adaptive granularity) to nodes of
    /// `speeds_mflops`. A federated round leaves out holders banned for failed checks and
    /// holders that declined the job (only they could compute their fragments); with none
    /// left, the job fails.
    fn open_round(&mut self, speeds_mflops: &[u64], verifier: &Verifier, now_ms: u64) {
        let Some(data) = self.data.clone() else {
            return;
        };
        let fragments = match &self.spec.federated {
            Some(federated) => slice_federated_round(
                &self.id,
                &self.spec,
                federated,
                self.completed_rounds,
                self.model,
            ),
            None => slice_round(
                &self.id,
                &self.spec,
                &data.pool,
                self.completed_rounds,
                self.model,
                speeds_mflops,
            ),
        };
        let fragments: Vec<Fragment> = fragments
            .into_iter()
            .filter(|f| {
                f.holder.is_none_or(|holder| {
                    !verifier.is_banned(&holder) && !self.declined.contains(&holder)
                })
            })
            .collect();
        if fragments.is_empty() {
            let reason = "every data holder of this federated job is banned or declined it";
            self.end(
                JobState::Failed {
                    reason: reason.into(),
                },
                now_ms,
            );
            return;
        }
        self.round = Some(RoundState::open(fragments, now_ms));
    }

    /// The job's submission is stored: it leases work from `now_ms`, when its first round's
    /// clock (patience, a federated round's wait for absent holders) starts.
    pub fn open_for_work(&mut self, now_ms: u64) {
        self.stored = true;
        if let Some(round) = self.round.as_mut() {
            round.opened_ms = now_ms;
        }
    }

    /// Whether the job leases work: it runs and its submission is stored.
    pub fn takes_work(&self) -> bool {
        self.stored && self.is_running()
    }

    pub fn is_running(&self) -> bool {
        self.state == JobState::Running
    }

    /// The data of a running job.
    fn data(&self) -> Result<&Arc<JobData>, CoordinatorError> {
        self.data
            .as_ref()
            .ok_or_else(|| CoordinatorError::Training(format!("job {} has ended", self.id.short())))
    }

    /// Ends the job in `state` at `now_ms`; its data goes (only a running job computes).
    pub(crate) fn end(&mut self, state: JobState, now_ms: u64) {
        self.state = state;
        self.finished_ms = Some(now_ms);
        self.data = None;
        self.progression = None;
    }

    /// Ends the job at its owner's request: the open round is dropped (its results are not
    /// aggregated, recorded or paid), and the checkpoints its audits published and its model
    /// updates are retired.
    pub fn cancel(&mut self, blobs: &mut BlobStore, now_ms: u64) {
        if let Some(auditing) = self.round.take().and_then(|round| round.auditing) {
            for hash in &auditing.published {
                blobs.retire(hash);
            }
        }
        for (_, update) in self.updates.drain(..) {
            blobs.retire(&update);
        }
        self.end(JobState::Cancelled, now_ms);
    }

    /// Whether `fragment` is (or was) one of this job's.
    pub fn owns_fragment(&self, fragment: &Hash) -> bool {
        self.closed_fragments.contains(fragment)
            || self.fragment_index(fragment).is_some()
            || self.audit_task(fragment).is_some()
            || self.reveal_task(fragment).is_some()
    }

    /// The updates that lead to model version `model`, oldest first, when the job publishes
    /// compressed downloads and `model` is its current version: `(version it starts from,
    /// the update's blob)`.
    pub fn updates_to(&self, model: &Hash) -> impl Iterator<Item = &(Hash, Hash)> {
        self.updates.iter().filter(move |_| *model == self.model)
    }

    /// Whether `id` is one of the open round's audit tasks (its replay goes back whole).
    pub fn is_audit_task(&self, id: &Hash) -> bool {
        self.audit_task(id).is_some()
    }

    fn audit_task(&self, id: &Hash) -> Option<usize> {
        self.round
            .as_ref()?
            .auditing
            .as_ref()?
            .tasks
            .iter()
            .position(|task| task.fragment.id == *id)
    }

    fn fragment_index(&self, fragment: &Hash) -> Option<usize> {
        self.round
            .as_ref()?
            .fragments
            .iter()
            .position(|candidate| candidate.id == *fragment)
    }

    pub fn status(&self) -> JobStatus {
        let last_accuracy = self.history.iter().rev().find_map(|r| r.test_accuracy);
        JobStatus {
            job: self.id,
            name: self.spec.name.clone(),
            owner: self.owner,
            state: self.state.clone(),
            round: self.completed_rounds,
            rounds: self.spec.rounds,
            model: self.model,
            last_train_loss: self.history.last().map(|r| r.train_loss),
            last_test_loss: self.history.iter().rev().find_map(|r| r.test_loss),
            last_test_accuracy: last_accuracy,
            nodes: self.contributions.clone(),
            re_issued_fragments: self.reissued,
        }
    }

    /// Fragments of the open round not leased yet (none between rounds).
    pub fn pending_fragments(&self) -> usize {
        self.round
            .as_ref()
            .map_or(0, |round| round.leases.pending())
    }

    pub fn state(&self) -> &JobState {
        &self.state
    }

    pub fn history(&self) -> &[RoundRecord] {
        &self.history
    }
}

/// The round's results as the verifier sees them, in fragment order.
fn candidates<'a>(accepted: &[&'a Accepted], fragments: &[Fragment]) -> Vec<Candidate<'a>> {
    accepted
        .iter()
        .zip(fragments)
        .map(|(result, fragment)| Candidate {
            node: result.node,
            fragment: fragment.id,
            commitment: result.commitment,
            result_hash: result.result_hash,
            gradient: &result.gradient,
            loss: result.loss,
            defect: None,
            opened: None,
        })
        .collect()
}
