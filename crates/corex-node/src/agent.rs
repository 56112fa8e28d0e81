//! The node agent loop: register, then lease a fragment, fetch its model version by hash,
//! compute, and submit a signed result, until told to stop.
//!
//! Model versions and job datasets are cached by hash (a shared dataset chunk by chunk, see
//! `data`). Connection trouble is retried with
//! backoff; a refused result (late lease, stale model) is logged and the loop moves on.
//!
//! A node given local data (`NodeConfig::local_data`) is a data holder for federated jobs:
//! their fragments train on that data, which never leaves the node; only the update goes out,
//! with a salted commitment to the data and the samples it used.

mod data;
mod joining;
mod model;
mod submit;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corex_core::chunk::Manifest;
use corex_core::fragment::result_commitment;
use corex_core::messages::{
    DeviceReport, LeaseResponse, LocalDataCommitment, ResultHeader, ResultReport,
};
use corex_core::model_update::ModelUpdate;
use corex_core::result_frame::ResultTensor;
use corex_core::tensor::bytes_to_f32s;
use corex_core::trace::{StepTrace, traced_commitment};
use corex_core::{Fragment, Hash, Keypair, WorkSpec};
use corex_ml::{Backend, Dataset, PrivateStepsSpec};
use corex_net::{CoordinatorClient, JobDescriptor};
use tokio::sync::watch;

use self::data::ChunkedDataset;
pub use self::data::DatasetTraffic;
use self::submit::Outcome;
use crate::adversary::{Adversary, AdversaryState, share, tamper};
use crate::checkpoints::{CheckpointStore, DEFAULT_CHECKPOINT_BUDGET_BYTES};
use crate::device;
use crate::error::NodeError;
use crate::feedback::FeedbackStore;
use crate::fragment_compute::{Trace, Variant, compute};
use crate::holder::HolderPolicy;
use crate::latency::{LatencyRing, LatencySummary};
use crate::pacing::{Backoff, throttle, wait_or_stop};
use crate::telemetry::NodeTelemetry;

/// Settings of one node agent.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Threads used for compute (reported to the coordinator).
    pub compute_threads: u32,
    /// Where fragments, audit replays and the capability challenge are computed.
    pub backend: Backend,
    /// How long each lease request may wait for work on the coordinator.
    pub lease_wait_ms: u64,
    /// Cheat this way (tests and adversarial devnets only).
    pub adversary: Option<Adversary>,
    /// When set, every result this node submits is also left here, where copying adversaries
    /// find it (a leak, for adversarial tests).
    pub collusion_dir: Option<PathBuf>,
    /// Stands for weaker hardware: after each computation (fragments and the capability
    /// challenge alike) the node idles `slowdown − 1` times the compute time, so it works
    /// `slowdown` times slower. 1 is full speed.
    pub slowdown: u32,
    /// This node's own training data for federated jobs that name it as a data holder.
    pub local_data: Option<Arc<Dataset>>,
    /// Which federated jobs this node, as a data holder, agrees to compute (default: none).
    pub holder: HolderPolicy,
    /// Memory the step checkpoints of recent traced results may take (for segment audits;
    /// a checkpoint dropped to stay within it is declined when asked for, see `reveal`).
    pub checkpoint_budget_bytes: usize,
    /// Where the agent reports what it does, for metrics and the operator's status line.
    pub telemetry: Arc<NodeTelemetry>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            compute_threads: 1,
            backend: Backend::cpu(),
            lease_wait_ms: 5_000,
            adversary: None,
            collusion_dir: None,
            slowdown: 1,
            local_data: None,
            holder: HolderPolicy::default(),
            checkpoint_budget_bytes: DEFAULT_CHECKPOINT_BUDGET_BYTES,
            telemetry: Arc::default(),
        }
    }
}

struct JobContext {
    descriptor: JobDescriptor,
    data: JobData,
}

/// Where a job's data comes from.
enum JobData {
    /// Loaded whole: the built-in digits.
    Whole(Arc<Dataset>),
    /// The shared dataset blob of that name, read chunk by chunk (`data`).
    Chunked(Hash),
    /// A federated job: each holder computes on its own data.
    HoldersOwn,
}

/// This node's local data and the commitment to it, salted with a secret derived from the
/// node key so that nobody can test a guess of the data against the commitment.
struct LocalShard {
    dataset: Arc<Dataset>,
    salt: Hash,
    commitment: Hash,
}

impl LocalShard {
    fn new(dataset: Arc<Dataset>, key: &Keypair) -> Self {
        let salt = Hash::of_parts(&[b"corex-local-data-salt", &key.secret_bytes()]);
        let commitment = Hash::of_parts(&[b"corex-local-shard", &salt.0, &dataset.content_hash()]);
        Self {
            dataset,
            salt,
            commitment,
        }
    }

    /// Commits to the samples each step used: every batch as its length then its indices,
    /// all `u32` little-endian (one batch, the fragment's indices, without privacy).
    fn commit(&self, batches: &[Vec<u32>]) -> LocalDataCommitment {
        let encoded: Vec<u8> = batches
            .iter()
            .flat_map(|batch| std::iter::once(batch.len() as u32).chain(batch.iter().copied()))
            .flat_map(u32::to_le_bytes)
            .collect();
        LocalDataCommitment {
            shard: self.commitment,
            samples: Hash::of_parts(&[b"corex-local-samples", &self.salt.0, &encoded]),
        }
    }
}

/// What a node's run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeRunSummary {
    /// Results the coordinator accepted for upload.
    pub fragments: u64,
    /// What the shared datasets cost, over every job.
    pub dataset_traffic: DatasetTraffic,
    /// How long the coordinator took to take this node's results.
    pub result_latency: LatencySummary,
    /// How long it took to answer this node's lease requests, when they do not wait for work
    /// (`lease_wait_ms` 0; else none is timed).
    pub lease_latency: LatencySummary,
}

pub struct NodeAgent {
    client: CoordinatorClient,
    key: Keypair,
    config: NodeConfig,
    jobs: HashMap<Hash, Arc<JobContext>>,
    /// Shared datasets by blob, as far as fetched.
    datasets: HashMap<Hash, ChunkedDataset>,
    local: Option<LocalShard>,
    /// The model versions used last, newest first (at most `HELD_MODELS`): a segment audit's
    /// checkpoint does not push out the round's version that the next round's updates apply to.
    models: Vec<(Hash, Arc<Vec<f32>>)>,
    pub fragments_done: u64,
    /// The last loss computed, which a fragment skipped by an adversary reports.
    last_loss: f32,
    adversary_state: AdversaryState,
    /// Step checkpoints of traced results, for audits that ask for a segment.
    checkpoints: CheckpointStore,
    /// Error-feedback states of jobs with compressed updates.
    feedback: FeedbackStore,
    result_latency: LatencyRing,
    lease_latency: LatencyRing,
}

impl NodeAgent {
    pub fn new(client: CoordinatorClient, key: Keypair, config: NodeConfig) -> Self {
        let adversary_state = AdversaryState {
            previous: None,
            collusion_dir: config.collusion_dir.clone(),
        };
        let local = config
            .local_data
            .clone()
            .map(|dataset| LocalShard::new(dataset, &key));
        let checkpoints = CheckpointStore::new(config.checkpoint_budget_bytes);
        Self {
            client,
            key,
            config,
            jobs: HashMap::new(),
            datasets: HashMap::new(),
            local,
            models: Vec::new(),
            fragments_done: 0,
            last_loss: 2.3,
            adversary_state,
            checkpoints,
            feedback: FeedbackStore::default(),
            result_latency: LatencyRing::default(),
            lease_latency: LatencyRing::default(),
        }
    }

    /// Runs until `stop` turns true. Returns early only if registration is impossible. A
    /// coordinator that no longer knows this node (it restarted) gets it registered again.
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
    ) -> Result<NodeRunSummary, NodeError> {
        self.warm_up().await;
        let mut report = device::detect(self.config.compute_threads, &self.config.backend);
        if self.config.adversary == Some(Adversary::FakeGpu) {
            crate::adversary::claim_a_gpu(&mut report);
        }
        let ledger = tokio::spawn(crate::telemetry::follow_ledger(
            self.client.clone(),
            self.key.id(),
            self.config.telemetry.clone(),
            stop.clone(),
        ));
        while self.register(&report, &mut stop).await? {
            match self.work(&mut stop).await {
                WorkEnd::Stopped => break,
                WorkEnd::Forgotten => tracing::info!(
                    "the coordinator no longer knows this node (it restarted?); registering again"
                ),
            }
        }
        ledger.abort();
        let summary = self.summary();
        tracing::info!(
            fragments = summary.fragments,
            dataset_network_bytes = summary.dataset_traffic.network_bytes,
            dataset_network_chunks = summary.dataset_traffic.network_chunks,
            dataset_cached_chunks = summary.dataset_traffic.cached_chunks,
            "node stopped"
        );
        Ok(summary)
    }

    /// Registers (retrying while the coordinator is unreachable), joins the ledger and answers
    /// the capability challenge; false when stopped first.
    async fn register(
        &self,
        report: &DeviceReport,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<bool, NodeError> {
        let mut backoff = Backoff::default();
        loop {
            match self.client.register(report.clone()).await {
                Ok(response) => {
                    tracing::info!(node = %response.node.short(), coordinator = %response.coordinator.short(), "registered");
                    self.join_ledger(report).await;
                    self.prove_capability().await;
                    return Ok(true);
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, "registration failed; retrying");
                    if wait_or_stop(stop, backoff.next()).await {
                        return Ok(false);
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Leases and computes until stopped, or until the coordinator no longer knows this node.
    async fn work(&mut self, stop: &mut watch::Receiver<bool>) -> WorkEnd {
        let mut backoff = Backoff::default();
        while !*stop.borrow() {
            let asked = std::time::Instant::now();
            let lease = tokio::select! {
                lease = self.client.lease(self.config.lease_wait_ms) => lease,
                _ = stop.changed() => break,
            };
            if self.config.lease_wait_ms == 0 && lease.is_ok() {
                self.lease_latency.record(asked.elapsed());
            }
            match lease {
                Ok(LeaseResponse::Work {
                    fragment,
                    model,
                    audit,
                    updates,
                    ..
                }) => {
                    backoff = Backoff::default();
                    tracing::debug!(fragment = %fragment.id.short(), round = fragment.round, "fragment leased");
                    // A stop lands even mid-fragment (say, while an upload retries against a
                    // coordinator that has shut down).
                    let outcome = tokio::select! {
                        outcome = self.work_on(&fragment, &model, &updates, audit) => outcome,
                        _ = stop.changed() => break,
                    };
                    match outcome {
                        Err(NodeError::Net(error)) if forgotten(&error) => {
                            return WorkEnd::Forgotten;
                        }
                        Err(error) => {
                            tracing::warn!(fragment = %fragment.id.short(), %error, "fragment not completed")
                        }
                        Ok(()) => {}
                    }
                }
                Ok(LeaseResponse::Reveal {
                    fragment,
                    model,
                    steps,
                    leaves,
                    feedback,
                }) => {
                    let asked = submit::Asked {
                        steps: &steps,
                        leaves: &leaves,
                        feedback: &feedback,
                    };
                    let outcome = tokio::select! {
                        outcome = self.reveal(&fragment, &model, asked) => outcome,
                        _ = stop.changed() => break,
                    };
                    // The coordinator asks again until its audit deadline, when it replays the
                    // whole fragment instead: back off rather than ask it in a tight loop.
                    match outcome {
                        Ok(()) => backoff = Backoff::default(),
                        Err(NodeError::Net(error)) if forgotten(&error) => {
                            return WorkEnd::Forgotten;
                        }
                        Err(error) => {
                            tracing::warn!(fragment = %fragment.short(), %error, "checkpoints not revealed");
                            if wait_or_stop(stop, backoff.next()).await {
                                break;
                            }
                        }
                    }
                }
                Ok(LeaseResponse::Idle { retry_ms }) => {
                    if wait_or_stop(stop, Duration::from_millis(retry_ms.min(2_000))).await {
                        break;
                    }
                }
                Err(error) if forgotten(&error) => return WorkEnd::Forgotten,
                Err(error) => {
                    tracing::warn!(%error, "lease request failed");
                    if wait_or_stop(stop, backoff.next()).await {
                        break;
                    }
                }
            }
        }
        WorkEnd::Stopped
    }

    /// Computes `fragment` and submits its result (an `audit` task's replay whole, never
    /// compressed).
    async fn work_on(
        &mut self,
        fragment: &Fragment,
        model: &Manifest,
        updates: &[ModelUpdate],
        audit: bool,
    ) -> Result<(), NodeError> {
        let job = self.job_context(&fragment.job).await?;
        if fragment.holder.is_some() {
            let samples = self.local.as_ref().map_or(0, |local| local.dataset.len());
            let descriptor = &job.descriptor;
            if let Some(reason) = self.config.holder.refusal(
                &descriptor.owner,
                &descriptor.spec,
                fragment.round,
                samples,
            ) {
                tracing::info!(job = %fragment.job.short(), %reason, "declining a federated job");
                return Ok(self.client.decline_job(&fragment.id, &reason).await?);
            }
        }
        let download = job.descriptor.spec.download_compression;
        let parameters = self
            .model_version(&fragment.model, model, updates, &download)
            .await?;
        let job_name = &job.descriptor.spec.name;
        self.config
            .telemetry
            .fragment_leased(job_name, fragment.round);
        let started = Instant::now();
        let work = &job.descriptor.spec.work;
        if fragment.kind != work.fragment_kind() {
            return Err(NodeError::Compute(format!(
                "fragment kind {:?} does not match the job's work {work:?}",
                fragment.kind
            )));
        }
        let result_len = work.result_len(&job.descriptor.spec.model, fragment.indices.len());
        // `indices` index `dataset`, which may hold just this fragment's samples.
        let (dataset, indices) = self.fragment_data(fragment, &job).await?;
        let variant = match (private_plan(&job, fragment), fragment.steps) {
            (Some(plan), _) => Variant::Private(plan),
            (None, Some(steps)) => Variant::Segment(steps),
            (None, None) if self.config.adversary == Some(Adversary::SkipSegment) => {
                Variant::SkipSegment
            }
            (None, None) => Variant::Plain,
        };
        let skip = self
            .config
            .adversary
            .is_some_and(|adversary| adversary.skips(&fragment.id));
        let (computed, batches, trace) = if skip {
            (None, vec![fragment.indices.clone()], None)
        } else {
            let backend = self.config.backend.clone();
            let job_spec = job.descriptor.spec.clone();
            // Training runs at the lowest priority, under the node's network thread and
            // anything else on the machine.
            let computed = tokio::task::spawn_blocking(move || {
                corex_ml::lower_current_thread_priority();
                compute(&backend, &job_spec, &parameters, &dataset, indices, variant)
            })
            .await
            .map_err(|error| NodeError::Compute(error.to_string()))??;
            (Some(computed.output), computed.batches, computed.trace)
        };
        let data_commitment = fragment
            .holder
            .and(self.local.as_ref())
            .map(|local| local.commit(&batches));
        let slowdown = match self.config.adversary {
            Some(Adversary::BaitAndSwitch) => self
                .config
                .slowdown
                .max(crate::adversary::BAIT_AND_SWITCH_SLOWDOWN),
            _ => self.config.slowdown,
        };
        throttle(started.elapsed(), slowdown).await;
        let compute_ms = started.elapsed().as_millis() as u64;
        let telemetry = &self.config.telemetry;
        telemetry.fragment_computed(fragment.kind, fragment.cost_flops, compute_ms);
        let (loss, samples) = computed
            .as_ref()
            .map_or((self.last_loss, fragment.indices.len() as u32), |output| {
                (output.loss, output.samples)
            });
        self.last_loss = loss;
        let honest = computed.map(|output| output.values);
        let gradient = match self.config.adversary {
            Some(adversary) => tamper(
                adversary,
                &mut self.adversary_state,
                &fragment.id,
                honest,
                result_len,
            ),
            None => honest.ok_or_else(|| NodeError::Compute("no result computed".into()))?,
        };
        share(&self.adversary_state, &gradient);

        tracing::debug!(fragment = %fragment.id.short(), compute_ms, "fragment computed; submitting the result");
        let trace = trace.map(
            |Trace {
                 checkpoints,
                 roots,
                 losses,
             }| {
                let trace = StepTrace {
                    checkpoints: roots,
                    losses,
                };
                self.checkpoints.keep(fragment, checkpoints);
                trace
            },
        );
        let outcome = Outcome {
            values: Arc::new(gradient),
            report: ResultReport {
                loss,
                samples,
                compute_ms,
            },
            data_commitment,
            trace,
        };
        let compression = match audit {
            true => corex_core::compression::CompressionSpec::None,
            false => job.descriptor.spec.compression,
        };
        self.submit(fragment, &compression, outcome).await
    }
}

/// Why a node's work loop ended.
enum WorkEnd {
    Stopped,
    /// The coordinator answered that it does not know this node: register again.
    Forgotten,
}

/// The coordinator does not know this node (it restarted and lost its registry).
fn forgotten(error: &corex_net::NetError) -> bool {
    error.api_code() == Some("unregistered_node")
}

/// The DP-SGD plan of a federated fragment whose job asks for differential privacy.
fn private_plan(job: &JobContext, fragment: &Fragment) -> Option<PrivateStepsSpec> {
    let spec = &job.descriptor.spec;
    let federated = spec
        .federated
        .as_ref()
        .filter(|_| fragment.holder.is_some())?;
    let privacy = federated.privacy?;
    match &spec.work {
        WorkSpec::LocalSteps { steps, inner } => Some(PrivateStepsSpec {
            steps: *steps,
            local_batch: federated.local_batch,
            inner: inner.clone(),
            privacy,
        }),
        _ => None,
    }
}
