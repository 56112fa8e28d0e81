//! Closing a round, in two cheap steps under the engine lock around the heavy one off it
//! (`close_compute`): [`JobRun::close_round`] takes the complete round and the model out of
//! the job as a [`CloseWork`] (the job has no round meanwhile, so it leases nothing and takes
//! no result); [`JobRun::finish_close`] applies what the computation gave: the verifier's
//! records, the round record and credits, the new model version, and the next round or the
//! job's end. A computation that failed or panicked fails the job, visibly, with its reason.

use super::close_compute::{CloseWork, ClosedWork};
use super::*;

impl JobRun {
    /// Takes the complete round out for its close (see the module header); the caller's
    /// shell hands [`JobRun::take_close_work`]'s work to a compute thread.
    pub(super) fn close_round(
        &mut self,
        _now_ms: u64,
        Engine {
            blobs, verifier, ..
        }: Engine<'_>,
    ) -> Result<Progress, CoordinatorError> {
        match &self.round {
            None => return Ok(Progress::Accepted),
            Some(round) if round.auditing.is_none() => {
                return Err(CoordinatorError::Training(
                    "a round closed before its audits were planned".into(),
                ));
            }
            Some(_) => {}
        }
        let Some(progression) = self.progression.take() else {
            return Ok(Progress::Accepted);
        };
        let Some((round, auditing)) = self.round.take().and_then(|mut round| {
            let auditing = round.auditing.take()?;
            Some((round, auditing))
        }) else {
            return Ok(Progress::Accepted);
        };
        for checkpoint in &auditing.published {
            blobs.retire(checkpoint);
        }
        // An audit task still held at the deadline was abandoned: the coordinator replays it
        // in the close, re-issued to itself like an expired one is to another node.
        self.reissued += auditing
            .tasks
            .iter()
            .filter(|task| task.holder.is_some() && task.replay.is_none())
            .count() as u64;
        // Closed from now on: a late copy of one of its results is answered `fragment_closed`.
        self.closed_fragments
            .extend(round.fragments.iter().map(|f| f.id));
        self.closing = Some(Box::new(CloseWork {
            spec: self.spec.clone(),
            data: self.data()?.clone(),
            standardization: self.standardization.clone(),
            progression,
            round,
            auditing,
            completed_rounds: self.completed_rounds,
            comparator: verifier.comparator(),
        }));
        Ok(Progress::Closing)
    }

    /// The work of the round being closed, once: whoever takes it must hand what it computes
    /// to [`JobRun::finish_close`].
    pub fn take_close_work(&mut self) -> Option<Box<CloseWork>> {
        self.closing.take()
    }

    /// Applies a close computed off the lock (`Err`: why it could not be, which fails the
    /// job). A job cancelled meanwhile keeps nothing of it.
    pub fn finish_close(
        &mut self,
        closed: Result<ClosedWork, String>,
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Progress {
        if !self.is_running() {
            return Progress::Accepted;
        }
        let round = self.completed_rounds;
        let failure = match closed {
            Ok(closed) => match self.apply_close(closed, now_ms, engine) {
                Ok(progress) => return progress,
                Err(error) => error.to_string(),
            },
            Err(reason) => reason,
        };
        tracing::error!(job = %self.id.short(), round, reason = %failure, "closing a round failed; the job fails");
        self.end(
            JobState::Failed {
                reason: format!("round {round} could not close: {failure}"),
            },
            now_ms,
        );
        Progress::JobFailed
    }

    fn apply_close(
        &mut self,
        closed: ClosedWork,
        now_ms: u64,
        Engine {
            blobs,
            verifier,
            auditors,
        }: Engine<'_>,
    ) -> Result<Progress, CoordinatorError> {
        let ClosedWork {
            progression,
            saved,
            parameters,
            update,
            round,
            plan,
            judged,
            audits,
            records,
            passed_segments,
            held_out,
            train_loss,
            evaluation,
            weights,
            began_ms,
            node_audits,
            segment_audits,
            computing_ms,
        } = closed;
        verifier.apply(&records);
        self.saved = saved;
        let accepted: Vec<&Accepted> = round.results.iter().flatten().collect();
        let audited = judged
            .iter()
            .filter(|judgement| match judgement.verdict {
                ResultVerdict::Accepted { audited, .. } => audited,
                ResultVerdict::Rejected { .. } => true,
                ResultVerdict::Discarded { .. } => false,
            })
            .count();
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
                ResultVerdict::Rejected { .. } | ResultVerdict::Discarded { .. } => {
                    credit.rejected += 1
                }
            }
        }
        for audit in &audits {
            let credit = self.contributions.entry(audit.auditor).or_default();
            match audit.verdict {
                ResultVerdict::Accepted { .. } => credit.audits_done += 1,
                ResultVerdict::Rejected { .. } | ResultVerdict::Discarded { .. } => {
                    credit.rejected += 1
                }
            }
        }
        self.completed_rounds += 1;
        let last = self.completed_rounds == self.spec.rounds;
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
                    audited_steps: passed_segments.get(&index).map(|passed| passed.steps),
                    data_commitment: result.data_commitment,
                    validation_loss: held_out.as_ref().map(|checks| checks[index].solo_loss),
                    validation_gain: held_out.as_ref().map(|checks| checks[index].gain),
                })
                .collect(),
            audit_seed: plan.seed,
            audits,
            wall_ms: now_ms.saturating_sub(round.first_lease_ms.unwrap_or(now_ms)),
        });
        tracing::debug!(
            round = self.completed_rounds - 1,
            fragments = round.fragments.len(),
            computing_ms = began_ms.saturating_sub(round.first_lease_ms.unwrap_or(began_ms)),
            auditing_ms = now_ms.saturating_sub(began_ms),
            audited,
            node_audits,
            segment_audits,
            closing_ms = computing_ms,
            "round closed"
        );

        // Only training makes a new model version; output work keeps its own to the end.
        let progression = self.progression.insert(progression);
        if let Progression::Training { .. } = progression {
            if let Some(stale) = self.previous_model.replace(self.model) {
                blobs.retire(&stale);
            }
            let from = self.model;
            self.model = blobs.publish(f32s_to_bytes(&parameters));
            match update {
                Some(update) => self.updates.push_back((from, blobs.publish(update))),
                None => {
                    for (_, stale) in self.updates.drain(..) {
                        blobs.retire(&stale);
                    }
                }
            }
            while self.updates.len() > MAX_UPDATE_CHAIN {
                if let Some((_, stale)) = self.updates.pop_front() {
                    blobs.retire(&stale);
                }
            }
        }
        if last {
            if let Some(weights) = weights {
                self.weights = Some(blobs.publish(weights));
            }
            if let Progression::Outputs { collected, .. } = progression {
                let collected = std::mem::take(collected);
                let data = self.data.as_ref().ok_or_else(|| {
                    CoordinatorError::Training("an output job ended before its last round".into())
                })?;
                self.outputs = Some(collected.publish(&self.spec, &data.dataset, blobs)?);
            }
            self.end(JobState::Finished, now_ms);
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
}
