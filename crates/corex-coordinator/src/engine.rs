//! The coordinator's state: node registry, jobs, published blobs, staged result uploads and the
//! replay cache.
//!
//! Request handlers call in with an authenticated signer and the current time; nothing here
//! touches sockets, files or clocks, so tests can drive it directly. Results are routed to the
//! job that owns the fragment; a job that finishes is reported back so the shell can persist it.

use std::collections::BTreeMap;

use bytes::Bytes;
use corex_core::hash::Hashed;
use corex_core::messages::{ChunkedResult, DeviceReport, LeaseResponse, NodeInfo, ResultHeader};
use corex_core::model_update::ModelUpdate;
use corex_core::{Hash, Keypair, NodeId};
use corex_scheduler::{Behaviour, TierPolicy, duration_ms};

use crate::auditors::{Auditors, credited_speed};
use crate::blobs::BlobStore;
use crate::config::CoordinatorConfig;
use crate::datasets::DatasetRegistry;
use crate::error::CoordinatorError;
use crate::job_run::{
    DEFERRED_RETRY_MS, Engine, FragmentTiming, JobLease, JobRun, KeptResult, Progress, SignedTensor,
};
use crate::uploads::{UploadLimits, UploadStore};
use crate::verification::Verifier;

mod challenges;
use challenges::PendingChallenge;
pub use challenges::{CHALLENGE_SIZE, ChallengeCheck};
mod closing;
mod durable;
mod owners;
mod registry;
pub use registry::Registered;

pub struct Coordinator {
    pub identity: Keypair,
    pub config: CoordinatorConfig,
    /// Every registered node's standing (see `registry`).
    nodes: BTreeMap<NodeId, Registered>,
    jobs: BTreeMap<Hash, JobRun>,
    /// Jobs in submission order: leases go to the oldest running job first.
    job_order: Vec<Hash>,
    pub blobs: BlobStore,
    /// Result chunks nodes uploaded, waiting for the result that names them.
    pub uploads: UploadStore,
    /// Datasets job owners uploaded.
    pub datasets: DatasetRegistry,
    /// Audits, consistency and duplicate detection across all jobs.
    pub verifier: Verifier,
    challenges: BTreeMap<NodeId, PendingChallenge>,
    /// Snapshots of node standing taken so far (see `standing_of`).
    standing_taken: u64,
}

/// What a result (or a decline) did: the job it went to and how that progressed, a flag the
/// behaviour analysis raised, and an accepted fragment result to keep on disk.
pub struct Intake {
    pub job: Hash,
    pub progress: Progress,
    pub flagged: Option<String>,
    pub kept: Option<KeptResult>,
}

impl Intake {
    fn only(job: Hash, progress: Progress) -> Self {
        Self {
            job,
            progress,
            flagged: None,
            kept: None,
        }
    }
}

/// A node with nothing to do asks again after at most this long (sooner when a straggler's
/// fragment falls due for a copy).
const IDLE_RETRY_MS: u64 = 500;

/// Nodes heard from within this window count against the per-fingerprint and per-endpoint
/// limits; a node gone longer frees its place (a restarted machine can rejoin).
const SYBIL_WINDOW_MS: u64 = 120_000;

/// Behaviour analysis compares a node's efficiency with at most this many peers' (the median
/// moves little beyond, and the scan stays cheap on large networks).
const BEHAVIOUR_PEERS: usize = 64;

/// What a node's peers on its backend say about the efficiency to expect of it.
enum Peers {
    /// No other proven node computes on its backend: its challenge alone is the measure.
    Alone,
    /// Others do, but none has been observed yet.
    NotObservedYet,
    /// The median efficiency (observed over verified speed, ppm) of the observed ones.
    Efficiency(u64),
}

impl Coordinator {
    pub fn new(identity: Keypair, config: CoordinatorConfig, verifier: Verifier) -> Self {
        Self {
            verifier,
            challenges: BTreeMap::new(),
            standing_taken: 0,
            identity,
            nodes: BTreeMap::new(),
            jobs: BTreeMap::new(),
            job_order: Vec::new(),
            blobs: BlobStore::default(),
            uploads: UploadStore::new(UploadLimits::of(&config)),
            datasets: DatasetRegistry::default(),
            config,
        }
    }

    /// Registers (or re-registers) `node`, seen at network address `endpoint`. Refused when
    /// its device fingerprint or its endpoint already runs as many live nodes as the
    /// configuration allows.
    pub fn register(
        &mut self,
        node: NodeId,
        device: DeviceReport,
        endpoint: String,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        {
            let live_others = || {
                self.nodes
                    .iter()
                    .map(|(id, registered)| (id, &registered.info))
                    .filter(move |(id, info)| {
                        **id != node && now_ms.saturating_sub(info.last_seen_ms) <= SYBIL_WINDOW_MS
                    })
            };
            let same_device = live_others()
                .filter(|(_, info)| info.device.fingerprint == device.fingerprint)
                .count();
            if same_device >= self.config.max_nodes_per_fingerprint as usize {
                return Err(CoordinatorError::SybilLimit(format!(
                    "device fingerprint {} already runs {same_device} live node(s); the limit is {}",
                    device.fingerprint.short(),
                    self.config.max_nodes_per_fingerprint
                )));
            }
            let same_endpoint = live_others()
                .filter(|(_, info)| info.endpoint == endpoint)
                .count();
            if same_endpoint >= self.config.max_nodes_per_endpoint as usize {
                return Err(CoordinatorError::SybilLimit(format!(
                    "endpoint {endpoint} already runs {same_endpoint} live node(s); the limit is {}",
                    self.config.max_nodes_per_endpoint
                )));
            }
        }
        let record = &mut self
            .nodes
            .entry(node)
            .or_insert_with(|| {
                Registered::new(NodeInfo {
                    device: device.clone(),
                    registered_ms: now_ms,
                    last_seen_ms: now_ms,
                    capability: None,
                    endpoint: endpoint.clone(),
                    observed_mflops: None,
                    behaviour_flag: None,
                })
            })
            .info;
        record.device = device;
        record.endpoint = endpoint;
        record.last_seen_ms = now_ms;
        Ok(())
    }

    pub(crate) fn registered(
        &mut self,
        node: &NodeId,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let record = self
            .nodes
            .get_mut(node)
            .ok_or_else(|| CoordinatorError::UnregisteredNode(node.short()))?;
        record.info.last_seen_ms = now_ms;
        Ok(())
    }

    /// What `node` registered with and showed, if it is registered.
    /// Every registered node with what it reported and showed (with its address: callers
    /// that show it to others must leave that out).
    pub fn registry(&self) -> impl Iterator<Item = (&NodeId, &NodeInfo)> {
        self.nodes
            .iter()
            .map(|(id, registered)| (id, &registered.info))
    }

    pub fn node(&self, node: &NodeId) -> Option<&NodeInfo> {
        self.nodes.get(node).map(|registered| &registered.info)
    }

    pub fn is_registered(&self, node: &NodeId) -> bool {
        self.nodes.contains_key(node)
    }

    /// Notes when `node` is expected free for new work.
    fn free_at(&mut self, node: &NodeId, free_at_ms: u64) {
        if let Some(registered) = self.nodes.get_mut(node) {
            registered.free_at_ms = Some(free_at_ms);
        }
    }

    /// Work for `node` (see [`work_for`](Self::work_for)), given the `ahead` nodes of higher
    /// priority waiting now (see [`crate::lease_order`]). Notes when the node will be free for
    /// new work, for the earliest-finish plan.
    pub fn lease(
        &mut self,
        node: NodeId,
        now_ms: u64,
        ahead: usize,
    ) -> Result<LeaseResponse, CoordinatorError> {
        if self.verifier.is_banned(&node) {
            return Err(CoordinatorError::Banned(node.to_hex()));
        }
        self.registered(&node, now_ms)?;
        let response = self.work_for(node, now_ms, ahead)?;
        let free_at_ms = match &response {
            LeaseResponse::Work { fragment, .. } => {
                let speed = self.node(&node).and_then(credited_speed);
                now_ms
                    + speed.map_or(0, |mflops| {
                        duration_ms(fragment.cost_flops / 1_000_000, mflops)
                    })
            }
            LeaseResponse::Idle { .. } | LeaseResponse::Reveal { .. } => now_ms,
        };
        self.free_at(&node, free_at_ms);
        Ok(response)
    }

    /// A reveal request, else a fragment or audit task from the oldest running job that has
    /// one for `node`, else when to ask again.
    fn work_for(
        &mut self,
        node: NodeId,
        now_ms: u64,
        ahead: usize,
    ) -> Result<LeaseResponse, CoordinatorError> {
        let auditors = Auditors {
            nodes: &self.nodes,
            now_ms,
            shared_hardware: self.config.shared_hardware,
            coordinator_mflops: self.config.replay_mflops,
        };
        // An audit's request for checkpoints comes first: its round waits on nothing else.
        if let Some(reveal) = self
            .jobs()
            .filter(|job| job.takes_work())
            .find_map(|job| job.reveal_for(&node))
        {
            return Ok(reveal);
        }
        let mut deferred = false;
        for id in &self.job_order {
            let Some(job) = self.jobs.get_mut(id).filter(|job| job.takes_work()) else {
                continue;
            };
            match job.lease(node, now_ms, ahead, &self.verifier, &auditors) {
                JobLease::Granted(fragment, deadline_ms) => {
                    let model = self.blobs.manifest(&fragment.model)?.as_ref().clone();
                    let audit = job.is_audit_task(&fragment.id);
                    let updates = job
                        .updates_to(&fragment.model)
                        .map(|(from, delta)| {
                            Ok(ModelUpdate {
                                from: *from,
                                delta: self.blobs.manifest(delta)?.as_ref().clone(),
                            })
                        })
                        .collect::<Result<_, CoordinatorError>>()?;
                    return Ok(LeaseResponse::Work {
                        fragment: Box::new(fragment),
                        model,
                        deadline_ms,
                        audit,
                        updates,
                    });
                }
                JobLease::Deferred => deferred = true,
                JobLease::Nothing => {}
            }
        }
        // Nothing now: ask again soon when faster nodes were left the open work, when a
        // straggler's fragment falls due for a copy, or later.
        let copy_in_ms = self
            .job_order
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .filter(|job| job.takes_work())
            .filter_map(|job| job.next_copy_ms(&node, &auditors))
            .min()
            .map(|due_ms| due_ms.saturating_sub(now_ms).max(1));
        let longest = if deferred {
            DEFERRED_RETRY_MS
        } else {
            IDLE_RETRY_MS
        };
        let retry_ms = copy_in_ms.map_or(longest, |ms| ms.min(longest));
        Ok(LeaseResponse::Idle { retry_ms })
    }

    /// Expires overdue leases in every job; the number of fragments freed.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(Hash, NodeId)> {
        self.jobs
            .values_mut()
            .flat_map(|job| job.expire(now_ms))
            .collect()
    }

    /// Takes a framed result body from `node`. On success, says which job progressed how, and
    /// the behaviour flag if this result's timing just raised one.
    /// Takes an inline result whose signed tensor the shell checked off the lock
    /// ([`SignedTensor::verify`]).
    pub fn submit_result(
        &mut self,
        node: NodeId,
        header: &ResultHeader,
        tensor: SignedTensor,
        now_ms: u64,
    ) -> Result<Intake, CoordinatorError> {
        self.registered(&node, now_ms)?;
        self.take_result(node, header, tensor, now_ms)
    }

    /// Stages a chunk `node` uploaded: part of a result from a registered node, or of a dataset
    /// when `owner_upload` (the key was admitted as a job owner).
    pub fn stage_chunk(
        &mut self,
        node: NodeId,
        chunk: Hash,
        bytes: Hashed<Bytes>,
        now_ms: u64,
        owner_upload: bool,
    ) -> Result<(), CoordinatorError> {
        if !owner_upload {
            self.registered(&node, now_ms)?;
        }
        self.uploads.stage(node, chunk, bytes, now_ms)
    }

    /// Which of `chunks` `node` has not staged (`owner_upload` as for [`Self::stage_chunk`]).
    pub fn missing_chunks(
        &mut self,
        node: NodeId,
        chunks: &[Hash],
        now_ms: u64,
        owner_upload: bool,
    ) -> Result<Vec<Hash>, CoordinatorError> {
        if !owner_upload {
            self.registered(&node, now_ms)?;
        }
        self.uploads.missing(node, chunks, now_ms)
    }

    /// Takes a result whose tensor `node` uploaded as chunks: assembles it and judges it exactly
    /// like an inline result. Once judged (taken, or refused for what it says), its chunks are
    /// released: sending the same result again cannot succeed. They stay staged when it could
    /// not be assembled, or the coordinator failed (5xx), so that the node can complete it.
    pub fn submit_chunked_result(
        &mut self,
        node: NodeId,
        result: &ChunkedResult,
        now_ms: u64,
    ) -> Result<Intake, CoordinatorError> {
        self.registered(&node, now_ms)?;
        let tensor = self.uploads.assemble(node, &result.tensor)?;
        let judged = SignedTensor::verify(node, &result.header, &Hashed::new(tensor.as_slice()))
            .and_then(|signed| self.take_result(node, &result.header, signed, now_ms));
        if judged
            .as_ref()
            .err()
            .is_none_or(|error| error.status() < 500)
        {
            self.uploads.release(node, &result.tensor.chunks);
        }
        judged
    }

    /// `node` cannot reveal the checkpoints asked of it for `fragment` (see
    /// `JobRun::decline_reveal`); says which job progressed how.
    pub fn decline_reveal(
        &mut self,
        node: NodeId,
        fragment: &Hash,
        now_ms: u64,
    ) -> Result<Intake, CoordinatorError> {
        self.registered(&node, now_ms)?;
        let (job, progress) = self.with_job_of(fragment, now_ms, |job, engine| {
            job.decline_reveal(node, fragment, now_ms, engine)
        })?;
        Ok(Intake::only(job, progress))
    }

    /// Data holder `node` declines the federated job of `fragment` (see
    /// `JobRun::decline_holder`); says which job progressed how.
    pub fn decline_job(
        &mut self,
        node: NodeId,
        fragment: &Hash,
        now_ms: u64,
    ) -> Result<Intake, CoordinatorError> {
        self.registered(&node, now_ms)?;
        let (job, progress) = self.with_job_of(fragment, now_ms, |job, engine| {
            job.decline_holder(node, fragment, now_ms, engine)
        })?;
        self.free_at(&node, now_ms);
        Ok(Intake::only(job, progress))
    }

    /// Runs `act` on job `job`, with the engine's view for it.
    pub(crate) fn with_job<T>(
        &mut self,
        job: &Hash,
        now_ms: u64,
        act: impl FnOnce(&mut JobRun, Engine<'_>) -> Result<T, CoordinatorError>,
    ) -> Result<T, CoordinatorError> {
        let (jobs, engine) = self.jobs_and_engine(now_ms);
        let run = jobs
            .get_mut(job)
            .ok_or(CoordinatorError::UnknownJob(*job))?;
        act(run, engine)
    }

    /// Runs `act` on the job that owns `fragment`, with the engine's view for it; returns the
    /// job's id with what `act` returned.
    fn with_job_of<T>(
        &mut self,
        fragment: &Hash,
        now_ms: u64,
        act: impl FnOnce(&mut JobRun, Engine<'_>) -> Result<T, CoordinatorError>,
    ) -> Result<(Hash, T), CoordinatorError> {
        let (jobs, engine) = self.jobs_and_engine(now_ms);
        let job = jobs
            .values_mut()
            .find(|job| job.owns_fragment(fragment))
            .ok_or(CoordinatorError::UnknownFragment(*fragment))?;
        Ok((job.id, act(job, engine)?))
    }

    /// Routes a result to the job that owns its fragment, which checks and records it.
    fn take_result(
        &mut self,
        node: NodeId,
        header: &ResultHeader,
        tensor: SignedTensor,
        now_ms: u64,
    ) -> Result<Intake, CoordinatorError> {
        let (job, submitted) = self.with_job_of(&header.fragment, now_ms, |job, engine| {
            job.submit(node, header, tensor, now_ms, engine)
        })?;
        // Its work delivered, the node is about to ask for more.
        self.free_at(&node, now_ms);
        let flagged = submitted
            .timing
            .and_then(|timing| self.observe(node, timing));
        Ok(Intake {
            job,
            progress: submitted.progress,
            flagged,
            kept: submitted.kept,
        })
    }

    /// Records how long a fragment took `node` and runs the behaviour analysis; returns the
    /// flag the first time its fragment times contradict its capability challenge.
    fn observe(&mut self, node: NodeId, timing: FragmentTiming) -> Option<String> {
        let registered = self.nodes.get_mut(&node)?;
        let timed = registered.time_fragment(timing.cost_flops / 1_000_000, timing.elapsed_ms);
        let verified = registered.info.capability.as_ref()?.demonstrated_mflops;
        let policy = TierPolicy::default();
        // Peers are consulted only when the verified speed alone would flag the node. While
        // its backend's other nodes have not been observed yet, it is not judged (it will be
        // at its next fragment): the first node observed would otherwise have no peers.
        let behaviour = match policy.behaviour(verified, &timed, None) {
            Behaviour::Contradicts { observed_mflops } => match self.peers_of(&node) {
                Peers::Alone => Behaviour::Contradicts { observed_mflops },
                Peers::NotObservedYet => Behaviour::Consistent { observed_mflops },
                Peers::Efficiency(ppm) => policy.behaviour(verified, &timed, Some(ppm)),
            },
            other => other,
        };
        let info = &mut self.nodes.get_mut(&node)?.info;
        let observed = match behaviour {
            Behaviour::Unknown => return None,
            Behaviour::Consistent { observed_mflops } => {
                info.observed_mflops = Some(observed_mflops);
                return None;
            }
            Behaviour::Contradicts { observed_mflops } => observed_mflops,
        };
        info.observed_mflops = Some(observed);
        if info.behaviour_flag.is_some() {
            return None;
        }
        let flag = format!(
            "fragments show {observed} MFLOP/s, more than {}× below the {verified} MFLOP/s its capability challenge showed",
            policy.contradiction_factor
        );
        info.behaviour_flag = Some(flag.clone());
        Some(flag)
    }

    /// What `node`'s peers on its backend (the first [`BEHAVIOUR_PEERS`] other nodes with a
    /// proven capability there, in id order) say its efficiency should be.
    fn peers_of(&self, node: &NodeId) -> Peers {
        let Some(backend) = self.nodes.get(node).map(|n| n.info.device.backend) else {
            return Peers::Alone;
        };
        let peers: Vec<&Registered> = self
            .nodes
            .iter()
            .filter(|(peer, registered)| {
                *peer != node
                    && registered.info.device.backend == backend
                    && registered.info.capability.is_some()
            })
            .map(|(_, registered)| registered)
            .take(BEHAVIOUR_PEERS)
            .collect();
        let mut efficiencies: Vec<u64> = peers
            .iter()
            .filter_map(|registered| {
                let observed = registered.info.observed_mflops?;
                let verified = registered.info.capability.as_ref()?.demonstrated_mflops;
                Some(corex_scheduler::efficiency_ppm(observed, verified))
            })
            .collect();
        efficiencies.sort_unstable();
        match efficiencies.get(efficiencies.len() / 2) {
            Some(median) => Peers::Efficiency(*median),
            None if peers.is_empty() => Peers::Alone,
            None => Peers::NotObservedYet,
        }
    }

    /// Closes every round whose audit deadline has passed (the coordinator replays what no
    /// node returned); each job that progressed, and how.
    pub fn close_overdue_rounds(
        &mut self,
        now_ms: u64,
    ) -> Vec<(Hash, Result<Progress, CoordinatorError>)> {
        let mut closed = Vec::new();
        for id in self.job_order.clone() {
            let (jobs, engine) = self.jobs_and_engine(now_ms);
            if let Some(job) = jobs.get_mut(&id)
                && job.is_running()
                && let Some(progress) = job.close_overdue(now_ms, engine)
            {
                closed.push((id, progress));
            }
        }
        closed
    }
}

impl Coordinator {
    /// The jobs, beside the parts of the coordinator a job run may touch at `now_ms`, borrowed
    /// field by field so that a job can be borrowed beside them.
    pub(crate) fn jobs_and_engine(
        &mut self,
        now_ms: u64,
    ) -> (&mut BTreeMap<Hash, JobRun>, Engine<'_>) {
        let engine = Engine {
            blobs: &mut self.blobs,
            verifier: &mut self.verifier,
            auditors: Auditors {
                nodes: &self.nodes,
                now_ms,
                shared_hardware: self.config.shared_hardware,
                coordinator_mflops: self.config.replay_mflops,
            },
        };
        (&mut self.jobs, engine)
    }
}
