//! The core's commands, carried out as the coordinator's shell carries them out, in virtual
//! time: answers travel back to the nodes after a network delay; what is persisted is
//! written at once to the real stores; ledger records go to the real ledger in order; a
//! round's close is computed (for real) and its result comes back `CLOSE_MS` later; waiting
//! lease requests are woken.

use corex_coordinator::core::{Command, Event, Persist};
use corex_coordinator::durability;
use corex_coordinator::ledger::LedgerRecord;

use super::super::process::GENESIS_UNIX_MS;
use super::{CLOSE_MS, Doing, Happening, Heard, OWNER, Sim};

const STOPPED: &str = "a command after the coordinator stopped";

impl Sim<'_> {
    /// Carries out one command; events the shell would hand back at once go to `follow_ups`.
    pub(super) fn carry_out(
        &mut self,
        command: Command,
        follow_ups: &mut Vec<Event>,
    ) -> Result<(), String> {
        let unix_ms = GENESIS_UNIX_MS + self.now;
        let dir = self.process.dir.clone();
        match command {
            Command::Answer { request, answer } => {
                let Some(node) = self.asking.remove(&request) else {
                    return Ok(());
                };
                if node == OWNER {
                    return answer
                        .map(|_| ())
                        .map_err(|error| format!("the job was refused: {error}"));
                }
                self.answer(node, Heard::Answer(answer));
            }
            Command::Persist(persist) => {
                let running = self.process.running.as_mut().ok_or(STOPPED)?;
                let submitted = match &persist {
                    Persist::Job(checkpoint, _) => Some(checkpoint.id),
                    _ => None,
                };
                durability::persist_now(&running.store, &dir, persist)
                    .map_err(|error| format!("persisting failed: {error}"))?;
                if let Some(job) = submitted {
                    follow_ups.push(Event::JobStored {
                        job,
                        stored: Ok(()),
                    });
                }
            }
            Command::StoreProgress { checkpoint, .. } => {
                let running = self.process.running.as_mut().ok_or(STOPPED)?;
                let job = checkpoint.job.id;
                let history_stored =
                    durability::store_progress_now(&running.store, &dir, *checkpoint)
                        .map_err(|error| format!("storing a job's progress failed: {error}"))?;
                follow_ups.push(Event::CheckpointStored {
                    job,
                    history_stored,
                });
            }
            Command::AppendLedger(records) => {
                let running = self.process.running.as_mut().ok_or(STOPPED)?;
                for record in records {
                    let LedgerRecord::Round(closed) = &record else {
                        running
                            .ledger
                            .record(&record, unix_ms)
                            .map_err(|error| format!("an audit seed event was refused: {error}"))?;
                        continue;
                    };
                    let recorded = running
                        .ledger
                        .chain()
                        .state()
                        .rounds
                        .get(&closed.job)
                        .is_some_and(|head| head.round >= closed.record.round);
                    match running.ledger.record(&record, unix_ms) {
                        Ok(()) => self.invariants.round_recorded(closed)?,
                        // Closed again after a restart: the ledger refuses the second record.
                        Err(_) if recorded => self.duplicate_rounds_refused += 1,
                        Err(error) => return Err(format!("a closed round was refused: {error}")),
                    }
                }
            }
            Command::RecordSuspicion { node, suspicion } => {
                let running = self.process.running.as_mut().ok_or(STOPPED)?;
                running
                    .ledger
                    .record_suspicious(node, suspicion, unix_ms)
                    .map_err(|error| format!("a suspicion was refused: {error}"))?;
            }
            Command::RecordTimeouts(expired) => {
                let running = self.process.running.as_mut().ok_or(STOPPED)?;
                running
                    .ledger
                    .record_timeouts(&expired, unix_ms)
                    .map_err(|error| format!("timeouts were refused: {error}"))?;
            }
            Command::CloseRound { job, work } => {
                let closed = work
                    .compute()
                    .map(Box::new)
                    .map_err(|error| error.to_string());
                let incarnation = self.process.incarnation;
                self.agenda.at(
                    self.now + CLOSE_MS,
                    Happening::CloseDone {
                        incarnation,
                        job,
                        closed,
                    },
                );
            }
            Command::CheckChallenge {
                request,
                node,
                check,
                product,
            } => follow_ups.push(Event::ChallengeChecked {
                request,
                node,
                capability: Ok(check.verify(&product)),
            }),
            Command::WakeLeaseWaiters => {
                for node in 0..self.nodes.len() {
                    if self.nodes[node].doing == Doing::Waiting {
                        self.nodes[node].generation += 1;
                        let generation = self.nodes[node].generation;
                        let at = self.now + self.delay();
                        self.agenda.at(at, Happening::Wake { node, generation });
                    }
                }
            }
        }
        Ok(())
    }
}
