//! Closing a round: verdicts (replays, or held-out validation for a federated round), the
//! aggregate in fragment order, the optimizer step or the kept outputs, the round record and
//! credits, evaluation, and the next round or the job's end.

use super::*;

impl JobRun {
    pub(super) fn close_round(
        &mut self,
        now_ms: u64,
        Engine {
            blobs,
            verifier,
            auditors,
        }: Engine<'_>,
    ) -> Result<Progress, CoordinatorError> {
        let Some(mut round) = self.round.take() else {
            return Ok(Progress::Accepted);
        };
        let closing = std::time::Instant::now();
        let Auditing {
            plan,
            tasks,
            reveals,
            published,
            began_ms,
            ..
        } = round.auditing.take().ok_or_else(|| {
            CoordinatorError::Training("a round closed before its audits were planned".into())
        })?;
        for checkpoint in &published {
            blobs.retire(checkpoint);
        }
        let node_audits = tasks.len();
        let segment_audits = reveals.len();
        let accepted: Vec<&Accepted> = round.results.iter().flatten().collect();
        let training = |error: corex_ml::MlError| CoordinatorError::Training(error.to_string());
        // What each returned node replay was for: `(commitment, flops)` of its task.
        let mut replayed_tasks = BTreeMap::new();
        let (mut whole_replays, mut segment_replays) = (BTreeMap::new(), BTreeMap::new());
        for task in tasks {
            let (Some(commitment), Some(replay)) = (task.commitment, task.replay) else {
                continue;
            };
            replayed_tasks.insert(
                task.index,
                (replay.auditor, commitment, task.fragment.cost_flops),
            );
            match task.fragment.steps {
                Some(_) => segment_replays.insert(task.index, replay),
                None => whole_replays.insert(task.index, replay),
            };
        }

        // Verify before anything counts: replays start from the round's model version.
        let current = self.progression.parameters();
        let candidates = candidates(&accepted, &round.fragments);
        let segments =
            self.judge_segments(&round, &reveals, &segment_replays, &current, verifier)?;
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
            None => verifier.judge(
                &candidates,
                &plan,
                &whole_replays,
                &segments
                    .passed
                    .iter()
                    .map(|(index, passed)| (*index, passed.audited_by))
                    .collect(),
                |index| {
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
                },
            )?,
        };
        let judged = judgement.results;
        let audited = judged
            .iter()
            .filter(|judgement| match judgement.verdict {
                ResultVerdict::Accepted { audited, .. } => audited,
                ResultVerdict::Rejected { .. } => true,
                ResultVerdict::Discarded { .. } => false,
            })
            .count();
        let audits: Vec<NodeAudit> = judgement
            .audits
            .into_iter()
            .chain(segments.audits)
            .filter_map(|(index, verdict)| {
                let (auditor, commitment, flops) = *replayed_tasks.get(&index)?;
                Some(NodeAudit {
                    auditor,
                    fragment: round.fragments.get(index)?.id,
                    commitment,
                    flops,
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
                    (ResultVerdict::Rejected { .. } | ResultVerdict::Discarded { .. }, None) => {
                        return None;
                    }
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
                    let rate = self.spec.learning_rate_at(self.completed_rounds);
                    trainer.step_at_rate(&mean, rate).map_err(training)?;
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
                    audited_steps: segments.passed.get(&index).map(|passed| passed.steps),
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
        tracing::debug!(
            round = self.completed_rounds - 1,
            fragments = round.fragments.len(),
            computing_ms = began_ms.saturating_sub(round.first_lease_ms.unwrap_or(began_ms)),
            auditing_ms = now_ms.saturating_sub(began_ms),
            audited,
            node_audits,
            segment_audits,
            closing_ms = closing.elapsed().as_millis() as u64,
            "round closed"
        );

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
                    let weights = corex_ml::to_safetensors_with(
                        &self.spec.model,
                        &parameters,
                        self.standardization.as_ref(),
                    )
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
    pub(super) fn held_out(&self, current: &[f32], accepted: &[&Accepted]) -> Vec<HeldOut> {
        let evaluate = |params: &[f32]| {
            corex_ml::evaluate(&self.spec.model, params, &self.dataset, &self.split.test)
                .map_or(f32::NAN, |evaluation| evaluation.loss)
        };
        let loss = |update: &[f32], rate: f32| {
            let moved: Vec<f32> = current
                .iter()
                .zip(update)
                .map(|(w, u)| w - rate * u)
                .collect();
            evaluate(&moved)
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
                    return evaluate(current);
                }
                corex_verify::aggregate(&self.spec.aggregation, &parts)
                    .map_or(f32::NAN, |aggregate| loss(&aggregate, outer_rate))
            },
        )
    }
}
