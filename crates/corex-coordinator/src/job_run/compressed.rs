//! Compressed results (see `corex_core::compression` and docs/verification.md): each node's
//! error-feedback chain, a compressed tensor decoded at intake, and the dense update an
//! audited result claims once its node has revealed its states.
//!
//! A compressed result commits to the hashes of the node's error-feedback state before and
//! after it. Intake takes it only if `before` continues the node's chain (the `after` of its
//! last accepted result) or restarts it from zeros (a node that lost its state only loses what
//! it had not sent yet). An audit asks the node for both states; with them the result claims
//! the dense update `D(C) + after − before`, which the replay judges like any update, and its
//! bytes must be a faithful compression of `D(C) + after` (`corex_verify::check_compression`).
//! Unrevealed states count as zeros: the claim is then `D(C)` alone, which no honest update
//! matches.

use corex_core::compression::{FeedbackCommitment, decode, zero_state_hash};
use corex_core::error::DecodeError;

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
        (!spec.compression.is_none()).then(|| Self {
            zero: zero_state_hash(spec.model.parameter_count()),
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

/// What an audited compressed result claims once its states are revealed.
pub(super) struct Claim {
    /// `D(C) + after − before`.
    pub update: Vec<f32>,
    /// Why the bytes are not a faithful compression of `D(C) + after`, if they are not.
    pub defect: Option<String>,
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

    /// The claim of compressed result `accepted` given its revealed `before` and `after`
    /// states, each checked against its commitment first.
    pub(super) fn claim(
        &self,
        accepted: &Accepted,
        before: &[f32],
        after: &[f32],
    ) -> Result<Claim, CoordinatorError> {
        let Some(SentCompressed { bytes, feedback }) = &accepted.compressed else {
            return Err(CoordinatorError::CompressionMismatch(
                "states were revealed for a result that is not compressed".into(),
            ));
        };
        if corex_core::compression::state_hash(before) != feedback.before {
            return Err(CoordinatorError::FeedbackMismatch { which: "before" });
        }
        if corex_core::compression::state_hash(after) != feedback.after {
            return Err(CoordinatorError::FeedbackMismatch { which: "after" });
        }
        let sent = accepted.gradient.as_slice();
        let update = corex_verify::claimed_update(sent, before, after)
            .map_err(CoordinatorError::WrongShape)?;
        let corrected: Vec<f32> = sent.iter().zip(after).map(|(s, a)| s + a).collect();
        let defect =
            corex_verify::check_compression(bytes, &corrected, &self.spec.compression).err();
        Ok(Claim { update, defect })
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
