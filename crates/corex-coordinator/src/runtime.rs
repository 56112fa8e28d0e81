//! The shell around the core: the one thread that owns the [`CoordinatorCore`] and feeds it
//! events, and the executor that carries out the commands it gives.
//!
//! Requests reach the core through a [`CoreHandle`] (an event with a request id, answered
//! through a oneshot channel); computations finished on the compute pool (`compute_pool`:
//! threads of its own at the lowest priority) come back the same way, as events. The
//! executor, on the core's thread, does what is quick and must keep its order there (records
//! handed to the ledger recorder, waking lease requests, starting computations) and hands what
//! waits on the disk to a task: each batch's `Persist` steps run in order before the answers
//! that follow them, so a request is acknowledged only once what it changed is durable. A
//! panic in the core is logged and the request its event was for is answered 500; the next
//! event is taken as usual.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use corex_core::NodeId;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use crate::compute_pool::ComputePool;
use crate::core::{Answer, Command, CoordinatorCore, Event, Persist, RequestId};
use crate::durability;
use crate::engine::Coordinator;
use crate::error::CoordinatorError;
use crate::ledger::{LedgerRecord, LedgerService, Suspicion};
use crate::metrics::CoordinatorMetrics;
use crate::server::{Clock, lock, panic_message};
use crate::store::StateStore;

/// What the shell's tasks share: the coordinator's durable state, the ledger, the clock.
pub struct Services {
    pub store: StateStore,
    /// Where jobs' files and kept results are written.
    pub data_dir: PathBuf,
    pub ledger: Arc<Mutex<LedgerService>>,
    pub clock: Clock,
    /// Woken when fragments may have become available (new job, new round, expired lease).
    pub work_available: Notify,
    pub metrics: CoordinatorMetrics,
}

type Reply = oneshot::Sender<Result<Answer, CoordinatorError>>;

enum Envelope {
    /// An event for a request (`Event::request`), and where its answer goes.
    Request {
        event: Event,
        reply: Reply,
    },
    Event(Event),
    Stop,
}

/// The way into the core.
#[derive(Clone)]
pub struct CoreHandle {
    sender: Sender<Envelope>,
    next_request: Arc<AtomicU64>,
}

fn stopped() -> CoordinatorError {
    CoordinatorError::CoreFailed("the coordinator is stopping".into())
}

impl CoreHandle {
    /// Hands the core the event `event` makes of a fresh request id; its answer.
    pub async fn ask(
        &self,
        event: impl FnOnce(RequestId) -> Event,
    ) -> Result<Answer, CoordinatorError> {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let event = event(request);
        self.sender
            .send(Envelope::Request { event, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// What `read` takes from the state.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Coordinator) -> Result<T, CoordinatorError> + Send + 'static,
    ) -> Result<T, CoordinatorError> {
        let answer = self
            .ask(|request| Event::Read {
                request,
                read: Box::new(move |engine| {
                    read(engine).map(|value| Box::new(value) as Box<dyn std::any::Any + Send>)
                }),
            })
            .await?;
        match answer {
            Answer::Read(value) => value
                .downcast::<T>()
                .map(|value| *value)
                .map_err(|_| CoordinatorError::CoreFailed("a read came back mistyped".into())),
            _ => Err(CoordinatorError::CoreFailed(
                "a read was answered as a change".into(),
            )),
        }
    }

    /// Hands the core an event nobody waits on.
    pub fn tell(&self, event: Event) {
        if self.sender.send(Envelope::Event(event)).is_err() {
            tracing::debug!("an event came after the core stopped");
        }
    }

    /// Stops the core's thread once the events sent before are handled.
    pub fn stop(&self) {
        let _ = self.sender.send(Envelope::Stop);
    }
}

/// Stops the core's thread when dropped.
pub struct StopOnDrop(pub CoreHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Starts the core's thread. `ledger` is the recorder's channel: it closes when the thread
/// ends.
pub fn start(
    core: CoordinatorCore,
    services: Arc<Services>,
    ledger: UnboundedSender<LedgerRecord>,
) -> std::io::Result<(CoreHandle, std::thread::JoinHandle<()>)> {
    let (sender, receiver) = channel();
    let handle = CoreHandle {
        sender,
        next_request: Arc::new(AtomicU64::new(0)),
    };
    let threads = std::thread::available_parallelism().map_or(1, |threads| threads.get());
    let executor = Executor {
        services,
        compute: ComputePool::start(threads)?,
        ledger,
        core: handle.clone(),
        waiting: HashMap::new(),
        runtime: tokio::runtime::Handle::current(),
    };
    let thread = std::thread::Builder::new()
        .name("corex-core".into())
        .spawn(move || run_core(core, receiver, executor))?;
    Ok((handle, thread))
}

fn run_core(mut core: CoordinatorCore, receiver: Receiver<Envelope>, mut executor: Executor) {
    while let Ok(envelope) = receiver.recv() {
        let event = match envelope {
            Envelope::Request { event, reply } => {
                if let Some(request) = event.request() {
                    executor.waiting.insert(request, reply);
                }
                event
            }
            Envelope::Event(event) => event,
            Envelope::Stop => break,
        };
        let request = event.request();
        let closing = match &event {
            Event::CloseComputed { job, .. } => Some(*job),
            _ => None,
        };
        let now_ms = executor.services.clock.millis();
        let handled = std::panic::catch_unwind(AssertUnwindSafe(|| core.handle(event, now_ms)));
        let message = match handled {
            Ok(commands) => {
                executor.execute(commands);
                continue;
            }
            Err(panic) => panic_message(panic),
        };
        tracing::error!(%message, "the coordinator's core panicked on an event");
        if let Some(reply) = request.and_then(|request| executor.waiting.remove(&request)) {
            let _ = reply.send(Err(CoordinatorError::CoreFailed(message.clone())));
        }
        // A close that could not be applied fails its job, visibly, rather than leave it
        // without a round.
        if let Some(job) = closing {
            let failed = Event::CloseComputed {
                job,
                closed: Err(format!("applying it panicked: {message}")),
            };
            match std::panic::catch_unwind(AssertUnwindSafe(|| core.handle(failed, now_ms))) {
                Ok(commands) => executor.execute(commands),
                Err(_) => {
                    tracing::error!(job = %job.short(), "a job's failed close could not be recorded")
                }
            }
        }
    }
}

/// Carries out the core's commands (see the module header).
struct Executor {
    services: Arc<Services>,
    compute: ComputePool,
    ledger: UnboundedSender<LedgerRecord>,
    /// For computations to hand their results back.
    core: CoreHandle,
    waiting: HashMap<RequestId, Reply>,
    runtime: tokio::runtime::Handle,
}

/// What waits on the disk or the ledger, and the answers behind it, in order.
enum Step {
    Persist(Persist),
    Suspicion(NodeId, Suspicion),
    Answer(Reply, Result<Answer, CoordinatorError>),
}

impl Executor {
    fn execute(&mut self, commands: Vec<Command>) {
        let mut steps = Vec::new();
        for command in commands {
            match command {
                Command::Answer { request, answer } => {
                    if let Some(reply) = self.waiting.remove(&request) {
                        steps.push(Step::Answer(reply, answer));
                    }
                }
                Command::Persist(persist) => steps.push(Step::Persist(persist)),
                Command::RecordSuspicion { node, suspicion } => {
                    steps.push(Step::Suspicion(node, suspicion))
                }
                Command::StoreProgress {
                    checkpoint,
                    recorded_round,
                } => {
                    let services = self.services.clone();
                    let core = self.core.clone();
                    self.runtime.spawn(async move {
                        let job = checkpoint.job.id;
                        if let Some(history_stored) =
                            durability::store_progress(&services, *checkpoint, recorded_round).await
                        {
                            core.tell(Event::CheckpointStored {
                                job,
                                history_stored,
                            });
                        }
                    });
                }
                Command::AppendLedger(records) => {
                    for record in records {
                        if let LedgerRecord::Round(closed) = &record {
                            self.services.metrics.round_closed(closed.kind, closed);
                        }
                        if self.ledger.send(record).is_err() {
                            tracing::warn!("the ledger recorder has stopped; a record was lost");
                        }
                    }
                }
                Command::RecordTimeouts(expired) => {
                    let services = self.services.clone();
                    self.runtime.spawn_blocking(move || {
                        let now = services.clock.unix_millis();
                        if let Err(error) = lock(&services.ledger).record_timeouts(&expired, now) {
                            tracing::warn!(%error, "timeouts could not be recorded on the ledger");
                        }
                    });
                }
                Command::CloseRound { job, work } => {
                    let core = self.core.clone();
                    let computing = self.compute.run(move || work.compute());
                    self.runtime.spawn(async move {
                        let closed = match computing.await {
                            Ok(Ok(Ok(closed))) => Ok(Box::new(closed)),
                            Ok(Ok(Err(error))) => Err(error.to_string()),
                            Ok(Err(panic)) => Err(format!("the computation {panic}")),
                            Err(_) => Err("the compute pool stopped".into()),
                        };
                        core.tell(Event::CloseComputed { job, closed });
                    });
                }
                Command::CheckChallenge {
                    request,
                    node,
                    check,
                    product,
                } => {
                    // The request stays waiting: the check's event answers it.
                    let core = self.core.clone();
                    let checking = self.compute.run(move || check.verify(&product));
                    self.runtime.spawn(async move {
                        let capability = match checking.await {
                            Ok(checked) => checked,
                            Err(_) => Err("the compute pool stopped".into()),
                        };
                        core.tell(Event::ChallengeChecked {
                            request,
                            node,
                            capability,
                        });
                    });
                }
                Command::WakeLeaseWaiters => self.services.work_available.notify_waiters(),
            }
        }
        if steps.is_empty() {
            return;
        }
        if steps.iter().all(|step| matches!(step, Step::Answer(..))) {
            // Nothing to wait for: answered from here.
            for step in steps {
                if let Step::Answer(reply, answer) = step {
                    let _ = reply.send(answer);
                }
            }
            return;
        }
        let services = self.services.clone();
        self.runtime
            .spawn(run_steps(services, self.core.clone(), steps));
    }
}

/// Runs a batch's steps in order; answers after a step that failed carry its error. A
/// submitted job's checkpoint, stored or not, goes back to the core (`Event::JobStored`).
async fn run_steps(services: Arc<Services>, core: CoreHandle, steps: Vec<Step>) {
    let mut failed = None;
    for step in steps {
        match step {
            Step::Persist(persist) => {
                if failed.is_some() {
                    continue;
                }
                let submitted = match &persist {
                    Persist::Job(checkpoint, _) => Some(checkpoint.id),
                    _ => None,
                };
                let persisted = durability::persist(&services, persist).await;
                if let Some(job) = submitted {
                    let stored = persisted.as_ref().map(|_| ()).map_err(ToString::to_string);
                    core.tell(Event::JobStored { job, stored });
                }
                if let Err(error) = persisted {
                    tracing::error!(%error, "what a request changed could not be stored");
                    failed = Some(error);
                }
            }
            Step::Suspicion(node, suspicion) => record_suspicion(&services, node, suspicion).await,
            Step::Answer(reply, answer) => {
                let answer = match &failed {
                    Some(error) => Err(CoordinatorError::Storage(error.to_string())),
                    None => answer,
                };
                let _ = reply.send(answer);
            }
        }
    }
}

/// Records a suspicious event about `node` on the ledger, off the async threads; a ledger
/// refusal is logged.
async fn record_suspicion(services: &Arc<Services>, node: NodeId, suspicion: Suspicion) {
    let worker = services.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        let now = worker.clock.unix_millis();
        lock(&worker.ledger).record_suspicious(node, suspicion, now)
    })
    .await;
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, ?suspicion, "a suspicious event could not be recorded on the ledger")
        }
        Err(error) => {
            tracing::warn!(error = %join_failure(error), "recording a suspicious event failed")
        }
    }
}

/// What a background task that did not finish says: its panic message, or that it was
/// cancelled.
pub(crate) fn join_failure(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return error.to_string();
    }
    format!("panicked: {}", panic_message(error.into_panic()))
}
