//! Segment audits of traced results (see `corex_core::trace`): an audited local-steps result
//! that carries a step trace, and that no consistency or repetition flag singled out, is
//! checked by replaying one segment of its steps instead of all of them. The revealed seed
//! picks the segment; the submitter is asked (through its next lease request) for the
//! checkpoints around it, which must hash to what it committed; the coordinator replays the
//! segment from the first and compares with the second (the chain's ends are the model version
//! and `w_start − result`, which it has).
//!
//! A segment that agrees settles the audit as passed. One that disagrees, or a reveal that
//! does not come before the audit deadline, sends the result to the whole-fragment replay, which
//! decides as for any audit: a segment audit can accept a result early, never condemn it.

use corex_core::feedback_state::{check_leaf, leaf_count, leaf_range, sample_leaves};
use corex_core::messages::LeaseResponse;
use corex_core::trace::{PREFIX_OPENED_LEAVES, TraceAudit, checkpoint_root, segment_bounds};
use corex_verify::audited_segment;

use super::*;

/// One audited traced result, waiting for the checkpoints around its audited segment.
pub(super) struct RevealTask {
    /// Position of the audited fragment in the round.
    pub index: usize,
    pub submitter: NodeId,
    /// The id the reveal comes under (`Fragment::derive_reveal_id`).
    pub reveal_id: Hash,
    /// The audited segment's or prefix's steps (none: the result is replayed whole, and only
    /// its feedback states are asked for).
    pub steps: Option<std::ops::Range<u32>>,
    /// The checkpoints asked for: the segment's interior ends, ascending.
    pub asked: Vec<u32>,
    /// The leaves each asked checkpoint is opened at, ascending (a prefix audit); empty: the
    /// checkpoints come whole (a segment audit).
    pub leaves: Vec<u32>,
    /// The leaves of the result's error-feedback states asked for too (a compressed result;
    /// empty otherwise), ascending.
    pub feedback: Vec<u32>,
    pub answer: RevealAnswer,
}

/// Where a reveal request stands.
pub(super) enum RevealAnswer {
    Awaited,
    /// The revealed parameters, one per asked step (whole, or the asked leaves' values one
    /// after the other), and a compressed result's claim.
    Revealed {
        checkpoints: Vec<Vec<f32>>,
        claim: Option<Claim>,
    },
    /// The submitter cannot reveal them: its result is replayed whole (a compressed result's
    /// states then count as zeros).
    Declined,
}

impl RevealAnswer {
    pub fn is_awaited(&self) -> bool {
        matches!(self, Self::Awaited)
    }
}

impl JobRun {
    /// The reveal an audit of `result` (at position `index`, under `seed`) asks for: the
    /// checkpoints around one segment when `segment` and the result is traced, and a seeded
    /// sample of a compressed result's feedback-state leaves always; `None` when there is
    /// nothing to ask.
    pub(super) fn plan_reveal(
        &self,
        index: usize,
        result: &Accepted,
        fragment: &Fragment,
        seed: &Hash,
        segment: bool,
    ) -> Option<RevealTask> {
        let feedback = match &result.compressed {
            Some(_) => sample_leaves(
                seed,
                &result.commitment,
                leaf_count(self.spec.model.parameter_count()),
                corex_verify::OPENED_LEAVES,
            ),
            None => Vec::new(),
        };
        let planned = if segment && fragment.holder.is_none() {
            self.plan_segment(result, fragment, seed)
        } else {
            None
        };
        if planned.is_none() && feedback.is_empty() {
            return None;
        }
        let (steps, asked, leaves) = match planned {
            Some(planned) => (Some(planned.steps), planned.asked, planned.leaves),
            None => (None, Vec::new(), Vec::new()),
        };
        Some(RevealTask {
            index,
            submitter: result.node,
            reveal_id: Fragment::derive_reveal_id(&fragment.id),
            steps,
            asked,
            leaves,
            feedback,
            answer: RevealAnswer::Awaited,
        })
    }

    /// The segment or prefix a traced result's audit replays and what to ask for; `None`
    /// when the drawn prefix is the whole fragment (replayed whole).
    fn plan_segment(
        &self,
        result: &Accepted,
        fragment: &Fragment,
        seed: &Hash,
    ) -> Option<PlannedPart> {
        let trace = result.trace.as_ref()?;
        let bounds = segment_bounds(
            &self.spec.work,
            &self.spec.compression,
            fragment.indices.len(),
        )?;
        let audit = TraceAudit::of(&self.spec.work, &self.spec.compression)?;
        let segments = bounds.len() as u32 - 1;
        if trace.checkpoints.len() + 2 != bounds.len() {
            return None;
        }
        let drawn = audited_segment(seed, &result.commitment, segments) as usize;
        let steps = audit.steps(&bounds, drawn);
        let last = bounds[bounds.len() - 1];
        let asked: Vec<u32> = [steps.start, steps.end]
            .into_iter()
            .filter(|step| *step != 0 && *step != last)
            .collect();
        let leaves = match audit {
            TraceAudit::Segment => Vec::new(),
            TraceAudit::Prefix if asked.is_empty() => return None,
            TraceAudit::Prefix => sample_leaves(
                seed,
                &Hash::of_parts(&[b"corex-prefix-leaves", result.commitment.as_bytes()]),
                leaf_count(self.spec.model.parameter_count()),
                PREFIX_OPENED_LEAVES,
            ),
        };
        Some(PlannedPart {
            steps,
            asked,
            leaves,
        })
    }

    /// What `node` is asked to reveal now, if anything.
    pub fn reveal_for(&self, node: &NodeId) -> Option<LeaseResponse> {
        let round = self.round.as_ref()?;
        let reveal = round
            .auditing
            .as_ref()?
            .reveals
            .iter()
            .find(|reveal| reveal.submitter == *node && reveal.answer.is_awaited())?;
        let fragment = round.fragments.get(reveal.index)?;
        Some(LeaseResponse::Reveal {
            fragment: fragment.id,
            model: self.model,
            steps: reveal.asked.clone(),
            leaves: reveal.leaves.clone(),
            feedback: reveal.feedback.clone(),
        })
    }

    pub(super) fn reveal_task(&self, id: &Hash) -> Option<usize> {
        self.round
            .as_ref()?
            .auditing
            .as_ref()?
            .reveals
            .iter()
            .position(|reveal| reveal.reveal_id == *id)
    }

    /// Takes the checkpoints `node` revealed for reveal task `task`: only the submitter's,
    /// once, at the round's model version, signed like a result, of the asked size, finite,
    /// and each hashing to the checkpoint its result committed to. Nothing changes on error.
    pub(super) fn submit_reveal(
        &mut self,
        task: usize,
        node: NodeId,
        header: &ResultHeader,
        tensor: SignedTensor,
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Result<Progress, CoordinatorError> {
        let (revealed, claim) = self.check_reveal(task, node, header, tensor)?;
        let segment_task = self.segment_task(task, &revealed, &engine);
        let round = self
            .round
            .as_mut()
            .ok_or(CoordinatorError::FragmentClosed(header.fragment))?;
        let auditing = round
            .auditing
            .as_mut()
            .ok_or(CoordinatorError::FragmentClosed(header.fragment))?;
        if let Some((mut task, start)) = segment_task {
            if let Some(start) = start {
                let (checkpoint, new) = engine.blobs.publish_if_new(f32s_to_bytes(start));
                if new {
                    auditing.published.push(checkpoint);
                }
                task.fragment.model = checkpoint;
            }
            auditing.tasks.push(task);
        }
        tracing::debug!(
            round = self.completed_rounds,
            node = %node.short(),
            since_audits_ms = now_ms.saturating_sub(auditing.began_ms),
            replayed_by_node = auditing.tasks.len(),
            "checkpoints revealed"
        );
        auditing.reveals[task].answer = RevealAnswer::Revealed {
            checkpoints: revealed,
            claim,
        };
        if auditing.is_complete() {
            return self.close_round(now_ms, engine);
        }
        Ok(Progress::Auditing)
    }

    /// `node` cannot reveal the checkpoints asked of it for `fragment`: its result goes to the
    /// whole-fragment replay now rather than at the audit deadline. Refused, changing nothing,
    /// unless a reveal for that fragment is awaited from that node.
    pub fn decline_reveal(
        &mut self,
        node: NodeId,
        fragment: &Hash,
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Result<Progress, CoordinatorError> {
        let not_asked = || CoordinatorError::RevealNotAsked(*fragment);
        let round = self.round.as_mut().ok_or_else(not_asked)?;
        let fragments = &round.fragments;
        let auditing = round.auditing.as_mut().ok_or_else(not_asked)?;
        let reveal = auditing
            .reveals
            .iter_mut()
            .find(|reveal| {
                reveal.submitter == node
                    && reveal.answer.is_awaited()
                    && fragments
                        .get(reveal.index)
                        .is_some_and(|asked| asked.id == *fragment)
            })
            .ok_or_else(not_asked)?;
        reveal.answer = RevealAnswer::Declined;
        tracing::debug!(
            round = self.completed_rounds,
            node = %node.short(),
            fragment = %fragment.short(),
            "reveal declined; the fragment is replayed whole"
        );
        if auditing.is_complete() {
            return self.close_round(now_ms, engine);
        }
        Ok(Progress::Auditing)
    }

    /// The audit task that lets a proven node on other hardware replay the segment of reveal
    /// `task` now that its checkpoints are in, and the checkpoint it starts from (`None`: the
    /// round's model version); `None` when no live eligible node replays it in time (the
    /// coordinator then replays the segment itself at the round's close).
    fn segment_task<'a>(
        &self,
        task: usize,
        revealed: &'a [Vec<f32>],
        engine: &Engine<'_>,
    ) -> Option<(AuditTask, Option<&'a [f32]>)> {
        let WorkSpec::LocalSteps { steps, .. } = &self.spec.work else {
            return None;
        };
        let round = self.round.as_ref()?;
        let reveal = round.auditing.as_ref()?.reveals.get(task)?;
        let segment = reveal.steps.clone()?;
        let audited = round.fragments.get(reveal.index)?;
        let span = u64::from(segment.end - segment.start);
        let fragment = Fragment {
            id: Fragment::derive_audit_id(&audited.id),
            steps: Some([segment.start, segment.end]),
            cost_flops: audited.cost_flops * span / u64::from((*steps).max(1)),
            ..audited.clone()
        };
        let fits = |auditor: &NodeId| {
            engine
                .auditors
                .replays_in_time(self.spec.granularity, &fragment, auditor)
        };
        if !engine
            .auditors
            .any_for(engine.verifier, &reveal.submitter, fits)
        {
            return None;
        }
        let start = match segment.start {
            0 => None,
            step => {
                let position = reveal.asked.iter().position(|asked| *asked == step)?;
                Some(revealed.get(position)?.as_slice())
            }
        };
        let task = AuditTask {
            index: reveal.index,
            fragment,
            submitter: reveal.submitter,
            holder: None,
            replay: None,
            commitment: None,
        };
        Some((task, start))
    }

    fn check_reveal(
        &self,
        task: usize,
        node: NodeId,
        header: &ResultHeader,
        tensor: SignedTensor,
    ) -> Result<(Vec<Vec<f32>>, Option<Claim>), CoordinatorError> {
        let closed = || CoordinatorError::FragmentClosed(header.fragment);
        compressed::dense_only(header, &tensor)?;
        let round = self.round.as_ref().ok_or_else(closed)?;
        let reveal = &round.auditing.as_ref().ok_or_else(closed)?.reveals[task];
        if reveal.submitter != node {
            return Err(CoordinatorError::RevealNotAsked(header.fragment));
        }
        if !reveal.answer.is_awaited() {
            return Err(closed());
        }
        if header.model != self.model {
            return Err(CoordinatorError::StaleModel {
                got: header.model,
                current: self.model,
            });
        }
        if header.trace.is_some() {
            return Err(CoordinatorError::BadTrace(
                "a reveal of checkpoints carries no trace".into(),
            ));
        }
        if header.fragment != reveal.reveal_id {
            return Err(CoordinatorError::UnknownFragment(header.fragment));
        }
        let values = tensor.values;
        let parameters = self.spec.model.parameter_count();
        let leaf_values = |leaves: &[u32]| -> usize {
            leaves
                .iter()
                .map(|index| leaf_range(parameters, *index).len())
                .sum()
        };
        let per_checkpoint = match reveal.leaves.is_empty() {
            true => parameters,
            false => leaf_values(&reveal.leaves),
        };
        let opened = leaf_values(&reveal.feedback);
        if values.len() != per_checkpoint * reveal.asked.len() + 2 * opened {
            return Err(CoordinatorError::WrongShape(format!(
                "revealed {} values; {} checkpoints of {per_checkpoint} values and {} leaves of both feedback states ({opened} values each) were asked for",
                values.len(),
                reveal.asked.len(),
                reveal.feedback.len()
            )));
        }
        let paths_asked = match reveal.leaves.is_empty() {
            true => None,
            false => Some(reveal.asked.len() * reveal.leaves.len()),
        };
        if header.checkpoint_paths.as_ref().map(Vec::len) != paths_asked {
            return Err(CoordinatorError::WrongShape(
                "a reveal carries one checkpoint path per opened leaf of each asked checkpoint, and none for whole checkpoints".into(),
            ));
        }
        if let Some(index) = values.iter().position(|value| !value.is_finite()) {
            return Err(CoordinatorError::NonFinite { index });
        }
        let result = round.results[reveal.index].as_ref().ok_or_else(closed)?;
        let (values, states) = values.split_at(per_checkpoint * reveal.asked.len());
        let claim = match (&header.state_paths, reveal.feedback.is_empty()) {
            (None, true) => None,
            (Some(paths), false) => Some(self.claim(
                result,
                OpenedStates {
                    leaves: &reveal.feedback,
                    values: states,
                    paths,
                },
            )?),
            _ => {
                return Err(CoordinatorError::WrongShape(
                    "a reveal carries state paths exactly when feedback states are asked for"
                        .into(),
                ));
            }
        };
        if reveal.asked.is_empty() {
            return Ok((Vec::new(), claim));
        }
        let (trace, bounds) = result
            .trace
            .as_ref()
            .zip(segment_bounds(
                &self.spec.work,
                &self.spec.compression,
                round.fragments[reveal.index].indices.len(),
            ))
            .ok_or_else(closed)?;
        let no_paths = Vec::new();
        let paths = header.checkpoint_paths.as_ref().unwrap_or(&no_paths);
        reveal
            .asked
            .iter()
            .zip(values.chunks_exact(per_checkpoint.max(1)))
            .enumerate()
            .map(|(position, (step, checkpoint))| {
                // The trace's checkpoints are the interior bounds in order.
                let committed = bounds[1..]
                    .iter()
                    .position(|bound| bound == step)
                    .and_then(|at| trace.checkpoints.get(at));
                let opens = committed.is_some_and(|root| match reveal.leaves.is_empty() {
                    true => checkpoint_root(checkpoint) == *root,
                    false => {
                        let paths = paths.iter().skip(position * reveal.leaves.len());
                        let mut offset = 0;
                        reveal.leaves.iter().zip(paths).all(|(leaf, path)| {
                            let len = leaf_range(parameters, *leaf).len();
                            let values = &checkpoint[offset..offset + len];
                            offset += len;
                            check_leaf(root, parameters, *leaf, values, path)
                        })
                    }
                });
                match opens {
                    true => Ok(checkpoint.to_vec()),
                    false => Err(CoordinatorError::CheckpointMismatch { step: *step }),
                }
            })
            .collect::<Result<_, _>>()
            .map(|checkpoints| (checkpoints, claim))
    }
}

/// What a segment or prefix audit replays and asks for.
struct PlannedPart {
    steps: std::ops::Range<u32>,
    asked: Vec<u32>,
    leaves: Vec<u32>,
}
