//! Who may replay whose results: a node other than the audited one, proven by its own audits
//! (probation passed, no failure), live, and on different hardware (another device
//! fingerprint) unless the coordinator runs with shared hardware allowed (a devnet, whose
//! nodes all share one machine, says so when it starts).

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

    /// Whether any registered node may replay a result of `submitter` now.
    pub fn any_for(&self, verifier: &Verifier, submitter: &NodeId) -> bool {
        self.nodes
            .keys()
            .any(|auditor| self.may_replay(verifier, auditor, submitter))
    }
}
