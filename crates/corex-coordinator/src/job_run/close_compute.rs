//! The heavy half of a round's close, off the engine lock: the replays (whole fragments and
//! segments), a federated round's held-out checks, the verdicts, the aggregate in fragment
//! order, the optimizer step or the kept outputs, the evaluation and, at the end, the export.
//!
//! In: a [`CloseWork`], everything the close needs, taken out of the job (which waits for it:
//! it has no round meanwhile, so nothing else can touch what was taken). Out: a
//! [`ClosedWork`] that `close` applies to the job and the verifier under the lock. Pure: it
//! reads nothing but its input, so the same input gives the same bits on any thread.

use corex_core::feedback_state::leaf_range;
use corex_core::trace::mean_step_loss;
use corex_ml::{Evaluation, displacement};

use super::reveals::RevealAnswer;
use super::*;
use crate::verification::{Comparator, Judged, Opened, RecordDelta};

/// Everything a round's close computes with.
pub struct CloseWork {
    pub(super) spec: JobSpec,
    /// The job's data: evaluation and federated checks read its held-out samples.
    pub(super) data: Arc<JobData>,
    pub(super) standardization: Option<Standardization>,
    pub(super) progression: Progression,
    pub(super) round: RoundState,
    pub(super) auditing: Auditing,
    /// Rounds completed before this one.
    pub(super) completed_rounds: u32,
    pub(super) comparator: Comparator,
}

/// What a round's close computed, for `close` to apply.
pub struct ClosedWork {
    pub(super) progression: Progression,
    /// The progression after this round, as bytes for the job's checkpoint.
    pub(super) saved: Option<SavedProgression>,
    /// The model version published after this round (unchanged for output work).
    pub(super) parameters: Vec<f32>,
    /// With compressed downloads, the update that makes `parameters` from the round's version.
    pub(super) update: Option<Vec<u8>>,
    pub(super) round: RoundState,
    pub(super) plan: AuditPlan,
    pub(super) judged: Vec<Judged>,
    pub(super) audits: Vec<NodeAudit>,
    pub(super) records: Vec<RecordDelta>,
    pub(super) passed_segments: BTreeMap<usize, PassedSegment>,
    pub(super) held_out: Option<Vec<HeldOut>>,
    pub(super) train_loss: f32,
    pub(super) evaluation: Option<Evaluation>,
    /// The trained weights (safetensors) when this was a training job's last round.
    pub(super) weights: Option<Vec<u8>>,
    pub(super) began_ms: u64,
    pub(super) node_audits: usize,
    pub(super) segment_audits: usize,
    pub(super) computing_ms: u64,
}

/// A result whose audited segment agreed.
pub(super) struct PassedSegment {
    pub steps: [u32; 2],
    /// The node whose replay of the segment agreed (none: the coordinator's did).
    pub audited_by: Option<NodeId>,
}

/// The segment audits of a round: the results that passed, and a verdict per node replay.
#[derive(Default)]
struct JudgedSegments {
    passed: BTreeMap<usize, PassedSegment>,
    audits: Vec<(usize, ResultVerdict)>,
}

fn training(error: corex_ml::MlError) -> CoordinatorError {
    CoordinatorError::Training(error.to_string())
}

impl CloseWork {
    /// This round is the job's last.
    pub(super) fn is_last(&self) -> bool {
        self.completed_rounds + 1 == self.spec.rounds
    }

    /// Computes the close (see the module header).
    pub fn compute(self) -> Result<ClosedWork, CoordinatorError> {
        let started = std::time::Instant::now();
        let Auditing {
            plan,
            tasks,
            reveals,
            began_ms,
            ..
        } = &self.auditing;
        let node_audits = tasks.len();
        let segment_audits = reveals.len();
        let mut records = Vec::new();
        // What each returned node replay was for: `(auditor, commitment, flops)` of its task.
        let mut replayed_tasks = BTreeMap::new();
        let (mut whole_replays, mut segment_replays) = (BTreeMap::new(), BTreeMap::new());
        for task in &self.auditing.tasks {
            let (Some(commitment), Some(replay)) = (task.commitment, task.replay.as_ref()) else {
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
        let accepted: Vec<&Accepted> = self.round.results.iter().flatten().collect();
        let mut candidates = candidates(&accepted, &self.round.fragments);
        // An audited compressed result is judged on what it claims with its revealed states.
        for reveal in &self.auditing.reveals {
            if let (
                RevealAnswer::Revealed {
                    claim: Some(claim), ..
                },
                Some(candidate),
            ) = (&reveal.answer, candidates.get_mut(reveal.index))
            {
                candidate.gradient = &claim.update;
                candidate.defect = claim.defect.as_deref();
                candidate.opened = Some(claim.opened());
            }
        }
        let segments = self.judge_segments(&segment_replays, &current, &mut records)?;
        let held_out = self
            .spec
            .federated
            .as_ref()
            .map(|_| self.held_out(&current, &accepted));
        let judgement = match &held_out {
            Some(checks) => RoundJudgement {
                results: judge_federated(&mut records, &candidates, plan, checks),
                audits: Vec::new(),
                records: Vec::new(),
            },
            None => self.comparator.judge(
                &candidates,
                plan,
                &whole_replays,
                &segments
                    .passed
                    .iter()
                    .map(|(index, passed)| (*index, passed.audited_by))
                    .collect(),
                |index| {
                    corex_ml::run_fragment(
                        &corex_ml::Backend::cpu(),
                        &self.spec.work,
                        &self.spec.model,
                        &current,
                        &self.data.dataset,
                        &self.round.fragments[index].indices,
                    )
                    .map(|output| Replay {
                        gradient: output.values,
                        loss: output.loss,
                    })
                    .map_err(training)
                },
            )?,
        };
        records.extend(judgement.records);
        let audits: Vec<NodeAudit> = judgement
            .audits
            .into_iter()
            .chain(segments.audits)
            .filter_map(|(index, verdict)| {
                let (auditor, commitment, flops) = *replayed_tasks.get(&index)?;
                Some(NodeAudit {
                    auditor,
                    fragment: self.round.fragments.get(index)?.id,
                    commitment,
                    flops,
                    verdict,
                })
            })
            .collect();
        let mut judged = judgement.results;

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
        let last = self.is_last();
        let mut progression = self.progression;
        match &mut progression {
            // The job's aggregation policy (the mean is exactly single-process training's). A
            // round with nothing left to aggregate leaves the model as it was.
            Progression::Training { trainer, .. } => {
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
                if parts.len() != self.round.fragments.len() {
                    return Err(CoordinatorError::Training(
                        "a rejected output has no replay to take its place".into(),
                    ));
                }
                for ((rows, _), fragment) in parts.iter().zip(&self.round.fragments) {
                    collected.append(&fragment.indices, rows)?;
                }
            }
        }
        let trained = progression.trained();
        if let Some(index) = trained.iter().position(|value| !value.is_finite()) {
            return Err(CoordinatorError::Training(format!(
                "the model diverged: parameter {index} is not finite after the step"
            )));
        }
        // The next version the nodes get, and the update that makes it from this round's.
        let update = match &mut progression {
            Progression::Training {
                published: Some(published),
                ..
            } if !last => {
                let (update, next) = corex_core::model_update::publish_step(
                    &trained,
                    published,
                    &self.spec.download_compression,
                )
                .map_err(|error| CoordinatorError::Training(error.to_string()))?;
                *published = next;
                Some(update)
            }
            _ => None,
        };
        let parameters = progression.parameters();
        for judgement in &mut judged {
            judgement.replacement = None;
        }

        let total_samples: u64 = accepted.iter().map(|r| u64::from(r.samples)).sum();
        let train_loss = (accepted
            .iter()
            .map(|r| f64::from(r.loss) * f64::from(r.samples))
            .sum::<f64>()
            / total_samples.max(1) as f64) as f32;
        let completed = self.completed_rounds + 1;
        // A transform has no model to evaluate; an inference job's is evaluated as a
        // training job's would be.
        let has_model = !matches!(self.spec.work, WorkSpec::Transform { .. });
        let evaluation = if has_model && (last || completed.is_multiple_of(self.spec.eval_every)) {
            Some(
                corex_ml::evaluate(
                    &self.spec.model,
                    &trained,
                    &self.data.dataset,
                    &self.data.split.test,
                )
                .map_err(training)?,
            )
        } else {
            None
        };
        let weights = match &progression {
            Progression::Training { .. } if last => Some(
                corex_ml::to_safetensors_with(
                    &self.spec.model,
                    &trained,
                    self.standardization.as_ref(),
                )
                .map_err(training)?,
            ),
            _ => None,
        };
        // What the next checkpoint keeps (nothing once the job ends).
        let saved = if last {
            None
        } else {
            Some(progression.saved()?)
        };
        let began_ms = *began_ms;
        let plan = plan.clone();
        Ok(ClosedWork {
            progression,
            saved,
            parameters,
            update,
            round: self.round,
            plan,
            judged,
            audits,
            records,
            passed_segments: segments.passed,
            held_out,
            train_loss,
            evaluation,
            weights,
            began_ms,
            node_audits,
            segment_audits,
            computing_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// The held-out checks of a federated round (see [`held_out_checks`]) on the owner's
    /// validation split: a result alone is `current − update` (the holder's locally trained
    /// model); an aggregate takes a plain outer step of the job's learning rate. A model that
    /// cannot be evaluated has a loss that is not finite.
    fn held_out(&self, current: &[f32], accepted: &[&Accepted]) -> Vec<HeldOut> {
        let evaluate = |params: &[f32]| {
            corex_ml::evaluate(
                &self.spec.model,
                params,
                &self.data.dataset,
                &self.data.split.test,
            )
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

    /// Judges the revealed segments and prefixes of the round at `current` (the round's model
    /// version): each part's update as the submitter's checkpoints say (start minus end; a
    /// prefix's on the opened leaves of its end), against
    /// the replay a node returned for it when one did, else (or where they disagree) against
    /// the coordinator's own replay, which also judges the node's. Returns the positions of
    /// the results whose segment agrees, and a verdict per node replay.
    fn judge_segments(
        &self,
        node_replays: &BTreeMap<usize, &NodeReplay>,
        current: &[f32],
        records: &mut Vec<RecordDelta>,
    ) -> Result<JudgedSegments, CoordinatorError> {
        let mut judged = JudgedSegments::default();
        let WorkSpec::LocalSteps { steps, inner } = &self.spec.work else {
            return Ok(judged);
        };
        for reveal in &self.auditing.reveals {
            let (
                RevealAnswer::Revealed {
                    checkpoints: answer,
                    claim,
                },
                Some(result),
                Some(steps_audited),
            ) = (
                &reveal.answer,
                &self.round.results[reveal.index],
                reveal.steps.clone(),
            )
            else {
                continue;
            };
            let revealed = |step: u32| {
                reveal
                    .asked
                    .iter()
                    .position(|asked| *asked == step)
                    .and_then(|position| answer.get(position))
            };
            let start = match steps_audited.start {
                0 => current,
                step => match revealed(step) {
                    Some(checkpoint) => checkpoint.as_slice(),
                    None => continue,
                },
            };
            // The chain ends at `w_start − result`. A prefix's end is opened at a few leaves
            // only, where the prefix is compared.
            let parameters = self.spec.model.parameter_count();
            let checkpoint_leaves: Vec<std::ops::Range<usize>> = reveal
                .leaves
                .iter()
                .map(|leaf| leaf_range(parameters, *leaf))
                .collect();
            let (claimed_update, opened) = match (revealed(steps_audited.end), claim) {
                (Some(checkpoint), _) if !checkpoint_leaves.is_empty() => {
                    let values = checkpoint_leaves
                        .iter()
                        .flat_map(|range| range.clone())
                        .zip(checkpoint)
                        .map(|(at, value)| start[at] - value)
                        .collect();
                    // Both sides subtract from the same start: an unmoved value is exactly 0.
                    let opened = Opened {
                        covers: &checkpoint_leaves,
                        rounding: 0.0,
                    };
                    (values, Some(opened))
                }
                (Some(checkpoint), _) => (displacement(start, checkpoint), None),
                // Compressed results are audited by prefixes, which end inside the fragment
                // (`corex_core::trace::TraceAudit`): their decoded update is not what they
                // claim, so such a part is left to the whole replay.
                (None, Some(_)) => continue,
                (None, None) => (
                    displacement(start, &displacement(current, &result.gradient)),
                    None,
                ),
            };
            let range = steps_audited.start as usize..steps_audited.end as usize;
            let claimed = Replay {
                gradient: claimed_update,
                loss: result
                    .trace
                    .as_ref()
                    .and_then(|trace| trace.losses.get(range))
                    .map_or(f32::NAN, mean_step_loss),
            };
            let fragment = &self.round.fragments[reveal.index];
            let judgement = self.comparator.judge_segment(
                &fragment.id,
                &claimed,
                opened,
                node_replays.get(&reveal.index).copied(),
                || {
                    corex_ml::replay_segment(
                        &corex_ml::Backend::cpu(),
                        &self.spec.model,
                        start,
                        &self.data.dataset,
                        &fragment.indices,
                        *steps,
                        inner,
                        steps_audited.clone(),
                    )
                    .map(|segment| Replay {
                        gradient: segment.gradient,
                        loss: segment.loss,
                    })
                    .map_err(training)
                },
                records,
            )?;
            if let Some(verdict) = judgement.auditor_verdict {
                judged.audits.push((reveal.index, verdict));
            }
            match judgement.disagreement {
                None => {
                    judged.passed.insert(
                        reveal.index,
                        PassedSegment {
                            steps: [steps_audited.start, steps_audited.end],
                            audited_by: judgement.audited_by,
                        },
                    );
                }
                Some(reason) => tracing::warn!(
                    node = %result.node.short(),
                    fragment = %fragment.id.short(),
                    steps = ?steps_audited,
                    %reason,
                    "segment audit disagrees; replaying the whole fragment"
                ),
            }
        }
        Ok(judged)
    }
}
