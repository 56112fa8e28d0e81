//! Step traces of local-steps fragments: what a node commits to beside its result so that an
//! audit can replay one segment of the fragment's steps instead of all of them.
//!
//! A fragment of `K` local steps of a stateless inner optimizer (SGD without momentum) is cut
//! into `S = min(K, TRACE_SEGMENTS)` segments at the steps `b_i = ⌊i·K/S⌋`. With its result
//! the node commits to the BLAKE3 of its parameters at every interior boundary
//! (`b_1 … b_{S−1}`) and to each step's loss. The parameters at `b_0` are the round's model
//! version and those at `b_S` are `w_start − result` (in f32, computed by whoever checks), so
//! the chain is pinned at both ends. An audit reveals the checkpoints around one segment,
//! replays that segment's steps and compares its end: a segment's compute instead of `K`
//! steps. Because the steps are stateless, a segment replays from its first checkpoint alone.
//!
//! What this buys and what it does not: a node that skipped work must fake every segment it
//! skipped, and an audit picks the segment after the commitment, so skipping a fraction `f` of
//! the steps is caught with probability `f` per audit, as a whole-fragment replay would for a
//! node skipping `f` of its fragments. A node that does all the work but bends one segment
//! (poisoning rather than saving effort) is caught with probability `1/S` per audit; its update
//! also has to pass the consistency screening, which forces a whole-fragment replay.

use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::spec::OptimizerSpec;
use crate::work::WorkSpec;

/// Segments a traced fragment's steps are cut into (fewer when it has fewer steps).
pub const TRACE_SEGMENTS: u32 = 4;

/// Fragments with fewer samples are not traced: revealing a checkpoint costs about as much as
/// replaying 200 samples (both scale with the parameter count), so below this a
/// whole-fragment replay is cheaper than a segment's.
pub const TRACE_MIN_SAMPLES: usize = 512;

/// What a node commits to about the steps behind a local-steps result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTrace {
    /// BLAKE3 of the parameters (f32 LE) at each interior segment boundary, in step order.
    pub checkpoints: Vec<Hash>,
    /// Each step's micro-batch loss, at the weights before that step.
    pub losses: Vec<f32>,
}

impl StepTrace {
    /// The hash the result commitment binds: checkpoints, then losses (f32 LE).
    pub fn digest(&self) -> Hash {
        let mut bytes = Vec::with_capacity(self.checkpoints.len() * 32 + self.losses.len() * 4);
        for checkpoint in &self.checkpoints {
            bytes.extend_from_slice(checkpoint.as_bytes());
        }
        for loss in &self.losses {
            bytes.extend_from_slice(&loss.to_le_bytes());
        }
        Hash::of_parts(&[b"corex-step-trace", &bytes])
    }

    /// The fragment's loss as the local steps report it: the mean of the step losses, summed
    /// in f64 in step order.
    pub fn mean_loss(&self) -> f32 {
        mean_step_loss(&self.losses)
    }
}

/// The mean of `losses` summed in f64 in order, as local steps report a fragment's loss.
pub fn mean_step_loss(losses: &[f32]) -> f32 {
    let sum: f64 = losses.iter().map(|&loss| f64::from(loss)).sum();
    (sum / losses.len().max(1) as f64) as f32
}

/// The commitment of a traced result: the plain result commitment bound to the trace.
pub fn traced_commitment(result_commitment: &Hash, trace: &StepTrace) -> Hash {
    Hash::of_parts(&[
        b"corex-traced-result",
        result_commitment.as_bytes(),
        trace.digest().as_bytes(),
    ])
}

/// The segment boundaries `b_0 = 0 < b_1 < … < b_S = K` of a fragment of `samples` samples of
/// `work`, or `None` when its results carry no trace: work other than local steps, an inner
/// optimizer with state (a segment could not be replayed from its checkpoint alone), a single
/// step, or a fragment under [`TRACE_MIN_SAMPLES`].
pub fn segment_bounds(work: &WorkSpec, samples: usize) -> Option<Vec<u32>> {
    let WorkSpec::LocalSteps { steps, inner } = work else {
        return None;
    };
    let stateless = matches!(inner, OptimizerSpec::Sgd { momentum, .. } if *momentum == 0.0);
    if !stateless || *steps < 2 || samples < TRACE_MIN_SAMPLES {
        return None;
    }
    let segments = (*steps).min(TRACE_SEGMENTS);
    Some(
        (0..=segments)
            .map(|segment| (u64::from(segment) * u64::from(*steps) / u64::from(segments)) as u32)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_steps(steps: u32, momentum: f64) -> WorkSpec {
        WorkSpec::LocalSteps {
            steps,
            inner: OptimizerSpec::Sgd {
                learning_rate: 0.1,
                momentum,
            },
        }
    }

    #[test]
    fn bounds_cut_the_steps_into_segments() {
        assert_eq!(
            segment_bounds(&local_steps(16, 0.0), 2048),
            Some(vec![0, 4, 8, 12, 16])
        );
        assert_eq!(
            segment_bounds(&local_steps(6, 0.0), 2048),
            Some(vec![0, 1, 3, 4, 6])
        );
        assert_eq!(
            segment_bounds(&local_steps(3, 0.0), 2048),
            Some(vec![0, 1, 2, 3])
        );
    }

    #[test]
    fn untraceable_work_has_no_bounds() {
        assert_eq!(segment_bounds(&local_steps(16, 0.9), 2048), None);
        assert_eq!(segment_bounds(&local_steps(1, 0.0), 2048), None);
        assert_eq!(segment_bounds(&local_steps(16, 0.0), 511), None);
        assert_eq!(segment_bounds(&WorkSpec::Gradient, 2048), None);
    }

    #[test]
    fn the_commitment_binds_every_part_of_the_trace() {
        let trace = StepTrace {
            checkpoints: vec![Hash::of(b"a"), Hash::of(b"b")],
            losses: vec![1.0, 2.0, 3.0],
        };
        let base = Hash::of(b"result");
        let mut other = trace.clone();
        other.losses[2] = 3.5;
        assert_ne!(
            traced_commitment(&base, &trace),
            traced_commitment(&base, &other)
        );
        other = trace.clone();
        other.checkpoints.swap(0, 1);
        assert_ne!(
            traced_commitment(&base, &trace),
            traced_commitment(&base, &other)
        );
        assert_eq!(trace.mean_loss(), 2.0);
    }
}
