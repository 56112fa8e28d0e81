//! The core's tests in openraft's style: one event in, the exact commands out.

use std::sync::Arc;

use corex_core::hash::Hashed;
use corex_core::messages::{DeviceReport, JobState, LeaseResponse, ResultHeader, ResultReport};
use corex_core::tensor::f32s_to_bytes;
use corex_core::{Fragment, Hash, JobSpec, Keypair, NodeId};

use super::*;
use crate::config::CoordinatorConfig;
use crate::job_run::SignedTensor;
use crate::ledger::LedgerRecord;
use crate::verification::Verifier;
use corex_verify::AuditPolicy;

/// A command, reduced to what a test compares.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    Answer(RequestId, Result<&'static str, String>),
    PersistStanding(Vec<NodeId>),
    PersistResult {
        job: Hash,
        round: u32,
        index: u32,
    },
    PersistJob(Hash, &'static str),
    StoreProgress {
        job: Hash,
        round: Option<u32>,
        finished: bool,
    },
    AppendLedger(Vec<&'static str>),
    Suspicion(NodeId, Suspicion),
    Timeouts(Vec<(Hash, NodeId)>),
    CloseRound(Hash),
    CheckChallenge(RequestId, NodeId),
    Wake,
}

fn answer_kind(answer: &Answer) -> &'static str {
    match answer {
        Answer::Done => "done",
        Answer::Registered(_) => "registered",
        Answer::Challenge(_) => "challenge",
        Answer::ChallengeVector(_) => "challenge vector",
        Answer::Capability(_) => "capability",
        Answer::Lease(LeaseResponse::Work { .. }) => "work",
        Answer::Lease(LeaseResponse::Idle { .. }) => "idle",
        Answer::Lease(LeaseResponse::Reveal { .. }) => "reveal",
        Answer::MissingChunks(_) => "missing chunks",
        Answer::JobSubmitted(_) => "job",
        Answer::Read(_) => "read",
    }
}

fn state_name(state: &JobState) -> &'static str {
    match state {
        JobState::Running => "running",
        JobState::Finished => "finished",
        JobState::Cancelled => "cancelled",
        JobState::Failed { .. } => "failed",
    }
}

fn shapes(commands: &[Command]) -> Vec<Shape> {
    commands
        .iter()
        .map(|command| match command {
            Command::Answer { request, answer } => Shape::Answer(
                *request,
                answer
                    .as_ref()
                    .map(answer_kind)
                    .map_err(|error| error.code().to_owned()),
            ),
            Command::Persist(Persist::Standing(nodes)) => {
                Shape::PersistStanding(nodes.iter().map(|node| node.node).collect())
            }
            Command::Persist(Persist::Result(kept)) => Shape::PersistResult {
                job: kept.job,
                round: kept.round,
                index: kept.index,
            },
            Command::Persist(Persist::Job(checkpoint, _)) => {
                Shape::PersistJob(checkpoint.id, state_name(&checkpoint.state))
            }
            Command::StoreProgress {
                checkpoint,
                recorded_round,
            } => Shape::StoreProgress {
                job: checkpoint.job.id,
                round: *recorded_round,
                finished: checkpoint.finished.is_some(),
            },
            Command::AppendLedger(records) => Shape::AppendLedger(
                records
                    .iter()
                    .map(|record| match record {
                        LedgerRecord::Audit(_) => "audit",
                        LedgerRecord::Round(_) => "round",
                    })
                    .collect(),
            ),
            Command::RecordSuspicion { node, suspicion } => Shape::Suspicion(*node, *suspicion),
            Command::RecordTimeouts(expired) => Shape::Timeouts(expired.clone()),
            Command::CloseRound { job, .. } => Shape::CloseRound(*job),
            Command::CheckChallenge { request, node, .. } => Shape::CheckChallenge(*request, *node),
            Command::WakeLeaseWaiters => Shape::Wake,
        })
        .collect()
}

fn core_with(config: CoordinatorConfig) -> CoordinatorCore {
    let engine = Coordinator::new(
        Keypair::from_secret([1; 32]),
        config,
        Verifier::new([2; 32], 8, AuditPolicy::default()),
    );
    CoordinatorCore::new(engine)
}

fn core() -> CoordinatorCore {
    core_with(CoordinatorConfig::one_machine())
}

fn key(seed: u8) -> Keypair {
    Keypair::from_secret([seed; 32])
}

fn device(fingerprint: &[u8]) -> DeviceReport {
    DeviceReport {
        fingerprint: Hash::of(fingerprint),
        ..corex_node::device::detect(1, &corex_ml::Backend::cpu())
    }
}

fn register(core: &mut CoordinatorCore, node: NodeId, now_ms: u64) -> Vec<Shape> {
    shapes(&core.handle(
        Event::NodeRegistered {
            request: 0,
            node,
            device: device(node.to_hex().as_bytes()),
            endpoint: "10.0.0.1".into(),
        },
        now_ms,
    ))
}

/// The owner's submission of `spec` on the digits, as request 7.
fn submission(spec: JobSpec) -> Event {
    let digits = Arc::new(corex_ml::Dataset::digits().expect("the digits load"));
    let prepared = crate::prepared::prepare(&spec, digits, None).expect("prepared");
    Event::JobSubmitted {
        request: 7,
        owner: key(3).id(),
        spec: Box::new(spec),
        prepared,
        sequence: 0,
        replay_mflops: None,
    }
}

/// Submits `spec` and stores it: the job leases work.
fn submit(core: &mut CoordinatorCore, spec: JobSpec, now_ms: u64) -> (Hash, Vec<Shape>) {
    let commands = core.handle(submission(spec), now_ms);
    let job = core.engine().jobs().next().expect("a job").id;
    let stored = core.handle(
        Event::JobStored {
            job,
            stored: Ok(()),
        },
        now_ms,
    );
    assert_eq!(
        shapes(&stored),
        [Shape::Wake],
        "a stored job opens for leases"
    );
    (job, shapes(&commands))
}

fn lease(core: &mut CoordinatorCore, node: NodeId, now_ms: u64) -> Option<Box<Fragment>> {
    let commands = core.handle(
        Event::LeaseAsked {
            request: 9,
            node,
            ahead: 0,
        },
        now_ms,
    );
    assert_eq!(commands.len(), 1, "a lease is answered and nothing else");
    match commands.into_iter().next() {
        Some(Command::Answer {
            answer: Ok(Answer::Lease(LeaseResponse::Work { fragment, .. })),
            ..
        }) => Some(fragment),
        _ => None,
    }
}

/// A result of the right shape, honestly signed, whatever its values.
fn signed_result(
    node: &Keypair,
    fragment: &Fragment,
    parameters: usize,
) -> (ResultHeader, SignedTensor) {
    let bytes = f32s_to_bytes(&vec![0.0; parameters]);
    let report = ResultReport {
        loss: 2.3,
        samples: fragment.indices.len() as u32,
        compute_ms: 5,
    };
    let header = ResultHeader::signed(node, fragment.id, fragment.model, Hash::of(&bytes), report);
    let signed = SignedTensor::verify(node.id(), &header, &Hashed::new(bytes.as_slice()))
        .expect("a well-formed result");
    (header, signed)
}

#[test]
fn a_registration_is_stored_before_it_is_answered() {
    let mut core = core();
    let node = key(5).id();
    assert_eq!(
        register(&mut core, node, 10),
        [
            Shape::PersistStanding(vec![node]),
            Shape::Answer(0, Ok("registered")),
        ]
    );
}

#[test]
fn a_refused_registration_is_answered_and_changes_nothing() {
    let mut config = CoordinatorConfig::one_machine();
    config.max_nodes_per_endpoint = 1;
    let mut core = core_with(config);
    register(&mut core, key(5).id(), 10);
    assert_eq!(
        register(&mut core, key(6).id(), 11),
        [Shape::Answer(0, Err("sybil_limit".into()))]
    );
    assert!(!core.engine().is_registered(&key(6).id()));
}

#[test]
fn a_job_is_stored_before_it_is_acknowledged_and_leases_nothing_until_then() {
    let mut core = core();
    let node = key(5).id();
    register(&mut core, node, 0);
    let submitted = core.handle(submission(JobSpec::default_digits()), 1);
    let job = core.engine().jobs().next().expect("a job").id;
    assert_eq!(
        shapes(&submitted),
        [
            Shape::PersistJob(job, "running"),
            Shape::Answer(7, Ok("job"))
        ]
    );
    assert!(lease(&mut core, node, 2).is_none(), "not stored yet");
    let stored = core.handle(
        Event::JobStored {
            job,
            stored: Ok(()),
        },
        3,
    );
    assert_eq!(shapes(&stored), [Shape::Wake]);
    assert!(lease(&mut core, node, 4).is_some());
}

#[test]
fn a_job_that_could_not_be_stored_fails_having_leased_nothing() {
    let mut core = core();
    let node = key(5).id();
    register(&mut core, node, 0);
    core.handle(submission(JobSpec::default_digits()), 1);
    let job = core.engine().jobs().next().expect("a job").id;
    let refused = core.handle(
        Event::JobStored {
            job,
            stored: Err("disk full".into()),
        },
        2,
    );
    assert_eq!(shapes(&refused), []);
    assert!(lease(&mut core, node, 3).is_none());
    let state = core.engine().status(&job).expect("a status").state;
    assert!(matches!(state, JobState::Failed { reason } if reason.contains("disk full")));
}

#[test]
fn an_unregistered_node_gets_no_lease_and_a_stranger_cannot_cancel() {
    let mut core = core();
    let (job, _) = submit(&mut core, JobSpec::default_digits(), 0);
    let leased = core.handle(
        Event::LeaseAsked {
            request: 4,
            node: key(8).id(),
            ahead: 0,
        },
        1,
    );
    assert_eq!(
        shapes(&leased),
        [Shape::Answer(4, Err("unregistered_node".into()))]
    );
    let stranger = core.handle(
        Event::JobCancelled {
            request: 5,
            by: key(8).id(),
            job,
        },
        2,
    );
    assert_eq!(
        shapes(&stranger),
        [Shape::Answer(5, Err("not_job_owner".into()))]
    );
    let owner = core.handle(
        Event::JobCancelled {
            request: 6,
            by: key(3).id(),
            job,
        },
        3,
    );
    assert_eq!(
        shapes(&owner),
        [
            Shape::PersistJob(job, "cancelled"),
            Shape::Answer(6, Ok("done")),
            Shape::Wake,
        ]
    );
}

#[test]
fn an_overdue_lease_is_freed_by_the_timer_and_recorded_as_a_timeout() {
    let mut core = core();
    let node = key(5).id();
    register(&mut core, node, 0);
    submit(&mut core, JobSpec::default_digits(), 0);
    let fragment = lease(&mut core, node, 1).expect("work");
    let lease_ms = JobSpec::default_digits().lease_ms;
    let early = core.handle(Event::TimerFired { entropy: None }, lease_ms / 2);
    assert_eq!(shapes(&early), []);
    let late = core.handle(Event::TimerFired { entropy: None }, 1 + lease_ms + 1);
    assert_eq!(
        shapes(&late),
        [Shape::Wake, Shape::Timeouts(vec![(fragment.id, node)])]
    );
}

#[test]
fn a_challenge_is_checked_off_the_core_and_a_refuted_claim_goes_to_the_ledger() {
    let mut core = core();
    let node = key(5).id();
    register(&mut core, node, 0);
    let early = core.handle(
        Event::ChallengeAnswered {
            request: 1,
            node,
            product: vec![0.0; 4],
        },
        1,
    );
    assert_eq!(
        shapes(&early),
        [Shape::Answer(1, Err("no_challenge".into()))]
    );
    let asked = core.handle(
        Event::ChallengeAsked {
            request: 2,
            node,
            seed: 11,
        },
        2,
    );
    assert_eq!(shapes(&asked), [Shape::Answer(2, Ok("challenge"))]);
    let committed = core.handle(
        Event::ChallengeCommitted {
            request: 3,
            node,
            commitment: Hash::of(b"answer"),
            vector_seed: 12,
        },
        3,
    );
    assert_eq!(
        shapes(&committed),
        [Shape::Answer(3, Ok("challenge vector"))]
    );
    // The check leaves the core: no answer until it comes back.
    let answered = core.handle(
        Event::ChallengeAnswered {
            request: 4,
            node,
            product: vec![0.0; 4],
        },
        4,
    );
    assert_eq!(shapes(&answered), [Shape::CheckChallenge(4, node)]);
    let refuted = corex_core::messages::Capability {
        n: 8,
        demonstrated_mflops: 0,
        claimed_gflops: Some(1_000),
        believed: false,
    };
    let checked = core.handle(
        Event::ChallengeChecked {
            request: 4,
            node,
            capability: Ok(refuted),
        },
        5,
    );
    assert_eq!(
        shapes(&checked),
        [
            Shape::PersistStanding(vec![node]),
            Shape::Suspicion(node, Suspicion::RefutedClaim),
            Shape::Answer(4, Ok("capability")),
        ]
    );
}

#[test]
fn results_are_kept_before_their_answer_and_a_complete_round_leaves_to_be_closed() {
    let mut core = core();
    let mut spec = JobSpec::default_digits();
    spec.rounds = 2;
    let parameters = spec.model.parameter_count();
    let nodes: Vec<Keypair> = (10..14).map(key).collect();
    for node in &nodes {
        register(&mut core, node.id(), 0);
    }
    let (job, _) = submit(&mut core, spec, 0);
    let mut leased = Vec::new();
    for node in nodes.iter().cycle().take(64) {
        // Each fragment once (a straggler's fragment may be leased again as a copy).
        if let Some(fragment) = lease(&mut core, node.id(), 1)
            && leased
                .iter()
                .all(|(_, taken): &(_, Box<Fragment>)| taken.id != fragment.id)
        {
            leased.push((node, fragment));
        }
    }
    assert!(!leased.is_empty(), "the round's fragments are leased");
    let last = leased.len() - 1;
    let mut closing = None;
    for (at, (node, fragment)) in leased.iter().enumerate() {
        let (header, signed) = signed_result(node, fragment, parameters);
        let commands = core.handle(
            Event::ResultArrived {
                request: 100 + at as u64,
                node: node.id(),
                header: Box::new(header),
                signed,
            },
            2,
        );
        let kept = Shape::PersistResult {
            job,
            round: 0,
            index: fragment.index,
        };
        let answered = Shape::Answer(100 + at as u64, Ok("done"));
        let got = shapes(&commands);
        if at < last {
            assert_eq!(got, [kept, answered], "result {at}");
        } else {
            // The last result completes the round: its close leaves for the compute pool
            // before the result is kept and answered.
            assert_eq!(got, [Shape::CloseRound(job), kept, answered]);
            closing = commands.into_iter().find_map(|command| match command {
                Command::CloseRound { work, .. } => Some(work),
                _ => None,
            });
        }
    }
    // Meanwhile the job leases nothing and takes no result.
    let waiting = key(14).id();
    register(&mut core, waiting, 3);
    assert!(lease(&mut core, waiting, 3).is_none());
    let closed = closing.expect("the close").compute().expect("computed");
    let applied = core.handle(
        Event::CloseComputed {
            job,
            closed: Ok(Box::new(closed)),
        },
        4,
    );
    let got = shapes(&applied);
    assert!(
        matches!(got.first(), Some(Shape::AppendLedger(records)) if records.last() == Some(&"round")),
        "the round goes to the ledger first: {got:?}"
    );
    assert_eq!(
        got[1..],
        [
            Shape::StoreProgress {
                job,
                round: Some(0),
                finished: false,
            },
            Shape::Wake,
        ]
    );
    // The stored checkpoint moves the job's stored history on.
    let stored = core.handle(
        Event::CheckpointStored {
            job,
            history_stored: 1,
        },
        5,
    );
    assert_eq!(shapes(&stored), []);
}

#[test]
fn a_close_that_failed_fails_the_job_and_stores_its_files() {
    let mut core = core();
    let (job, _) = submit(&mut core, JobSpec::default_digits(), 0);
    let failed = core.handle(
        Event::CloseComputed {
            job,
            closed: Err("the computation panicked: boom".into()),
        },
        5,
    );
    assert_eq!(
        shapes(&failed),
        [
            Shape::StoreProgress {
                job,
                round: None,
                finished: true,
            },
            Shape::Wake,
        ]
    );
    let status = core.engine().status(&job).expect("a status");
    assert!(matches!(status.state, JobState::Failed { reason } if reason.contains("boom")));
}

#[test]
fn a_read_is_answered_and_changes_nothing() {
    let mut core = core();
    let node = key(5).id();
    register(&mut core, node, 0);
    let read = core.handle(
        Event::Read {
            request: 3,
            read: Box::new(move |engine| Ok(Box::new(engine.is_registered(&node)))),
        },
        1,
    );
    let [
        Command::Answer {
            request: 3,
            answer: Ok(Answer::Read(value)),
        },
    ] = read.as_slice()
    else {
        panic!("one answer");
    };
    assert_eq!(value.downcast_ref::<bool>(), Some(&true));
}
