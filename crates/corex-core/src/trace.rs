//! Step traces of local-steps fragments: what a node commits to beside its result so that an
//! audit can replay part of the fragment's steps instead of all of them.
//!
//! A traced fragment of `K` local steps is cut into `S = min(K, TRACE_SEGMENTS)` segments at
//! the steps `b_i = ⌊i·K/S⌋`. With its result the node commits to its parameters at every
//! interior boundary (`b_1 … b_{S−1}`), each as the root of a Merkle tree over leaves of
//! [`LEAF_VALUES`](crate::feedback_state::LEAF_VALUES) values ([`checkpoint_root`], the layout of `crate::feedback_state`), and to
//! each step's loss. The parameters at `b_0` are the round's model version and those at `b_S`
//! are `w_start − result` (in f32, computed by whoever checks), so the chain is pinned at both
//! ends. An audit draws one segment `i` after the commitment and replays, by [`TraceAudit`]:
//!
//! - **a segment** (stateless inner optimizer: SGD without momentum, updates sent whole,
//!   fragments of at least [`TRACE_MIN_SAMPLES`]): steps `[b_i, b_{i+1})` from the revealed checkpoint at `b_i`,
//!   compared with the revealed checkpoint at `b_{i+1}`. A stateless step needs nothing but the
//!   weights, so a segment replays from its first checkpoint alone: `1/S` of the compute, and
//!   one or two whole checkpoints moved.
//! - **a prefix** (inner optimizer with state: Adam, momentum; or compressed updates, whose
//!   point is bytes): steps `[0, b_{i+1})` from the
//!   round's model with a fresh inner optimizer, exactly as the node began, so no optimizer
//!   state is revealed; compared on a seeded sample of leaves of the checkpoint at `b_{i+1}`
//!   that the node opens with their Merkle paths (the last prefix is the whole fragment,
//!   compared with the result). `(S+1)/(2S)` of the compute on average (62.5 % at `S = 4`),
//!   a few kilobytes moved, at any fragment size.
//!
//! What this buys and what it does not: a node that skipped work must fake every checkpoint
//! after the first step it skipped, and an audit picks the segment after the commitment, so
//! skipping a fraction `f` of the steps is caught with probability at least `f` per audit
//! (a segment audit: exactly `f`; a prefix audit catches any skip that lies inside the prefix,
//! `1` for a skip at the start), as a whole-fragment replay would for a node skipping `f` of its
//! fragments. A node that does all the work but bends the end (poisoning rather than saving
//! effort) is caught with probability `1/S` per audit; its update also has to pass the
//! consistency screening, which forces a whole-fragment replay. A prefix audit compares only
//! the opened leaves of an interior checkpoint: a checkpoint wrong in a few coordinates passes
//! unless they are opened, but the work after it must then start from the wrong values, and the
//! result is compared whole when the last prefix is drawn.

use serde::{Deserialize, Serialize};

use crate::compression::CompressionSpec;
use crate::feedback_state::state_root;
use crate::hash::Hash;
use crate::spec::OptimizerSpec;
use crate::work::WorkSpec;

/// Segments a traced fragment's steps are cut into (fewer when it has fewer steps).
pub const TRACE_SEGMENTS: u32 = 4;

/// Fragments of a stateless inner optimizer with fewer samples are not traced: revealing a
/// checkpoint whole costs about as much as replaying 200 samples (both scale with the
/// parameter count), so below this a whole-fragment replay is cheaper than a segment's.
/// Prefix audits reveal a few leaves only and have no such floor.
pub const TRACE_MIN_SAMPLES: usize = 512;

/// Leaves of an interior checkpoint a prefix audit opens: 2,048 values (8 KB) at
/// [`LEAF_VALUES`](crate::feedback_state::LEAF_VALUES). A node that skipped steps fakes a checkpoint that is wrong almost
/// everywhere, which any leaf shows; more leaves would cost the compressed job's upload ratio
/// more than they add (at 4 leaves a reveal, 8 KB and 4 paths, is two thirds of the
/// language-model job's 13.8 KB compressed result).
pub const PREFIX_OPENED_LEAVES: usize = 4;

/// What a node commits to about the steps behind a local-steps result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTrace {
    /// [`checkpoint_root`] of the parameters at each interior segment boundary, in step order.
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

/// The commitment to the parameters at a step boundary: the Merkle root over leaves of
/// [`LEAF_VALUES`](crate::feedback_state::LEAF_VALUES) values (`crate::feedback_state`), so that a prefix audit can open a few
/// leaves instead of the whole checkpoint.
pub fn checkpoint_root(parameters: &[f32]) -> Hash {
    state_root(parameters)
}

/// How an audit replays part of a traced fragment (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceAudit {
    /// One segment, from its revealed first checkpoint: a stateless inner optimizer.
    Segment,
    /// The steps up to a segment's end, from the round's model and a fresh inner optimizer:
    /// an inner optimizer with state.
    Prefix,
}

impl TraceAudit {
    /// How the traced results of a job doing `work`, its updates sent under `compression`,
    /// are audited (`None`: work other than local steps). Segments need no more than the
    /// weights but reveal whole checkpoints; a job that compresses its updates to save bytes
    /// is audited by prefixes, which reveal a few kilobytes, whatever its inner optimizer.
    pub fn of(work: &WorkSpec, compression: &CompressionSpec) -> Option<Self> {
        let WorkSpec::LocalSteps { inner, .. } = work else {
            return None;
        };
        let stateless = matches!(inner, OptimizerSpec::Sgd { momentum, .. } if *momentum == 0.0);
        Some(match stateless && compression.is_none() {
            true => Self::Segment,
            false => Self::Prefix,
        })
    }

    /// The steps an audit that drew segment `drawn` (below `bounds.len() − 1`) replays.
    pub fn steps(self, bounds: &[u32], drawn: usize) -> std::ops::Range<u32> {
        match self {
            Self::Segment => bounds[drawn]..bounds[drawn + 1],
            Self::Prefix => 0..bounds[drawn + 1],
        }
    }
}

/// The segment boundaries `b_0 = 0 < b_1 < … < b_S = K` of a fragment of `samples` samples of
/// `work` (its updates sent under `compression`), or `None` when its results carry no trace:
/// work other than local steps, a single step, or a fragment under [`TRACE_MIN_SAMPLES`]
/// audited by segments.
pub fn segment_bounds(
    work: &WorkSpec,
    compression: &CompressionSpec,
    samples: usize,
) -> Option<Vec<u32>> {
    let WorkSpec::LocalSteps { steps, .. } = work else {
        return None;
    };
    let small = TraceAudit::of(work, compression) == Some(TraceAudit::Segment)
        && samples < TRACE_MIN_SAMPLES;
    if *steps < 2 || small {
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

    const WHOLE: CompressionSpec = CompressionSpec::None;

    fn adam_steps(steps: u32) -> WorkSpec {
        WorkSpec::LocalSteps {
            steps,
            inner: OptimizerSpec::Adam {
                learning_rate: 0.003,
                beta_1: 0.9,
                beta_2: 0.99,
                epsilon: 1e-8,
            },
        }
    }

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
            segment_bounds(&local_steps(16, 0.0), &WHOLE, 2048),
            Some(vec![0, 4, 8, 12, 16])
        );
        assert_eq!(
            segment_bounds(&local_steps(6, 0.0), &WHOLE, 2048),
            Some(vec![0, 1, 3, 4, 6])
        );
        assert_eq!(
            segment_bounds(&local_steps(3, 0.0), &WHOLE, 2048),
            Some(vec![0, 1, 2, 3])
        );
    }

    #[test]
    fn stateful_inner_optimizers_are_audited_by_prefixes_at_any_size() {
        for work in [adam_steps(8), local_steps(8, 0.9)] {
            assert_eq!(TraceAudit::of(&work, &WHOLE), Some(TraceAudit::Prefix));
            let bounds = segment_bounds(&work, &WHOLE, 16).unwrap();
            assert_eq!(bounds, vec![0, 2, 4, 6, 8]);
            let prefixes: Vec<_> = (0..4)
                .map(|i| TraceAudit::Prefix.steps(&bounds, i))
                .collect();
            assert_eq!(prefixes, vec![0..2, 0..4, 0..6, 0..8]);
        }
        assert_eq!(
            TraceAudit::of(&local_steps(8, 0.0), &WHOLE),
            Some(TraceAudit::Segment)
        );
        // Compressed updates are audited by prefixes: no whole checkpoint goes up.
        let compressed = CompressionSpec::TopK {
            chunk: 4096,
            k: 64,
            bits: 2,
            feedback_decay: 1.0,
        };
        assert_eq!(
            TraceAudit::of(&local_steps(8, 0.0), &compressed),
            Some(TraceAudit::Prefix)
        );
        assert!(segment_bounds(&local_steps(8, 0.0), &compressed, 16).is_some());
        assert_eq!(TraceAudit::Segment.steps(&[0, 2, 4, 6, 8], 2), 4..6);
        assert_eq!(TraceAudit::of(&WorkSpec::Gradient, &WHOLE), None);
    }

    #[test]
    fn untraceable_work_has_no_bounds() {
        assert_eq!(segment_bounds(&adam_steps(1), &WHOLE, 2048), None);
        assert_eq!(segment_bounds(&local_steps(1, 0.0), &WHOLE, 2048), None);
        assert_eq!(segment_bounds(&local_steps(16, 0.0), &WHOLE, 511), None);
        assert_eq!(segment_bounds(&WorkSpec::Gradient, &WHOLE, 2048), None);
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
