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
//! proven node on other hardware) is replayed by the coordinator at once.
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

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use corex_core::fragment::result_commitment;
use corex_core::messages::{
    JobOutputs, JobState, JobStatus, LocalDataCommitment, NodeAudit, NodeContribution,
    ResultHeader, ResultRecord, ResultVerdict, RoundRecord,
};
use corex_core::tensor::{bytes_to_f32s, f32s_to_bytes};
use corex_core::{Fragment, Granularity, Hash, JobSpec, NodeId, WorkSpec};
use corex_ml::{Dataset, Split, Trainer};
use corex_scheduler::{LeaseBook, LeaseError, slice_federated_round, slice_round};

use crate::auditors::Auditors;
use crate::blobs::BlobStore;
use crate::error::CoordinatorError;
use crate::federated::{HeldOut, held_out_checks, judge_federated, may_hold};
use crate::outputs::{Outputs, fixed_parameters, pass_samples};
use crate::verification::{
    AuditPlan, Candidate, NodeReplay, Replay, ResultKind, RoundJudgement, Verifier,
};

/// A federated round closes without the holders that have not delivered once `lease_ms`
/// has passed since it opened, none holds a live lease, and at least 1/this of its fragments
/// are in (partial participation: a holder that went offline does not stall the job).
pub const MIN_FEDERATED_QUORUM: usize = 2;

/// A result that passed every check, waiting for its round to complete.
struct Accepted {
    node: NodeId,
    /// The result tensor: an update (gradient, pseudo-gradient), logits or transformed rows.
    gradient: Vec<f32>,
    loss: f32,
    samples: u32,
    commitment: Hash,
    result_hash: Hash,
    /// Milliseconds from the lease to this result.
    elapsed_ms: u64,
    data_commitment: Option<LocalDataCommitment>,
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

/// A complete round waiting for its audit replays.
struct Auditing {
    plan: AuditPlan,
    tasks: Vec<AuditTask>,
    /// After this the coordinator replays whatever no node has returned.
    deadline_ms: u64,
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
}

/// What the rounds of a job move forward.
enum Progression {
    /// The model, which the job's optimizer steps at every round's close.
    Training(Trainer),
    /// The rows of a job of output work, collected at parameters fixed for the whole job
    /// (empty for a transform, which has no model).
    Outputs {
        parameters: Vec<f32>,
        collected: Outputs,
    },
}

impl Progression {
    /// The parameters the current round works at.
    fn parameters(&self) -> Vec<f32> {
        match self {
            Self::Training(trainer) => trainer.parameters(),
            Self::Outputs { parameters, .. } => parameters.clone(),
        }
    }
}

pub struct JobRun {
    pub id: Hash,
    pub owner: NodeId,
    pub spec: JobSpec,
    pub dataset_hash: Hash,
    /// The shared dataset published as a blob for nodes to fetch (none for a federated job:
    /// there `dataset` is the owner's validation data, which stays here).
    pub dataset_blob: Option<Hash>,
    dataset: Arc<Dataset>,
    split: Split,
    /// The samples rounds are drawn from: the train split (an epoch stream) for training, the
    /// dataset's samples in order (one pass) for output work.
    pool: Vec<u32>,
    progression: Progression,
    /// Hash of the current model version's parameter bytes.
    model: Hash,
    /// The version before the current one, kept so late fetches still resolve.
    previous_model: Option<Hash>,
    round: Option<RoundState>,
    completed_rounds: u32,
    closed_fragments: HashSet<Hash>,
    /// Each federated data holder's shard commitment, fixed by its first accepted result.
    shards: BTreeMap<NodeId, Hash>,
    history: Vec<RoundRecord>,
    contributions: BTreeMap<NodeId, NodeContribution>,
    reissued: u64,
    state: JobState,
    /// Hash of the trained weights (safetensors), once a training job finished.
    pub weights: Option<Hash>,
    /// The rows a job of output work produced, once finished.
    pub outputs: Option<JobOutputs>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
}

impl JobRun {
    pub fn start(
        id: Hash,
        owner: NodeId,
        spec: JobSpec,
        dataset: Arc<Dataset>,
        now_ms: u64,
        Engine {
            blobs,
            verifier,
            auditors,
        }: Engine<'_>,
    ) -> Result<Self, CoordinatorError> {
        spec.validate()
            .map_err(|error| CoordinatorError::InvalidSpec(error.to_string()))?;
        if dataset.feature_count() != spec.model.input || dataset.class_count() > spec.model.classes
        {
            return Err(CoordinatorError::InvalidSpec(format!(
                "model takes {} features into {} classes, the dataset has {} features and {} classes",
                spec.model.input,
                spec.model.classes,
                dataset.feature_count(),
                dataset.class_count()
            )));
        }
        let split = dataset.split(spec.dataset.test_fraction, spec.dataset.split_seed);
        if split.train.is_empty() || split.test.is_empty() {
            return Err(CoordinatorError::InvalidSpec(
                "the dataset is too small to split into train and test".into(),
            ));
        }
        let (progression, pool, parameters) = match spec.work.output_width(&spec.model) {
            None => {
                let parameters = corex_ml::init_parameters(&spec.model, spec.seed);
                let trainer = Trainer::new(&spec.model, &parameters, &spec.optimizer)
                    .map_err(|error| CoordinatorError::Training(error.to_string()))?;
                (
                    Progression::Training(trainer),
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
        let dataset_blob = spec
            .federated
            .is_none()
            .then(|| blobs.publish(dataset.to_bytes()));
        let mut run = Self {
            id,
            owner,
            dataset_hash: Hash(dataset.content_hash()),
            dataset_blob,
            spec,
            dataset,
            split,
            pool,
            progression,
            model,
            previous_model: None,
            round: None,
            completed_rounds: 0,
            closed_fragments: HashSet::new(),
            shards: BTreeMap::new(),
            history: Vec::new(),
            contributions: BTreeMap::new(),
            reissued: 0,
            state: JobState::Running,
            weights: None,
            outputs: None,
            started_ms: now_ms,
            finished_ms: None,
        };
        let speeds = match run.spec.granularity {
            Granularity::Adaptive { .. } => auditors.live_speeds(),
            Granularity::Fixed => Vec::new(),
        };
        run.open_round(&speeds, verifier, now_ms);
        Ok(run)
    }

    /// Opens the next round, its fragments sized (with adaptive granularity) to nodes of
    /// `speeds_mflops`. A federated round leaves out holders banned for failed checks (only
    /// they could compute their fragments); with none left, the job fails.
    fn open_round(&mut self, speeds_mflops: &[u64], verifier: &Verifier, now_ms: u64) {
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
                &self.pool,
                self.completed_rounds,
                self.model,
                speeds_mflops,
            ),
        };
        let fragments: Vec<Fragment> = fragments
            .into_iter()
            .filter(|f| f.holder.is_none_or(|holder| !verifier.is_banned(&holder)))
            .collect();
        if fragments.is_empty() {
            self.state = JobState::Failed {
                reason: "every data holder of this federated job is banned".into(),
            };
            self.finished_ms = Some(now_ms);
            return;
        }
        let count = fragments.len();
        self.round = Some(RoundState {
            leases: LeaseBook::new(count),
            results: (0..count).map(|_| None).collect(),
            fragments,
            opened_ms: now_ms,
            first_lease_ms: None,
            auditing: None,
        });
    }

    pub fn is_running(&self) -> bool {
        self.state == JobState::Running
    }

    /// Leases a fragment of the current round to `node`, if one is free; while the round is
    /// being audited, an audit task `node` may take.
    pub fn lease(
        &mut self,
        node: NodeId,
        now_ms: u64,
        verifier: &Verifier,
        auditors: &Auditors<'_>,
    ) -> Option<(Fragment, u64)> {
        // With adaptive granularity, the pending fragment closest to what this node computes
        // in the target time; otherwise the first pending one.
        let wanted_samples = match self.spec.granularity {
            Granularity::Adaptive { target_ms } => auditors.speed_of(&node).map(|speed| {
                u128::from(speed) * 1_000 * u128::from(target_ms)
                    / u128::from(self.spec.work.flops_per_sample(&self.spec.model).max(1))
            }),
            Granularity::Fixed => None,
        };
        let granularity = self.spec.granularity;
        let fits =
            |fragment: &Fragment| replays_in_time(granularity, fragment, auditors.speed_of(&node));
        let round = self.round.as_mut()?;
        if let Some(auditing) = round.auditing.as_mut() {
            let task = auditing.tasks.iter_mut().find(|task| {
                task.replay.is_none()
                    && task.holder.is_none()
                    && fits(&task.fragment)
                    && auditors.may_replay(verifier, &node, &task.submitter)
            })?;
            let deadline = now_ms + self.spec.lease_ms;
            task.holder = Some((node, deadline));
            return Some((task.fragment.clone(), self.spec.lease_ms));
        }
        let fragments = &round.fragments;
        let rank = |index: usize| {
            let fragment = &fragments[index];
            may_hold(fragment.holder, &node).then(|| match wanted_samples {
                Some(wanted) => (fragment.indices.len() as u128).abs_diff(wanted) as u64,
                None => index as u64,
            })
        };
        let federated = self.spec.federated.is_some();
        let lease = match round
            .leases
            .lease_by(node, now_ms, self.spec.lease_ms, rank)
        {
            Some(lease) => lease,
            None if federated => return None,
            None => {
                // Nothing pending: a copy of a straggler's fragment, if one has been out for
                // 1.5× the round's median fragment time (first valid result wins). A federated
                // fragment has no copies: only its holder has the data.
                let mut elapsed: Vec<u64> = round
                    .results
                    .iter()
                    .flatten()
                    .map(|r| r.elapsed_ms)
                    .collect();
                elapsed.sort_unstable();
                let typical = *elapsed.get(elapsed.len() / 2)?;
                let out_since = now_ms.checked_sub(typical.max(1) * 3 / 2)?;
                round
                    .leases
                    .copy_straggler(node, now_ms, self.spec.lease_ms, out_since)?
            }
        };
        round.first_lease_ms.get_or_insert(now_ms);
        if lease.reissued {
            self.reissued += 1;
        }
        let fragment = round.fragments.get(lease.index as usize)?.clone();
        Some((fragment, lease.deadline_ms.saturating_sub(now_ms)))
    }

    /// Returns expired leases to the pool; the fragments freed and who had held them.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(Hash, NodeId)> {
        let Some(round) = self.round.as_mut() else {
            return Vec::new();
        };
        if let Some(auditing) = round.auditing.as_mut() {
            let mut freed = Vec::new();
            for task in &mut auditing.tasks {
                if let Some((holder, deadline)) = task.holder
                    && task.replay.is_none()
                    && deadline <= now_ms
                {
                    task.holder = None;
                    freed.push((task.fragment.id, holder));
                }
            }
            return freed;
        }
        round
            .leases
            .expire(now_ms)
            .into_iter()
            .filter_map(|(index, node)| Some((round.fragments.get(index as usize)?.id, node)))
            .collect()
    }

    /// Whether `fragment` is (or was) one of this job's.
    pub fn owns_fragment(&self, fragment: &Hash) -> bool {
        self.closed_fragments.contains(fragment)
            || self.fragment_index(fragment).is_some()
            || self.audit_task(fragment).is_some()
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

    /// Checks a result completely, then records it; on any error nothing has changed.
    pub fn submit(
        &mut self,
        node: NodeId,
        header: &ResultHeader,
        tensor_bytes: &[u8],
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Result<(Progress, Option<FragmentTiming>), CoordinatorError> {
        if let Some(task) = self.audit_task(&header.fragment) {
            let progress = self.submit_audit(task, node, header, tensor_bytes, now_ms, engine)?;
            return Ok((progress, None));
        }
        let (index, mut accepted) = self.check_result(node, header, tensor_bytes)?;
        let round = self
            .round
            .as_mut()
            .ok_or(CoordinatorError::FragmentClosed(header.fragment))?;
        if round.auditing.is_some() {
            return Err(CoordinatorError::FragmentClosed(header.fragment));
        }
        let leased_since = round.leases.leased_since(index as u32, &node);
        round.leases.complete(index as u32, node)?;
        accepted.elapsed_ms = now_ms.saturating_sub(leased_since.unwrap_or(now_ms));
        let timing = FragmentTiming {
            cost_flops: round.fragments[index].cost_flops,
            elapsed_ms: accepted.elapsed_ms,
        };
        if let Some(data) = &accepted.data_commitment {
            self.shards.entry(node).or_insert(data.shard);
        }
        round.results[index] = Some(accepted);
        if !round.leases.is_complete() {
            return Ok((Progress::Accepted, Some(timing)));
        }
        Ok((self.begin_audits(now_ms, engine)?, Some(timing)))
    }

    /// Plans the complete round's audits and hands out those another node may replay; closes
    /// the round at once when no audit waits for a node.
    fn begin_audits(
        &mut self,
        now_ms: u64,
        Engine {
            blobs,
            verifier,
            auditors,
        }: Engine<'_>,
    ) -> Result<Progress, CoordinatorError> {
        let Some(round) = self.round.as_mut() else {
            return Ok(Progress::Accepted);
        };
        let accepted: Vec<&Accepted> = round.results.iter().flatten().collect();
        let candidates = candidates(&accepted, &round.fragments);
        let plan = verifier.plan_round(&candidates, ResultKind::of(&self.spec.work))?;
        let tasks: Vec<AuditTask> = plan
            .audits
            .iter()
            .zip(accepted.iter().zip(&round.fragments))
            .enumerate()
            .filter(|(_, (planned, (result, fragment)))| {
                let fits = |auditor: &NodeId| {
                    replays_in_time(self.spec.granularity, fragment, auditors.speed_of(auditor))
                };
                planned.audited
                    && fragment.holder.is_none()
                    && auditors.any_for(verifier, &result.node, fits)
            })
            .map(|(index, (_, (result, fragment)))| AuditTask {
                index,
                fragment: Fragment {
                    id: Fragment::derive_audit_id(&fragment.id),
                    ..fragment.clone()
                },
                submitter: result.node,
                holder: None,
                replay: None,
                commitment: None,
            })
            .collect();
        let waiting = !tasks.is_empty();
        round.auditing = Some(Auditing {
            plan,
            tasks,
            deadline_ms: now_ms + self.spec.lease_ms,
        });
        if waiting {
            return Ok(Progress::Auditing);
        }
        self.close_round(now_ms, blobs, verifier, &auditors)
    }

    /// Takes a node's audit replay for task `task`, checked like any result.
    fn submit_audit(
        &mut self,
        task: usize,
        node: NodeId,
        header: &ResultHeader,
        tensor_bytes: &[u8],
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Result<Progress, CoordinatorError> {
        let auditing = self
            .round
            .as_ref()
            .and_then(|round| round.auditing.as_ref())
            .ok_or(CoordinatorError::FragmentClosed(header.fragment))?;
        let pending = &auditing.tasks[task];
        if pending.replay.is_some() {
            return Err(CoordinatorError::FragmentClosed(header.fragment));
        }
        let index = pending.index as u32;
        match pending.holder {
            Some((holder, _)) if holder == node => {}
            Some((holder, _)) => {
                return Err(LeaseError::LeasedToOther {
                    index,
                    holder: holder.short(),
                }
                .into());
            }
            None => return Err(LeaseError::NotLeased(index).into()),
        }
        let (gradient, commitment) =
            self.check_tensor_result(node, &pending.fragment, header, tensor_bytes)?;
        let all_in = {
            let auditing = self
                .round
                .as_mut()
                .and_then(|round| round.auditing.as_mut())
                .ok_or(CoordinatorError::FragmentClosed(header.fragment))?;
            let pending = &mut auditing.tasks[task];
            pending.replay = Some(NodeReplay {
                auditor: node,
                result_hash: header.result_hash,
                replay: Replay {
                    gradient,
                    loss: header.loss,
                },
            });
            pending.commitment = Some(commitment);
            auditing.tasks.iter().all(|task| task.replay.is_some())
        };
        if all_in {
            return self.close_round(now_ms, engine.blobs, engine.verifier, &engine.auditors);
        }
        Ok(Progress::Auditing)
    }

    /// Closes a round that is overdue: one whose audit deadline has passed (the coordinator
    /// replays what no node returned), or a federated round without the holders that have not
    /// delivered (see [`MIN_FEDERATED_QUORUM`]). `None` when there is nothing to close.
    pub fn close_overdue(
        &mut self,
        now_ms: u64,
        Engine {
            blobs,
            verifier,
            auditors,
        }: Engine<'_>,
    ) -> Option<Result<Progress, CoordinatorError>> {
        let round = self.round.as_mut()?;
        let Some(auditing) = round.auditing.as_ref() else {
            let quorum = round.fragments.len().div_ceil(MIN_FEDERATED_QUORUM).max(1);
            let partial = self.spec.federated.is_some()
                && round.opened_ms + self.spec.lease_ms <= now_ms
                && !round.leases.any_held(now_ms)
                && round.leases.done() >= quorum;
            if !partial {
                return None;
            }
            // Partial participation: the round goes on without holders that went quiet.
            for index in round.leases.drop_unfinished().into_iter().rev() {
                self.closed_fragments
                    .insert(round.fragments.remove(index).id);
                round.results.remove(index);
            }
            let engine = Engine {
                blobs,
                verifier,
                auditors,
            };
            return Some(self.begin_audits(now_ms, engine));
        };
        (auditing.deadline_ms <= now_ms)
            .then(|| self.close_round(now_ms, blobs, verifier, &auditors))
    }

    fn check_result(
        &self,
        node: NodeId,
        header: &ResultHeader,
        tensor_bytes: &[u8],
    ) -> Result<(usize, Accepted), CoordinatorError> {
        if self.closed_fragments.contains(&header.fragment) {
            return Err(CoordinatorError::FragmentClosed(header.fragment));
        }
        let index = self
            .fragment_index(&header.fragment)
            .ok_or(CoordinatorError::UnknownFragment(header.fragment))?;
        let round = self
            .round
            .as_ref()
            .ok_or(CoordinatorError::FragmentClosed(header.fragment))?;
        round.leases.check_submission(index as u32, &node)?;
        let fragment = &round.fragments[index];
        if fragment.holder.is_some() {
            let data = header
                .data_commitment
                .ok_or(CoordinatorError::MissingDataCommitment)?;
            if let Some(&shard) = self.shards.get(&node)
                && shard != data.shard
            {
                return Err(CoordinatorError::ShardChanged {
                    committed: shard,
                    got: data.shard,
                });
            }
        }
        let (gradient, commitment) =
            self.check_tensor_result(node, fragment, header, tensor_bytes)?;
        Ok((
            index,
            Accepted {
                node,
                gradient,
                loss: header.loss,
                samples: header.samples,
                commitment,
                result_hash: header.result_hash,
                elapsed_ms: 0,
                data_commitment: header.data_commitment,
            },
        ))
    }

    /// The checks every result and audit replay passes: model version, sample count, the
    /// tensor's hash and the signed commitment over `fragment`'s id, shape (the parameter
    /// count for training, `samples × width` for output work) and finiteness.
    fn check_tensor_result(
        &self,
        node: NodeId,
        fragment: &Fragment,
        header: &ResultHeader,
        tensor_bytes: &[u8],
    ) -> Result<(Vec<f32>, Hash), CoordinatorError> {
        if header.model != self.model {
            return Err(CoordinatorError::StaleModel {
                got: header.model,
                current: self.model,
            });
        }
        let expected = fragment.indices.len() as u32;
        if header.samples != expected {
            return Err(CoordinatorError::WrongSampleCount {
                expected,
                got: header.samples,
            });
        }
        if Hash::of(tensor_bytes) != header.result_hash {
            return Err(CoordinatorError::ResultHashMismatch);
        }
        let commitment = result_commitment(&node, &fragment.id, &header.model, &header.result_hash);
        node.verify(commitment.as_bytes(), &header.commitment_signature)
            .map_err(|_| CoordinatorError::BadCommitment)?;
        let gradient = bytes_to_f32s(tensor_bytes)
            .map_err(|error| CoordinatorError::WrongShape(error.to_string()))?;
        corex_ml::check_result(
            &self.spec.work,
            &self.spec.model,
            fragment.indices.len(),
            &gradient,
        )
        .map_err(|error| match error {
            corex_ml::MlError::NonFinite { index } => CoordinatorError::NonFinite { index },
            corex_ml::MlError::ParameterCount { expected, got } => CoordinatorError::WrongShape(
                format!("gradient has {got} values, the model has {expected} parameters"),
            ),
            corex_ml::MlError::OutputLength {
                expected,
                got,
                samples,
            } => CoordinatorError::WrongShape(format!(
                "result has {got} values, {samples} samples of {:?} work need {expected}",
                self.spec.work.fragment_kind()
            )),
            other => CoordinatorError::WrongShape(other.to_string()),
        })?;
        if !header.loss.is_finite() {
            return Err(CoordinatorError::NonFiniteLoss(header.loss));
        }
        Ok((gradient, commitment))
    }

    fn close_round(
        &mut self,
        now_ms: u64,
        blobs: &mut BlobStore,
        verifier: &mut Verifier,
        auditors: &Auditors<'_>,
    ) -> Result<Progress, CoordinatorError> {
        let Some(mut round) = self.round.take() else {
            return Ok(Progress::Accepted);
        };
        let Auditing { plan, tasks, .. } = round.auditing.take().ok_or_else(|| {
            CoordinatorError::Training("a round closed before its audits were planned".into())
        })?;
        let accepted: Vec<&Accepted> = round.results.iter().flatten().collect();
        let training = |error: corex_ml::MlError| CoordinatorError::Training(error.to_string());
        let mut audit_commitments = BTreeMap::new();
        let node_replays: BTreeMap<usize, NodeReplay> = tasks
            .into_iter()
            .filter_map(|task| {
                audit_commitments.insert(task.index, task.commitment?);
                Some((task.index, task.replay?))
            })
            .collect();

        // Verify before anything counts: replays start from the round's model version.
        let current = self.progression.parameters();
        let candidates = candidates(&accepted, &round.fragments);
        let held_out = self
            .spec
            .federated
            .as_ref()
            .map(|_| self.held_out(&current, &accepted));
        let judgement = match &held_out {
            Some(checks) => RoundJudgement {
                results: judge_federated(verifier, &candidates, &plan, checks),
                audits: Vec::new(),
            },
            None => verifier.judge(&candidates, &plan, &node_replays, |index| {
                corex_ml::run_fragment(
                    &self.spec.work,
                    &self.spec.model,
                    &current,
                    &self.dataset,
                    &round.fragments[index].indices,
                )
                .map(|output| Replay {
                    gradient: output.values,
                    loss: output.loss,
                })
                .map_err(training)
            })?,
        };
        let judged = judgement.results;
        let audits: Vec<NodeAudit> = judgement
            .audits
            .into_iter()
            .filter_map(|(index, verdict)| {
                Some(NodeAudit {
                    auditor: node_replays.get(&index)?.auditor,
                    fragment: round.fragments.get(index)?.id,
                    commitment: *audit_commitments.get(&index)?,
                    flops: round.fragments.get(index)?.cost_flops,
                    verdict,
                })
            })
            .collect();

        // A rejected result's place in the aggregate is taken by its replay; a rejected
        // federated result (which nobody can replay) drops out.
        let parts: Vec<(&[f32], u32)> = accepted
            .iter()
            .zip(&judged)
            .filter_map(|(result, judgement)| {
                let gradient = match (&judgement.verdict, judgement.replacement.as_deref()) {
                    (_, Some(replay)) => replay,
                    (ResultVerdict::Accepted { .. }, None) => result.gradient.as_slice(),
                    (ResultVerdict::Rejected { .. }, None) => return None,
                };
                Some((gradient, result.samples))
            })
            .collect();
        match &mut self.progression {
            // The job's aggregation policy (the mean is exactly single-process training's). A
            // round with nothing left to aggregate leaves the model as it was.
            Progression::Training(trainer) => {
                if !parts.is_empty() {
                    let mean = corex_verify::aggregate(&self.spec.aggregation, &parts)
                        .map_err(|error| CoordinatorError::Training(error.to_string()))?;
                    corex_ml::check_tensor(&self.spec.model, &mean).map_err(training)?;
                    trainer.step(&mean).map_err(training)?;
                }
            }
            // Output work keeps every fragment's rows in fragment order; it is never
            // federated, so every rejected result has its replay.
            Progression::Outputs { collected, .. } => {
                if parts.len() != round.fragments.len() {
                    return Err(CoordinatorError::Training(
                        "a rejected output has no replay to take its place".into(),
                    ));
                }
                for ((rows, _), fragment) in parts.iter().zip(&round.fragments) {
                    collected.append(&fragment.indices, rows)?;
                }
            }
        }
        let parameters = self.progression.parameters();

        let total_samples: u64 = accepted.iter().map(|r| u64::from(r.samples)).sum();
        let train_loss = (accepted
            .iter()
            .map(|r| f64::from(r.loss) * f64::from(r.samples))
            .sum::<f64>()
            / total_samples.max(1) as f64) as f32;
        for ((result, fragment), judgement) in accepted.iter().zip(&round.fragments).zip(&judged) {
            let credit = self.contributions.entry(result.node).or_default();
            match &judgement.verdict {
                ResultVerdict::Accepted { audited, .. } => {
                    credit.fragments += 1;
                    credit.samples += u64::from(result.samples);
                    credit.flops += fragment.cost_flops;
                    credit.audited += u64::from(*audited);
                    credit.busy_ms += result.elapsed_ms;
                }
                ResultVerdict::Rejected { .. } => credit.rejected += 1,
            }
        }
        for audit in &audits {
            let credit = self.contributions.entry(audit.auditor).or_default();
            match audit.verdict {
                ResultVerdict::Accepted { .. } => credit.audits_done += 1,
                ResultVerdict::Rejected { .. } => credit.rejected += 1,
            }
        }
        self.completed_rounds += 1;
        let last = self.completed_rounds == self.spec.rounds;
        // A transform has no model to evaluate; an inference job's is evaluated as a
        // training job's would be.
        let has_model = !matches!(self.spec.work, WorkSpec::Transform { .. });
        let evaluation =
            if has_model && (last || self.completed_rounds.is_multiple_of(self.spec.eval_every)) {
                Some(
                    corex_ml::evaluate(
                        &self.spec.model,
                        &parameters,
                        &self.dataset,
                        &self.split.test,
                    )
                    .map_err(training)?,
                )
            } else {
                None
            };
        self.history.push(RoundRecord {
            round: self.completed_rounds - 1,
            model: self.model,
            train_loss,
            test_loss: evaluation.as_ref().map(|e| e.loss),
            test_accuracy: evaluation.as_ref().map(|e| e.accuracy),
            results: accepted
                .iter()
                .zip(&round.fragments)
                .zip(judged)
                .enumerate()
                .map(|(index, ((result, fragment), judgement))| ResultRecord {
                    node: result.node,
                    fragment: fragment.id,
                    commitment: result.commitment,
                    flops: fragment.cost_flops,
                    verdict: judgement.verdict,
                    audited_by: judgement.audited_by,
                    data_commitment: result.data_commitment,
                    validation_loss: held_out.as_ref().map(|checks| checks[index].solo_loss),
                    validation_gain: held_out.as_ref().map(|checks| checks[index].gain),
                })
                .collect(),
            audit_seed: plan.seed,
            audits,
            wall_ms: now_ms.saturating_sub(round.first_lease_ms.unwrap_or(now_ms)),
        });
        self.closed_fragments
            .extend(round.fragments.iter().map(|f| f.id));

        // Only training makes a new model version; output work keeps its own to the end.
        if let Progression::Training(_) = self.progression {
            if let Some(stale) = self.previous_model.replace(self.model) {
                blobs.retire(&stale);
            }
            self.model = blobs.publish(f32s_to_bytes(&parameters));
        }
        if last {
            match &mut self.progression {
                Progression::Training(_) => {
                    let weights = corex_ml::to_safetensors(&self.spec.model, &parameters)
                        .map_err(training)?;
                    self.weights = Some(blobs.publish(weights));
                }
                Progression::Outputs { collected, .. } => {
                    let collected = std::mem::take(collected);
                    self.outputs = Some(collected.publish(&self.spec, &self.dataset, blobs)?);
                }
            }
            self.state = JobState::Finished;
            self.finished_ms = Some(now_ms);
            return Ok(Progress::JobFinished);
        }
        // The next round is cut for the nodes live now (their speeds matter only to
        // adaptive granularity).
        let speeds = match self.spec.granularity {
            Granularity::Adaptive { .. } => auditors.live_speeds(),
            Granularity::Fixed => Vec::new(),
        };
        self.open_round(&speeds, verifier, now_ms);
        Ok(Progress::RoundClosed)
    }

    /// The held-out checks of a federated round (see [`held_out_checks`]) on the owner's
    /// validation split: a result alone is `current − update` (the holder's locally trained
    /// model); an aggregate takes a plain outer step of the job's learning rate. A model that
    /// cannot be evaluated has a loss that is not finite.
    fn held_out(&self, current: &[f32], accepted: &[&Accepted]) -> Vec<HeldOut> {
        let loss = |update: &[f32], rate: f32| {
            let moved: Vec<f32> = current
                .iter()
                .zip(update)
                .map(|(w, u)| w - rate * u)
                .collect();
            corex_ml::evaluate(&self.spec.model, &moved, &self.dataset, &self.split.test)
                .map_or(f32::NAN, |evaluation| evaluation.loss)
        };
        let outer_rate = self.spec.optimizer.learning_rate() as f32;
        held_out_checks(
            accepted.len(),
            |index| loss(&accepted[index].gradient, 1.0),
            |subset| {
                let parts: Vec<(&[f32], u32)> = subset
                    .iter()
                    .map(|&index| (accepted[index].gradient.as_slice(), accepted[index].samples))
                    .collect();
                if parts.is_empty() {
                    return loss(&vec![0.0; current.len()], 0.0);
                }
                corex_verify::aggregate(&self.spec.aggregation, &parts)
                    .map_or(f32::NAN, |aggregate| loss(&aggregate, outer_rate))
            },
        )
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
            last_test_accuracy: last_accuracy,
            nodes: self.contributions.clone(),
            re_issued_fragments: self.reissued,
        }
    }

    pub fn history(&self) -> &[RoundRecord] {
        &self.history
    }
}

/// Whether a node of `speed` may take `fragment` as an audit task: with adaptive granularity
/// only if it replays it within twice the target time, so that a slow node never holds up a
/// round's close (an audit no live node fits is replayed by the coordinator at once).
fn replays_in_time(granularity: Granularity, fragment: &Fragment, speed: Option<u64>) -> bool {
    match (granularity, speed) {
        (Granularity::Adaptive { target_ms }, Some(speed)) => {
            u128::from(fragment.cost_flops) <= u128::from(speed) * 1_000 * 2 * u128::from(target_ms)
        }
        (Granularity::Adaptive { .. }, None) => false,
        (Granularity::Fixed, _) => true,
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
        })
        .collect()
}
