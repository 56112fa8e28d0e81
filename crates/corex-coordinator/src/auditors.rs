//! The registry view of a round's decisions: who may replay whose results (a node other than
//! the audited one, proven by its own audits, live, and on different hardware unless the
//! coordinator runs with shared hardware allowed, as a devnet does), and the speed each node
//! is credited with, which sizes fragments under adaptive granularity.

use std::collections::BTreeMap;

use corex_core::NodeId;
use corex_core::messages::NodeInfo;

use crate::verification::Verifier;

/// A node not heard from for this long is not handed audit work.
const LIVE_WINDOW_MS: u64 = 30_000;

/// The registry view the audit rule needs, borrowed from the engine.
pub struct Auditors<'a> {
    pub nodes: &'a BTreeMap<NodeId, NodeInfo>,
    pub now_ms: u64,
    pub shared_hardware: bool,
}

impl Auditors<'_> {
    /// Whether `auditor` may replay a result of `submitter`.
    pub fn may_replay(&self, verifier: &Verifier, auditor: &NodeId, submitter: &NodeId) -> bool {
        if auditor == submitter || !verifier.may_audit(auditor) || verifier.is_banned(auditor) {
            return false;
        }
        let (Some(auditor), Some(submitter)) = (self.nodes.get(auditor), self.nodes.get(submitter))
        else {
            return false;
        };
        let live = self.now_ms.saturating_sub(auditor.last_seen_ms) <= LIVE_WINDOW_MS;
        live && (self.shared_hardware || auditor.device.fingerprint != submitter.device.fingerprint)
    }

    /// The speed `node` is credited with (MFLOP/s): what its fragments show, or before they
    /// show anything, what its capability challenge showed.
    pub fn speed_of(&self, node: &NodeId) -> Option<u64> {
        let info = self.nodes.get(node)?;
        info.observed_mflops
            .or_else(|| info.capability.as_ref().map(|c| c.demonstrated_mflops))
    }

    /// Speeds of the live nodes (see [`speed_of`](Self::speed_of)), in registry order.
    pub fn live_speeds(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, info)| self.now_ms.saturating_sub(info.last_seen_ms) <= LIVE_WINDOW_MS)
            .filter_map(|(node, _)| self.speed_of(node))
            .collect()
    }

    /// Whether any registered node that `fits` may replay a result of `submitter` now.
    pub fn any_for(
        &self,
        verifier: &Verifier,
        submitter: &NodeId,
        fits: impl Fn(&NodeId) -> bool,
    ) -> bool {
        self.nodes
            .keys()
            .any(|auditor| fits(auditor) && self.may_replay(verifier, auditor, submitter))
    }
}
