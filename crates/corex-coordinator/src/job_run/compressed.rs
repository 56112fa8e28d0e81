//! Compressed results (see `corex_core::compression` and docs/verification.md): each node's
//! error-feedback chain, a compressed tensor decoded at intake, and the dense update an
//! audited result claims once its node has revealed its states.
//!
//! A compressed result commits to the hashes of the node's error-feedback state before and
//! after it. Intake takes it only if `before` continues the node's chain (the `after` of its
//! last accepted result) or restarts it from zeros (a node that lost its state only loses what
//! it had not sent yet). An audit opens a seeded sample of the states' leaves
//! (`corex_core::feedback_state`); on those values the result claims the update
//! `D(C) + after − β·before` (`β` the policy's `feedback_decay`), which the replay judges like any update on the same values, and
//! its bytes must be a faithful compression of `D(C) + after` there
//! (`corex_verify::check_compression`). Unrevealed states count as zeros: the claim is then
//! `D(C)` alone, which no honest update matches.

use std::ops::Range;

use corex_core::compression::{FeedbackCommitment, decode};
use corex_core::error::DecodeError;
use corex_core::feedback_state::{StatePaths, check_leaf, leaf_range, zero_state_root};

use super::*;

/// Where each node's error-feedback chain stands in a compressed job.
pub(super) struct FeedbackChains {
    /// The hash of the zero state: where every chain starts, and may start again.
    zero: Hash,
    /// The `after` state of each node's last accepted result.
    heads: BTreeMap<NodeId, Hash>,
}

impl FeedbackChains {
    /// The chains of a job whose updates are compressed; `None` for any other job.
    pub(super) fn for_spec(spec: &JobSpec) -> Option<Self> {
        if spec.compression.is_none() {
            return None;
        }
        Some(Self {
            zero: zero_state_root(spec.model.parameter_count()),
            heads: BTreeMap::new(),
        })
    }

    fn check(&self, node: &NodeId, feedback: &FeedbackCommitment) -> Result<(), CoordinatorError> {
        let continues = self.heads.get(node) == Some(&feedback.before);
        if continues || feedback.before == self.zero {
            Ok(())
        } else {
            Err(CoordinatorError::FeedbackChainBroken {
                got: feedback.before,
            })
        }
    }

    pub(super) fn advance(&mut self, node: NodeId, feedback: &FeedbackCommitment) {
        self.heads.insert(node, feedback.after);
    }
}

/// A compressed result as it was sent: its bytes and the feedback states it committed to.
pub(super) struct SentCompressed {
    pub bytes: Arc<Vec<u8>>,
    pub feedback: FeedbackCommitment,
}

/// A fragment result's values, signed commitment, and what was sent compressed.
type ResultValues = (Vec<f32>, Hash, Option<SentCompressed>);

/// What an audited compressed result claims once leaves of its states are revealed.
pub(super) struct Claim {
    /// `D(C) + after − β·before` on the opened leaves, one after the other.
    pub update: Vec<f32>,
    /// The values of the update the opened leaves cover, ascending.
    pub covers: Vec<Range<usize>>,
    /// How far rounding may take `update` from the node's (`corex_verify::claim_rounding`).
    pub rounding: f64,
    /// Why the bytes are not a faithful compression of `D(C) + after`, if they are not.
    pub defect: Option<String>,
}

impl Claim {
    /// What the judge compares the claim on.
    pub(super) fn opened(&self) -> Opened<'_> {
        Opened {
            covers: &self.covers,
            rounding: self.rounding,
        }
    }
}

/// Leaves `leaves` of a result's two states as a reveal sent them: the values of `before`'s
/// leaves, then of `after`'s, and their paths.
pub(super) struct OpenedStates<'a> {
    pub leaves: &'a [u32],
    pub values: &'a [f32],
    pub paths: &'a StatePaths,
}

impl JobRun {
    /// A fragment result's values: the f32 tensor of an uncompressed job, or the decoded bytes
    /// of a compressed job's result whose feedback chain continues. Nothing changes here.
    pub(super) fn result_values(
        &self,
        node: &NodeId,
        header: &ResultHeader,
        tensor: SignedTensor,
    ) -> Result<ResultValues, CoordinatorError> {
        let SignedTensor {
            values,
            compressed,
            commitment,
        } = tensor;
        match (&self.feedback, header.feedback, compressed) {
            (None, None, None) => Ok((values, commitment, None)),
            (Some(chains), Some(feedback), Some(bytes)) => {
                chains.check(node, &feedback)?;
                let values = decode_sent(&self.spec, &bytes)
                    .map_err(|error| CoordinatorError::WrongShape(error.to_string()))?;
                let sent = SentCompressed {
                    bytes: Arc::new(bytes),
                    feedback,
                };
                Ok((values, commitment, Some(sent)))
            }
            (Some(_), _, _) => Err(CoordinatorError::CompressionMismatch(
                "this job's results are compressed and carry their feedback states".into(),
            )),
            (None, _, _) => Err(CoordinatorError::CompressionMismatch(
                "this job's results are not compressed".into(),
            )),
        }
    }

    /// The claim of compressed result `accepted` on the leaves `opened` of its states, each
    /// leaf first checked against the state's commitment by its path.
    pub(super) fn claim(
        &self,
        accepted: &Accepted,
        opened: OpenedStates<'_>,
    ) -> Result<Claim, CoordinatorError> {
        let Some(SentCompressed { bytes, feedback }) = &accepted.compressed else {
            return Err(CoordinatorError::CompressionMismatch(
                "states were revealed for a result that is not compressed".into(),
            ));
        };
        let sent = accepted.gradient.as_slice();
        let len = sent.len();
        let covers: Vec<Range<usize>> = opened
            .leaves
            .iter()
            .map(|index| leaf_range(len, *index))
            .collect();
        let width: usize = covers.iter().map(|range| range.len()).sum();
        let OpenedStates { values, paths, .. } = opened;
        if values.len() != 2 * width
            || paths.before.len() != covers.len()
            || paths.after.len() != covers.len()
        {
            return Err(CoordinatorError::WrongShape(format!(
                "{} revealed state values and {} + {} paths for {} leaves of {width} values",
                values.len(),
                paths.before.len(),
                paths.after.len(),
                covers.len()
            )));
        }
        let (before, after) = values.split_at(width);
        let decay = self.spec.compression.feedback_decay();
        let mut update = Vec::with_capacity(width);
        let mut rounding = 0.0_f64;
        let mut corrected = Vec::with_capacity(covers.len());
        let mut offset = 0;
        for (position, (range, index)) in covers.iter().zip(opened.leaves).enumerate() {
            let part = offset..offset + range.len();
            offset = part.end;
            let (before, after) = (&before[part.clone()], &after[part]);
            let states = [
                ("before", &feedback.before, before, &paths.before[position]),
                ("after", &feedback.after, after, &paths.after[position]),
            ];
            for (which, root, values, path) in states {
                if !check_leaf(root, len, *index, values, path) {
                    return Err(CoordinatorError::FeedbackMismatch { which });
                }
            }
            let sent = &sent[range.clone()];
            rounding += corex_verify::claim_rounding(sent, before, after, decay).powi(2);
            update.extend(
                corex_verify::claimed_update(sent, before, after, decay)
                    .map_err(CoordinatorError::WrongShape)?,
            );
            corrected.push((
                range.start,
                sent.iter()
                    .zip(after)
                    .map(|(s, a)| s + a)
                    .collect::<Vec<f32>>(),
            ));
        }
        let defect =
            corex_verify::check_compression(bytes, len, &corrected, &self.spec.compression).err();
        Ok(Claim {
            update,
            covers,
            rounding: rounding.sqrt(),
            defect,
        })
    }
}

/// A compressed result's bytes decoded under `spec`'s policy, for its model.
pub(super) fn decode_sent(spec: &JobSpec, bytes: &[u8]) -> Result<Vec<f32>, DecodeError> {
    decode(bytes, spec.model.parameter_count(), &spec.compression)
}

/// Refuses feedback states or compressed bytes where none belong (an audit replay, a reveal).
pub(super) fn dense_only(
    header: &ResultHeader,
    tensor: &SignedTensor,
) -> Result<(), CoordinatorError> {
    if header.feedback.is_some() || tensor.compressed.is_some() {
        return Err(CoordinatorError::CompressionMismatch(
            "audit replays and reveals are sent whole, without feedback states".into(),
        ));
    }
    Ok(())
}
