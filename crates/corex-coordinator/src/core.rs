//! The coordinator's core, sans I/O, in the shape of openraft's engine:
//! [`CoordinatorCore::handle`] takes one [`Event`] and the time, changes the state, and says
//! what the shell must do as a list of [`Command`]s. It never touches a socket, a file, a
//! clock or a random source, and it never runs ML work: replays, aggregation, the optimizer
//! step, evaluation and capability checks leave as commands for the compute pool and come
//! back as events. The shell (`runtime`) owns the only core on one thread, so there is no
//! lock around it; tests and the simulation drive it directly.
//!
//! Where each fact lives: jobs, rounds, leases and the node registry in `engine`
//! (`Coordinator`), audit records, bans and seeds in its verifier, staged uploads in its
//! upload store; which audit events the ledger was handed in [`LedgerCursor`].

use corex_core::Hash;
use corex_core::messages::{JobState, RegisterResponse};

use crate::durability::{Checkpoint, FinishedFiles};
use crate::engine::{Coordinator, Intake};
use crate::error::CoordinatorError;
use crate::job_run::Progress;
use crate::ledger::{ClosedRound, LedgerCursor, Suspicion};

mod messages;
pub use messages::{Answer, Command, Event, Persist, Read, RequestId};
#[cfg(test)]
mod tests;

pub struct CoordinatorCore {
    engine: Coordinator,
    ledger: LedgerCursor,
}

impl CoordinatorCore {
    pub fn new(engine: Coordinator) -> Self {
        Self {
            engine,
            ledger: LedgerCursor::default(),
        }
    }

    /// The state, to read.
    pub fn engine(&self) -> &Coordinator {
        &self.engine
    }

    /// Takes in `event` at `now_ms` (the shell's monotonic clock); what the shell must do.
    pub fn handle(&mut self, event: Event, now_ms: u64) -> Vec<Command> {
        let mut out = Vec::new();
        match event {
            Event::NodeRegistered {
                request,
                node,
                device,
                endpoint,
            } => {
                let threads = device.compute_threads;
                match self.engine.register(node, device, endpoint, now_ms) {
                    Ok(()) => {
                        tracing::info!(node = %node.short(), threads, "node registered");
                        let standing = self.engine.standing_of([node]);
                        out.push(Command::Persist(Persist::Standing(standing)));
                        let coordinator = self.engine.identity.id();
                        let response = RegisterResponse { node, coordinator };
                        out.push(Command::answer(request, Ok(Answer::Registered(response))));
                    }
                    Err(error) => out.push(Command::answer(request, Err(error))),
                }
            }
            Event::ChallengeAsked {
                request,
                node,
                seed,
            } => {
                let issued = self.engine.issue_challenge(node, seed, now_ms);
                out.push(Command::answer(request, issued.map(Answer::Challenge)));
            }
            Event::ChallengeCommitted {
                request,
                node,
                commitment,
                vector_seed,
            } => {
                let vector = self
                    .engine
                    .commit_challenge(node, commitment, vector_seed, now_ms);
                out.push(Command::answer(
                    request,
                    vector.map(Answer::ChallengeVector),
                ));
            }
            Event::ChallengeAnswered {
                request,
                node,
                product,
            } => match self.engine.take_challenge(node, now_ms) {
                Ok(check) => out.push(Command::CheckChallenge {
                    request,
                    node,
                    check: Box::new(check),
                    product,
                }),
                Err(error) => out.push(Command::answer(request, Err(error))),
            },
            Event::ChallengeChecked {
                request,
                node,
                capability: Err(failure),
            } => {
                tracing::error!(node = %node.short(), %failure, "a challenge check failed");
                let failed = CoordinatorError::CoreFailed(failure);
                out.push(Command::answer(request, Err(failed)));
            }
            Event::ChallengeChecked {
                request,
                node,
                capability: Ok(capability),
            } => {
                tracing::info!(node = %node.short(), mflops = capability.demonstrated_mflops, claimed_gflops = ?capability.claimed_gflops, believed = capability.believed, "capability challenge answered");
                self.engine.record_capability(&node, capability.clone());
                let standing = self.engine.standing_of([node]);
                out.push(Command::Persist(Persist::Standing(standing)));
                if !capability.believed {
                    let suspicion = Suspicion::RefutedClaim;
                    out.push(Command::RecordSuspicion { node, suspicion });
                }
                out.push(Command::answer(request, Ok(Answer::Capability(capability))));
            }
            Event::LeaseAsked {
                request,
                node,
                ahead,
            } => {
                let lease = self.engine.lease(node, now_ms, ahead);
                out.push(Command::answer(request, lease.map(Answer::Lease)));
            }
            Event::ResultArrived {
                request,
                node,
                header,
                signed,
            } => {
                let intake = self.engine.submit_result(node, &header, signed, now_ms);
                self.take_intake(request, node, intake, now_ms, &mut out);
            }
            Event::ChunkedResultArrived {
                request,
                node,
                result,
            } => {
                let intake = self.engine.submit_chunked_result(node, &result, now_ms);
                self.take_intake(request, node, intake, now_ms, &mut out);
            }
            Event::RevealDeclined {
                request,
                node,
                fragment,
            } => {
                let intake = self.engine.decline_reveal(node, &fragment, now_ms);
                self.take_intake(request, node, intake, now_ms, &mut out);
            }
            Event::JobDeclined {
                request,
                node,
                fragment,
            } => {
                // The holder's refusal changes the job for good (no round names it again):
                // stored with the job before it is acknowledged.
                let intake = self
                    .engine
                    .decline_job(node, &fragment, now_ms)
                    .and_then(|intake| {
                        let (checkpoint, saved) =
                            self.engine.take_checkpoint(&intake.job, now_ms)?;
                        let (checkpoint, saved) = (Box::new(checkpoint), saved.map(Box::new));
                        out.push(Command::Persist(Persist::Job(checkpoint, saved)));
                        Ok(intake)
                    });
                self.take_intake(request, node, intake, now_ms, &mut out);
            }
            Event::ChunkStaged {
                request,
                node,
                chunk,
                bytes,
                owner_upload,
            } => {
                let staged = self
                    .engine
                    .stage_chunk(node, chunk, bytes, now_ms, owner_upload);
                out.push(Command::answer(request, staged.map(|()| Answer::Done)));
            }
            Event::MissingChunksAsked {
                request,
                node,
                chunks,
                owner_upload,
            } => {
                let missing = self
                    .engine
                    .missing_chunks(node, &chunks, now_ms, owner_upload);
                out.push(Command::answer(request, missing.map(Answer::MissingChunks)));
            }
            Event::DatasetUploaded {
                request,
                owner,
                dataset,
                bytes,
                chunks,
            } => {
                let hash = self.engine.datasets.register(owner, dataset, bytes);
                self.engine.uploads.release(owner, &chunks);
                tracing::info!(owner = %owner.short(), dataset = %hash.short(), "dataset uploaded");
                out.push(Command::answer(request, Ok(Answer::Done)));
            }
            Event::JobSubmitted {
                request,
                owner,
                spec,
                prepared,
                sequence,
                replay_mflops,
            } => {
                if let Some(mflops) = replay_mflops {
                    self.engine.config.replay_mflops.get_or_insert(mflops);
                }
                let name = spec.name.clone();
                let submitted = self
                    .engine
                    .submit_job(owner, *spec, prepared, sequence, now_ms)
                    .and_then(|job| Ok((job, self.engine.take_checkpoint(&job, now_ms)?)));
                match submitted {
                    Ok((job, (checkpoint, saved))) => {
                        tracing::info!(job = %job.short(), %name, owner = %owner.short(), "job submitted");
                        // Durable before acknowledged: a job answered 201 survives a crash. It
                        // leases work once stored (`JobStored`), so no result for it is taken
                        // before the job itself would survive one.
                        out.push(Command::Persist(Persist::Job(
                            Box::new(checkpoint),
                            saved.map(Box::new),
                        )));
                        out.push(Command::answer(request, Ok(Answer::JobSubmitted(job))));
                    }
                    Err(error) => out.push(Command::answer(request, Err(error))),
                }
            }
            Event::JobCancelled { request, by, job } => {
                let cancelled = self
                    .engine
                    .cancel_job(&by, &job, now_ms)
                    .and_then(|()| self.engine.take_checkpoint(&job, now_ms));
                match cancelled {
                    Ok((checkpoint, _)) => {
                        tracing::info!(job = %job.short(), by = %by.short(), "job cancelled");
                        out.push(Command::Persist(Persist::Job(Box::new(checkpoint), None)));
                        out.push(Command::answer(request, Ok(Answer::Done)));
                        out.push(Command::WakeLeaseWaiters);
                    }
                    Err(error) => out.push(Command::answer(request, Err(error))),
                }
            }
            Event::CloseComputed { job, closed } => {
                match self
                    .engine
                    .finish_close(&job, closed.map(|closed| *closed), now_ms)
                {
                    Ok(progress) => self.progressed(job, progress, now_ms, &mut out),
                    Err(error) => {
                        tracing::error!(job = %job.short(), %error, "a round's close could not be applied")
                    }
                }
            }
            Event::JobStored { job, stored } => {
                if self.engine.job_stored(&job, stored, now_ms) {
                    out.push(Command::WakeLeaseWaiters);
                }
            }
            Event::CheckpointStored {
                job,
                history_stored,
            } => self.engine.history_stored(&job, history_stored),
            Event::Restored { progressed } => {
                for (job, progress) in progressed {
                    self.progressed(job, progress, now_ms, &mut out);
                }
            }
            Event::TimerFired { entropy } => self.sweep(entropy, now_ms, &mut out),
            Event::Read { request, read } => {
                let answer = read(&self.engine).map(Answer::Read);
                out.push(Command::answer(request, answer));
            }
        }
        out
    }

    /// A result (or a decline) taken or refused: the job's progress, the result kept before
    /// the answer, a behaviour flag to the ledger.
    fn take_intake(
        &mut self,
        request: RequestId,
        node: corex_core::NodeId,
        intake: Result<Intake, CoordinatorError>,
        now_ms: u64,
        out: &mut Vec<Command>,
    ) {
        let intake = match intake {
            Ok(intake) => intake,
            Err(error) => return out.push(Command::answer(request, Err(error))),
        };
        self.progressed(intake.job, intake.progress, now_ms, out);
        // Durable before acknowledged: a result the node hears was taken survives a crash.
        if let Some(kept) = intake.kept {
            out.push(Command::Persist(Persist::Result(Box::new(kept))));
        }
        if let Some(flag) = intake.flagged {
            tracing::warn!(node = %node.short(), %flag, "behaviour analysis flagged a node");
            let suspicion = Suspicion::ContradictedBenchmark;
            out.push(Command::RecordSuspicion { node, suspicion });
        }
        out.push(Command::answer(request, Ok(Answer::Done)));
    }

    /// What `job`'s `progress` leaves to do: a complete round's close to compute; a closed
    /// round's records for the ledger (its audit seed events first); the job's checkpoint
    /// to store behind the ledger, with its nodes' standing and an ended job's files;
    /// waiting lease requests to wake.
    fn progressed(&mut self, job: Hash, progress: Progress, now_ms: u64, out: &mut Vec<Command>) {
        if let Err(error) = self.try_progressed(job, progress, now_ms, out) {
            tracing::error!(job = %job.short(), %error, "a job's progress could not be recorded");
        }
    }

    fn try_progressed(
        &mut self,
        job: Hash,
        progress: Progress,
        now_ms: u64,
        out: &mut Vec<Command>,
    ) -> Result<(), CoordinatorError> {
        if progress == Progress::Accepted {
            return Ok(());
        }
        if progress == Progress::Closing {
            if let Some(work) = self.engine.take_close_work(&job) {
                out.push(Command::CloseRound { job, work });
            }
            return Ok(());
        }
        let mut recorded_round = None;
        let mut standing = Vec::new();
        if matches!(progress, Progress::RoundClosed | Progress::JobFinished)
            && let Some(record) = self.engine.job(&job)?.history().last().cloned()
        {
            recorded_round = Some(record.round);
            // The audit records of the round's nodes moved with its verdicts.
            let nodes: std::collections::BTreeSet<_> = record
                .results
                .iter()
                .map(|result| result.node)
                .chain(record.audits.iter().map(|audit| audit.auditor))
                .collect();
            standing = self.engine.standing_of(nodes);
            let kind = self.engine.job(&job)?.spec.work.fragment_kind();
            let closed = ClosedRound { job, kind, record };
            let records = self.ledger.round_records(&self.engine.verifier, closed);
            out.push(Command::AppendLedger(records));
        }
        if matches!(
            progress,
            Progress::RoundClosed | Progress::JobFinished | Progress::JobFailed
        ) {
            let (checkpoint, saved) = self.engine.take_checkpoint(&job, now_ms)?;
            let finished = match checkpoint.state {
                JobState::Running | JobState::Cancelled => None,
                _ => Some(FinishedFiles::of(&self.engine, &job)?),
            };
            out.push(Command::StoreProgress {
                checkpoint: Box::new(Checkpoint {
                    job: checkpoint,
                    saved,
                    standing,
                    finished,
                }),
                recorded_round,
            });
        }
        out.push(Command::WakeLeaseWaiters);
        Ok(())
    }

    /// The sweep: rounds whose audit deadline passed close (the coordinator replays what no
    /// node returned); idle uploads are dropped; the audit seed events go to the ledger and
    /// fresh entropy into the seeds; overdue leases return to the pool, as timeouts.
    fn sweep(&mut self, entropy: Option<[u8; 32]>, now_ms: u64, out: &mut Vec<Command>) {
        for (job, progress) in self.engine.close_overdue_rounds(now_ms) {
            match progress {
                Ok(progress) => self.progressed(job, progress, now_ms, out),
                Err(error) => {
                    tracing::warn!(job = %job.short(), %error, "closing an audited round failed")
                }
            }
        }
        self.engine.uploads.expire(now_ms);
        let records = self.ledger.flush_audit_records(&mut self.engine.verifier);
        if !records.is_empty() {
            out.push(Command::AppendLedger(records));
        }
        if let Some(entropy) = entropy {
            self.engine.verifier.seeds.mix_entropy(entropy);
        }
        let expired = self.engine.expire(now_ms);
        if !expired.is_empty() {
            tracing::info!(freed = expired.len(), "leases expired; fragments re-issued");
            out.push(Command::WakeLeaseWaiters);
            // A timeout is a soft reject: the work is dropped, nothing is slashed.
            out.push(Command::RecordTimeouts(expired));
        }
    }
}
