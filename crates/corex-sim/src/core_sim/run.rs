//! The simulation loop: virtual nodes and the simulated coordinator process exchanging
//! messages in virtual time, the core's commands carried out as the shell carries them out
//! (persist before answering, ledger records in order, ML work on a "compute pool" that
//! answers later), faults drawn from the seed, and the invariants checked after every step.

use std::collections::BTreeMap;
use std::sync::Arc;

use corex_coordinator::CoordinatorError;
use corex_coordinator::core::{Answer, Event, RequestId};
use corex_coordinator::job_run::ClosedWork;
use corex_coordinator::job_run::JobRun;
use corex_core::messages::{DeviceReport, JobState};
use corex_core::{Hash, JobSpec, NodeId};
use corex_ledger::{DeviceClass, SignedTx, TxBody};
use corex_ml::Dataset;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use super::agenda::Agenda;
use super::invariants::Invariants;
use super::nodes::{Behaviour, Computed, Doing, SimNode, checked_at_edge};
use super::process::{GENESIS_UNIX_MS, Process};
use super::{CoreSimConfig, FaultCounts, SimProgress};

/// The coordinator's sweep timer, in virtual milliseconds.
const TIMER_MS: u64 = 250;
/// How long a round's close computes, in virtual time.
const CLOSE_MS: u64 = 5;
/// A node that could not reach the coordinator tries again after this long.
const RETRY_MS: u64 = 500;
/// How long the coordinator stays down after a crash.
const DOWNTIME_MS: u64 = 400;
/// Who waits for the job's submission among the requests the core holds: the owner, not a
/// node.
const OWNER: usize = usize::MAX;
/// How long a crashed node stays down.
const NODE_DOWNTIME_MS: u64 = 3_000;

pub(super) enum Message {
    Register,
    Lease,
    Result(Box<Computed>),
}

enum Heard {
    Answer(Result<Answer, CoordinatorError>),
    /// The coordinator was down, or went down before answering.
    Refused,
}

enum Happening {
    Arrive {
        node: usize,
        message: Message,
    },
    Hear {
        node: usize,
        heard: Heard,
    },
    Wake {
        node: usize,
        generation: u64,
    },
    CloseDone {
        incarnation: u32,
        job: Hash,
        closed: Result<Box<ClosedWork>, String>,
    },
    Timer,
    SubmitJob,
    Crash,
    Restart,
}

pub(super) struct Sim<'a> {
    pub config: &'a CoreSimConfig,
    pub rng: ChaCha8Rng,
    agenda: Agenda<Happening>,
    pub now: u64,
    pub process: Process,
    pub nodes: Vec<SimNode>,
    honest: Vec<NodeId>,
    spec: JobSpec,
    dataset: Arc<Dataset>,
    pub job: Option<Hash>,
    /// Requests handed to the core and not answered yet: whose they are.
    asking: BTreeMap<RequestId, usize>,
    next_request: RequestId,
    /// A node's result kept for resending while its answer is outstanding.
    results: BTreeMap<usize, Box<Computed>>,
    pub invariants: Invariants,
    pub faults: FaultCounts,
    pub steps: u64,
    /// Set when a crash is due: the next batch of commands is cut at a drawn point.
    crash_due: bool,
    pub duplicate_rounds_refused: u64,
    /// The most rounds seen closed (a restart may close a round again).
    closed_seen: u32,
}

impl<'a> Sim<'a> {
    pub(super) fn new(
        config: &'a CoreSimConfig,
        rng: ChaCha8Rng,
        process: Process,
        nodes: Vec<SimNode>,
        spec: JobSpec,
        dataset: Arc<Dataset>,
    ) -> Self {
        let honest = nodes
            .iter()
            .filter(|node| node.behaviour == Behaviour::Honest)
            .map(|node| node.id)
            .collect();
        Self {
            config,
            rng,
            agenda: Agenda::new(),
            now: 0,
            process,
            nodes,
            honest,
            spec,
            dataset,
            job: None,
            asking: BTreeMap::new(),
            next_request: 0,
            results: BTreeMap::new(),
            invariants: Invariants::default(),
            faults: FaultCounts::default(),
            steps: 0,
            crash_due: false,
            duplicate_rounds_refused: 0,
            closed_seen: 0,
        }
    }

    /// Liars and lying auditors the coordinator has banned.
    pub(super) fn cheaters_banned(&self) -> usize {
        let Some(running) = self.process.running.as_ref() else {
            return 0;
        };
        self.nodes
            .iter()
            .filter(|node| node.behaviour != Behaviour::Honest)
            .filter(|node| running.core.engine().verifier.is_banned(&node.id))
            .count()
    }

    fn delay(&mut self) -> u64 {
        let [low, high] = self.config.faults.delay_ms;
        if high > low {
            self.faults.delayed_messages += 1;
        }
        self.rng.random_range(low..=high.max(low))
    }

    /// Runs until the job has ended and its last progress is stored, or `limit_ms` of virtual
    /// time passed; each of `crashes`, `(round, offset)`, kills the coordinator `offset` ms
    /// after that round closed. Returns the final model's hash.
    pub(super) fn run(
        &mut self,
        crashes: &[(u32, u64)],
        limit_ms: u64,
        on_progress: &mut dyn FnMut(SimProgress),
    ) -> Result<Hash, String> {
        self.start_coordinator()?;
        for node in 0..self.nodes.len() {
            self.register_on_ledger(node)?;
            let at = self.rng.random_range(0..500);
            self.agenda.at(
                at,
                Happening::Arrive {
                    node,
                    message: Message::Register,
                },
            );
        }
        self.agenda.at(1_000, Happening::SubmitJob);
        self.agenda.at(TIMER_MS, Happening::Timer);
        while let Some((at, happening)) = self.agenda.next() {
            self.now = at;
            if self.now > limit_ms {
                return Err(format!("the job did not end within {limit_ms} virtual ms"));
            }
            let closed = matches!(happening, Happening::CloseDone { .. });
            self.happen(happening)?;
            if closed {
                let progress = self.progress();
                for (round, offset) in crashes {
                    if *round + 1 == progress.rounds_closed
                        && self.closed_seen < progress.rounds_closed
                    {
                        self.agenda.at(self.now + offset, Happening::Crash);
                    }
                }
                self.closed_seen = self.closed_seen.max(progress.rounds_closed);
                on_progress(progress);
            }
            if let Some(ended) = self.ended() {
                return ended;
            }
        }
        Err("nothing left to happen before the job ended".into())
    }

    /// Once the job has ended and its whole history is stored: its final model, or how it
    /// did not finish.
    fn ended(&self) -> Option<Result<Hash, String>> {
        let job = self.job_run()?;
        if job.is_running() || !job.history_is_stored() {
            return None;
        }
        let status = job.status();
        Some(match status.state {
            JobState::Finished => Ok(status.model),
            state => Err(format!("the job ended {state:?}")),
        })
    }

    /// The liars and lying auditors.
    pub(super) fn cheaters(&self) -> Vec<(NodeId, Behaviour)> {
        self.nodes
            .iter()
            .filter(|node| node.behaviour != Behaviour::Honest)
            .map(|node| (node.id, node.behaviour))
            .collect()
    }

    /// The job's recorded rounds.
    pub(super) fn history(&self) -> Vec<corex_core::messages::RoundRecord> {
        self.job_run()
            .map_or_else(Vec::new, |job| job.history().to_vec())
    }

    /// The simulated job as the running coordinator holds it.
    fn job_run(&self) -> Option<&JobRun> {
        let engine = self.process.running.as_ref()?.core.engine();
        engine.job(&self.job?).ok()
    }

    fn progress(&self) -> SimProgress {
        let rounds_closed = self.job_run().map_or(0, |job| job.history().len() as u32);
        SimProgress {
            rounds_closed,
            steps: self.steps,
            virtual_ms: self.now,
        }
    }

    fn start_coordinator(&mut self) -> Result<(), String> {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let progressed = self
            .process
            .start(seed, self.now)
            .map_err(|error| format!("the coordinator could not start: {error}"))?;
        self.step(Event::Restored { progressed })
    }

    fn register_on_ledger(&mut self, node: usize) -> Result<(), String> {
        let running = self.process.running.as_mut().ok_or("no coordinator")?;
        let genesis = running.ledger.chain().genesis_hash();
        let body = TxBody::RegisterNode {
            device_fingerprint: Hash::of(&self.nodes[node].id.0),
            device_class: DeviceClass::Cpu,
        };
        let tx = SignedTx::sign(&self.nodes[node].key, &genesis, 1, body);
        running
            .ledger
            .submit(tx, GENESIS_UNIX_MS + self.now)
            .map(|_| ())
            .map_err(|error| format!("a node could not register on the ledger: {error}"))
    }

    fn happen(&mut self, happening: Happening) -> Result<(), String> {
        match happening {
            Happening::Arrive { node, message } => self.arrive(node, message),
            Happening::Hear { node, heard } => self.hear(node, heard),
            Happening::Wake { node, generation } => {
                let sim_node = &mut self.nodes[node];
                if sim_node.generation == generation
                    && matches!(sim_node.doing, Doing::Waiting | Doing::Down)
                {
                    sim_node.doing = Doing::Asking;
                    let at = self.now + self.delay();
                    self.agenda.at(
                        at,
                        Happening::Arrive {
                            node,
                            message: Message::Lease,
                        },
                    );
                }
                Ok(())
            }
            Happening::CloseDone {
                incarnation,
                job,
                closed,
            } => {
                if incarnation == self.process.incarnation && self.process.running.is_some() {
                    self.step(Event::CloseComputed { job, closed })?;
                }
                Ok(())
            }
            Happening::Timer => {
                self.agenda.at(self.now + TIMER_MS, Happening::Timer);
                if self.process.running.is_none() {
                    return Ok(());
                }
                let mut entropy = [0u8; 32];
                self.rng.fill_bytes(&mut entropy);
                self.step(Event::TimerFired {
                    entropy: Some(entropy),
                })?;
                if let Some(running) = self.process.running.as_mut() {
                    running
                        .ledger
                        .close_epochs(GENESIS_UNIX_MS + self.now)
                        .map_err(|error| format!("an epoch could not close: {error}"))?;
                }
                self.check()
            }
            Happening::SubmitJob => self.submit_job(),
            Happening::Crash => {
                self.crash_due = true;
                Ok(())
            }
            Happening::Restart => {
                self.start_coordinator()?;
                self.check()
            }
        }
    }

    fn submit_job(&mut self) -> Result<(), String> {
        let Some(running) = self.process.running.as_mut() else {
            self.agenda.at(self.now + RETRY_MS, Happening::SubmitJob);
            return Ok(());
        };
        let sequence = running
            .store
            .take_job_sequence()
            .map_err(|e| e.to_string())?;
        let prepared = corex_coordinator::prepared::prepare(&self.spec, self.dataset.clone(), None)
            .map_err(|error| error.to_string())?;
        let owner = self.process.identity.id();
        let event = Event::JobSubmitted {
            request: self.new_request(OWNER),
            owner,
            spec: Box::new(self.spec.clone()),
            prepared,
            sequence,
            replay_mflops: None,
        };
        self.step(event)?;
        if let Some(running) = self.process.running.as_ref() {
            self.job = running.core.engine().jobs().last().map(|job| job.id);
        }
        Ok(())
    }

    fn new_request(&mut self, node: usize) -> RequestId {
        let request = self.next_request;
        self.next_request += 1;
        self.asking.insert(request, node);
        request
    }

    /// What `node` hears, after a network delay.
    fn answer(&mut self, node: usize, heard: Heard) {
        let at = self.now + self.delay();
        self.agenda.at(at, Happening::Hear { node, heard });
    }

    /// A node's message reaches the coordinator.
    fn arrive(&mut self, node: usize, message: Message) -> Result<(), String> {
        if self.process.running.is_none() {
            if let Message::Result(computed) = message {
                self.results.insert(node, computed);
            }
            self.answer(node, Heard::Refused);
            return Ok(());
        }
        let id = self.nodes[node].id;
        let request = self.new_request(node);
        let event = match message {
            Message::Register => Event::NodeRegistered {
                request,
                node: id,
                device: device(id),
                endpoint: format!("10.{}.{}.{}", node >> 16, (node >> 8) & 255, node & 255),
            },
            Message::Lease => Event::LeaseAsked {
                request,
                node: id,
                ahead: 0,
            },
            Message::Result(computed) => match checked_at_edge(id, &computed) {
                Ok(signed) => {
                    let header = Box::new(computed.header.clone());
                    self.results.insert(node, computed);
                    Event::ResultArrived {
                        request,
                        node: id,
                        header,
                        signed,
                    }
                }
                Err(error) => {
                    self.asking.remove(&request);
                    self.answer(node, Heard::Answer(Err(error)));
                    return Ok(());
                }
            },
        };
        self.step(event)
    }

    /// Hands the core `event`, carries out its commands, checks the invariants.
    fn step(&mut self, event: Event) -> Result<(), String> {
        let Some(running) = self.process.running.as_mut() else {
            return Ok(());
        };
        let core_ms = running.core_ms(self.now);
        let commands = running.core.handle(event, core_ms);
        self.steps += 1;
        let mut follow_ups = Vec::new();
        let cut = if self.crash_due {
            self.crash_due = false;
            Some(self.rng.random_range(0..=commands.len()))
        } else {
            None
        };
        for (index, command) in commands.into_iter().enumerate() {
            if cut == Some(index) {
                break;
            }
            self.carry_out(command, &mut follow_ups)?;
        }
        if cut.is_some() {
            self.crash();
            return Ok(());
        }
        self.check()?;
        for event in follow_ups {
            self.step(event)?;
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), String> {
        if let Some(running) = self.process.running.as_ref() {
            self.invariants
                .after_step(&running.ledger, &running.core, &self.honest)?;
        }
        Ok(())
    }

    /// Kill -9 now: requests handed to the core and not answered are cut off.
    fn crash(&mut self) {
        self.faults.coordinator_restarts += 1;
        self.process.crash();
        for (_, node) in std::mem::take(&mut self.asking) {
            if node == OWNER {
                // The job's submission was not acknowledged: the owner sends it again.
                self.agenda
                    .at(self.now + DOWNTIME_MS + RETRY_MS, Happening::SubmitJob);
                continue;
            }
            self.answer(node, Heard::Refused);
        }
        self.agenda.at(self.now + DOWNTIME_MS, Happening::Restart);
    }
}

/// A virtual node's device: a fingerprint of its own (so audits may cross between nodes).
fn device(node: NodeId) -> DeviceReport {
    DeviceReport {
        hostname: format!("sim-{}", node.short()),
        os: "sim".into(),
        cpu_model: "virtual".into(),
        logical_cores: 1,
        memory_bytes: 1 << 30,
        gpus: Vec::new(),
        compute_threads: 1,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        claimed_gflops: None,
        fingerprint: Hash::of(&node.0),
        benchmark: None,
        backend: corex_core::ComputeBackend::Cpu,
        adapter: None,
    }
}

mod commands;
mod reactions;
