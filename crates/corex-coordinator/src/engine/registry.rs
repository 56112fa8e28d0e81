//! The node registry: one entry per node, the one home of everything the coordinator knows of
//! a node's standing apart from its audit record (the verifier's: audits passed and failed,
//! hence probation, audit rate and ban) and its ledger profile (the ledger's: reputation,
//! stake, slashes, removal). What the node registered with, the capability it proved, when
//! it was last seen, the speed its fragments show and its behaviour flag (`NodeInfo`, what the
//! API shows), its latest fragment timings, and when it is expected free for new work.

use std::collections::VecDeque;

use corex_core::messages::NodeInfo;

/// Timed fragments kept per node for the behaviour analysis.
const TIMED_FRAGMENTS_KEPT: usize = 16;

#[derive(Debug, Clone)]
pub struct Registered {
    pub info: NodeInfo,
    /// The node's latest timed fragments, `(cost MFLOP, ms from lease to result)`.
    timings: VecDeque<(u64, u64)>,
    /// When the node is expected free for new work: when it was last left without work or
    /// delivered a result, or when the work it was last given is expected done. None before
    /// its first lease.
    pub free_at_ms: Option<u64>,
}

impl Registered {
    pub fn new(info: NodeInfo) -> Self {
        Self {
            info,
            timings: VecDeque::new(),
            free_at_ms: None,
        }
    }

    /// Records a fragment's timing (the oldest of a full window goes); the window, oldest
    /// first.
    pub(super) fn time_fragment(&mut self, mflop: u64, elapsed_ms: u64) -> Vec<(u64, u64)> {
        if self.timings.len() == TIMED_FRAGMENTS_KEPT {
            self.timings.pop_front();
        }
        self.timings.push_back((mflop, elapsed_ms));
        self.timings.iter().copied().collect()
    }
}
