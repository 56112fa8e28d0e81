//! The judge of replays: compares results with replays (within the tolerance, or bit for bit
//! for transformed rows) and turns the comparisons into verdicts. Pure: it reads nothing but
//! its tolerance and its arguments, so a round's judgement runs off the engine lock, and what
//! it decides about nodes' audit records comes back as [`RecordDelta`]s that the verifier
//! applies under the lock.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use corex_core::messages::ResultVerdict;
use corex_core::{Hash, NodeId};
use corex_verify::{Tolerance, compare};

use super::{
    AuditPlan, Candidate, Judged, NodeReplay, Opened, Replay, ResultKind, RoundJudgement,
    SegmentJudgement,
};
use crate::error::CoordinatorError;

/// Largest accepted difference between reported and replayed loss, relative to the replayed
/// loss (with an absolute floor for losses near zero). Honest replays match exactly.
const LOSS_TOLERANCE: f32 = 1e-3;

/// One check a node passed or failed, for its audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordDelta {
    pub node: NodeId,
    pub passed: bool,
}

impl RecordDelta {
    pub fn passed(node: NodeId) -> Self {
        Self { node, passed: true }
    }

    pub fn failed(node: NodeId) -> Self {
        Self {
            node,
            passed: false,
        }
    }
}

/// Judges replays with a fixed tolerance (see the module header).
#[derive(Debug, Clone, Copy)]
pub struct Comparator {
    pub(super) tolerance: Tolerance,
}

impl Comparator {
    /// Judges a round planned by [`plan_round`](Self::plan_round). An audited result whose
    /// position is in `passed_segments` (its segment audit agreed, settled by the node named
    /// there or by the coordinator) has passed. Otherwise it is
    /// compared with the node replay in `node_replays` when there is one; where they disagree,
    /// or there is none, `replay(i)` (the coordinator's own) decides, and it also judges the
    /// auditor. Returns one verdict per candidate, in order, and one per node replay.
    pub fn judge(
        &self,
        candidates: &[Candidate<'_>],
        plan: &AuditPlan,
        node_replays: &BTreeMap<usize, &NodeReplay>,
        passed_segments: &BTreeMap<usize, Option<NodeId>>,
        mut replay: impl FnMut(usize) -> Result<Replay, CoordinatorError>,
    ) -> Result<RoundJudgement, CoordinatorError> {
        let mut judgement = RoundJudgement::default();
        for (index, (candidate, planned)) in candidates.iter().zip(&plan.audits).enumerate() {
            let flag = planned.flag.clone();
            if !planned.audited {
                judgement.results.push(Judged {
                    verdict: ResultVerdict::Accepted {
                        audited: false,
                        flag: None,
                    },
                    replacement: None,
                    audited_by: None,
                });
                continue;
            }
            // An agreeing segment audit, or a node's replay that agrees with the result,
            // settles the audit; otherwise the coordinator's own replay judges the result, and
            // the auditor too.
            let from_node = node_replays.get(&index).copied();
            let settled_by_node = match from_node {
                Some(_) if candidate.defect.is_some() => false,
                Some(node_replay) => self
                    .mismatch(
                        plan.kind,
                        candidate.gradient,
                        candidate.loss,
                        &node_replay.replay,
                        candidate.opened,
                    )?
                    .is_none(),
                None => false,
            };
            let segment_passed = passed_segments
                .get(&index)
                .filter(|_| candidate.defect.is_none());
            let (mismatch, truth, audited_by) = if let Some(auditor) = segment_passed {
                (None, None, *auditor)
            } else if settled_by_node {
                judgement.audits.push((index, accepted_audit(false)));
                (None, None, from_node.map(|node_replay| node_replay.auditor))
            } else {
                let truth = replay(index)?;
                if let Some(node_replay) = from_node {
                    let verdict = self.judge_auditor(
                        plan.kind,
                        &candidate.fragment,
                        node_replay,
                        &truth,
                        "audit replay",
                        &mut judgement.records,
                    )?;
                    judgement.audits.push((index, verdict));
                }
                let mismatch = match candidate.defect {
                    Some(defect) => Some(defect.to_owned()),
                    None => self.mismatch(
                        plan.kind,
                        candidate.gradient,
                        candidate.loss,
                        &truth,
                        candidate.opened,
                    )?,
                };
                (mismatch, Some(truth), None)
            };
            let Some(reason) = mismatch else {
                judgement.records.push(RecordDelta::passed(candidate.node));
                judgement.results.push(Judged {
                    verdict: ResultVerdict::Accepted {
                        audited: true,
                        flag,
                    },
                    replacement: None,
                    audited_by,
                });
                continue;
            };
            judgement.records.push(RecordDelta::failed(candidate.node));
            let truth = truth.ok_or_else(|| {
                CoordinatorError::Training("a rejected result has no replay".into())
            })?;
            judgement.results.push(Judged {
                verdict: ResultVerdict::Rejected {
                    reason: format!(
                        "{reason}{}",
                        flag.map(|f| format!("; consistency flag {f}"))
                            .unwrap_or_default()
                    ),
                    evidence: evidence(&candidate.fragment, &candidate.result_hash, &truth),
                },
                replacement: Some(truth.gradient),
                audited_by: None,
            });
        }
        Ok(judgement)
    }

    /// Judges one segment audit: the segment's update and mean step loss as the submitter's
    /// checkpoints and trace `claimed` them, against the replay a node returned for the
    /// segment (`from_node`), which settles it when they agree; otherwise `replay()` (the
    /// coordinator's own) decides, and judges the node's replay too. A disagreement does not
    /// count against the submitter here: its result then goes to a whole-fragment replay.
    /// With `opened`, `claimed` holds only those values of the segment's update (a
    /// compressed result's claim on the opened leaves), and the replays are compared there.
    pub fn judge_segment(
        &self,
        fragment: &Hash,
        claimed: &Replay,
        opened: Option<Opened<'_>>,
        from_node: Option<&NodeReplay>,
        replay: impl FnOnce() -> Result<Replay, CoordinatorError>,
        records: &mut Vec<RecordDelta>,
    ) -> Result<SegmentJudgement, CoordinatorError> {
        let kind = ResultKind::Update;
        if let Some(node_replay) = from_node
            && self
                .mismatch(
                    kind,
                    &claimed.gradient,
                    claimed.loss,
                    &node_replay.replay,
                    opened,
                )?
                .is_none()
        {
            return Ok(SegmentJudgement {
                disagreement: None,
                audited_by: Some(node_replay.auditor),
                auditor_verdict: Some(accepted_audit(false)),
            });
        }
        let truth = replay()?;
        let auditor_verdict = from_node
            .map(|node_replay| {
                self.judge_auditor(
                    kind,
                    fragment,
                    node_replay,
                    &truth,
                    "segment audit replay",
                    records,
                )
            })
            .transpose()?;
        Ok(SegmentJudgement {
            disagreement: self.mismatch(kind, &claimed.gradient, claimed.loss, &truth, opened)?,
            audited_by: None,
            auditor_verdict,
        })
    }

    /// The verdict on a node's audit replay (`what` names it in a rejection) of `fragment`,
    /// against the coordinator's own replay `truth`: accepted as arbitrated when it agrees;
    /// otherwise hard-rejected with its evidence, and the auditor's record counts a failure.
    fn judge_auditor(
        &self,
        kind: ResultKind,
        fragment: &Hash,
        node_replay: &NodeReplay,
        truth: &Replay,
        what: &str,
        records: &mut Vec<RecordDelta>,
    ) -> Result<ResultVerdict, CoordinatorError> {
        let mismatch = self.mismatch(
            kind,
            &node_replay.replay.gradient,
            node_replay.replay.loss,
            truth,
            None,
        )?;
        Ok(match mismatch {
            None => accepted_audit(true),
            Some(reason) => {
                records.push(RecordDelta::failed(node_replay.auditor));
                ResultVerdict::Rejected {
                    reason: format!("{what} is wrong: {reason}"),
                    evidence: evidence(fragment, &node_replay.result_hash, truth),
                }
            }
        })
    }

    /// `None` when a result (tensor and reported loss) matches a replay: within tolerance,
    /// or bit for bit for transformed rows; otherwise why not. With `opened`, the result holds
    /// those values only and the replay is compared there; where the replay is exactly zero
    /// there, a result within the claim's rounding matches it.
    fn mismatch(
        &self,
        kind: ResultKind,
        gradient: &[f32],
        loss: f32,
        replay: &Replay,
        opened: Option<Opened<'_>>,
    ) -> Result<Option<String>, CoordinatorError> {
        let replay = restricted(replay, opened.map(|opened| opened.covers));
        if kind == ResultKind::TransformedRows {
            return Ok(exact_mismatch(gradient, loss, &replay));
        }
        let loss_matches =
            (loss - replay.loss).abs() <= LOSS_TOLERANCE * replay.loss.abs().max(1e-3);
        let zero_within_rounding = opened.is_some_and(|opened| {
            replay.gradient.len() == gradient.len()
                && replay.gradient.iter().all(|value| *value == 0.0)
                && corex_verify::norm(gradient) <= opened.rounding
        });
        if zero_within_rounding {
            return Ok((!loss_matches).then(|| {
                format!(
                    "reported loss {loss:.6} against the replay's {:.6}",
                    replay.loss
                )
            }));
        }
        let comparison = compare(gradient, &replay.gradient, &self.tolerance)
            .map_err(|error| CoordinatorError::Training(error.to_string()))?;
        Ok((!(comparison.within && loss_matches)).then(|| {
            format!(
                "replay disagrees: relative L2 {:.3e}, cosine {:.4}, reported loss {:.6} against {:.6}",
                comparison.relative_l2, comparison.cosine, loss, replay.loss
            )
        }))
    }
}

/// `replay` on the values `covers` only (one range after the other), or whole.
fn restricted<'a>(replay: &'a Replay, covers: Option<&[Range<usize>]>) -> Cow<'a, Replay> {
    match covers {
        None => Cow::Borrowed(replay),
        Some(covers) => Cow::Owned(Replay {
            gradient: covers
                .iter()
                .flat_map(|range| replay.gradient.get(range.clone()).unwrap_or(&[]))
                .copied()
                .collect(),
            loss: replay.loss,
        }),
    }
}

/// `None` when a result is its replay bit for bit (values and loss); otherwise how it differs.
fn exact_mismatch(values: &[f32], loss: f32, replay: &Replay) -> Option<String> {
    if values.len() != replay.gradient.len() {
        return Some(format!(
            "replay disagrees: {} values against the replay's {}",
            values.len(),
            replay.gradient.len()
        ));
    }
    let differing: Vec<usize> = values
        .iter()
        .zip(&replay.gradient)
        .enumerate()
        .filter(|(_, (value, truth))| value.to_bits() != truth.to_bits())
        .map(|(index, _)| index)
        .collect();
    match differing.first() {
        Some(first) => Some(format!(
            "replay disagrees: {} of {} values differ (the first at index {first})",
            differing.len(),
            values.len()
        )),
        None if loss.to_bits() != replay.loss.to_bits() => Some(format!(
            "replay disagrees: reported loss {loss} against {}",
            replay.loss
        )),
        None => None,
    }
}

/// The evidence of a wrong result: `H(fragment ‖ result hash ‖ H(replay))`.
fn evidence(fragment: &Hash, result_hash: &Hash, truth: &Replay) -> Hash {
    let truth_hash = Hash::of(&corex_core::tensor::f32s_to_bytes(&truth.gradient));
    Hash::of_parts(&[
        b"corex-evidence",
        &fragment.0,
        &result_hash.0,
        &truth_hash.0,
    ])
}

/// An accepted audit replay; `arbitrated` when the coordinator's replay confirmed it.
fn accepted_audit(arbitrated: bool) -> ResultVerdict {
    ResultVerdict::Accepted {
        audited: arbitrated,
        flag: None,
    }
}
