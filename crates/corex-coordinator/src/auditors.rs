//! The registry view of a round's decisions: who may replay whose results (a node other than
//! the audited one, proven by its own audits, live, and on different hardware unless the
//! coordinator runs with shared hardware allowed, as a devnet does), and the speed each node
//! is credited with, which sizes fragments under adaptive granularity, and which audits are
//! better replayed by the coordinator itself.

use std::collections::BTreeMap;

use corex_core::messages::NodeInfo;
use corex_core::{Fragment, Granularity, NodeId};

use crate::engine::Registered;
use crate::verification::Verifier;

/// A node not heard from for this long is not handed audit work.
const LIVE_WINDOW_MS: u64 = 30_000;

/// The registry view the audit rule needs, borrowed from the engine.
pub struct Auditors<'a> {
    /// The node registry (with when each node is expected free for new work).
    pub nodes: &'a BTreeMap<NodeId, Registered>,
    pub now_ms: u64,
    pub shared_hardware: bool,
    /// The coordinator's own replay speed (MFLOP/s), when it has measured it.
    pub coordinator_mflops: Option<u64>,
}

impl Auditors<'_> {
    /// Whether `auditor` may replay a result of `submitter`.
    pub fn may_replay(&self, verifier: &Verifier, auditor: &NodeId, submitter: &NodeId) -> bool {
        if auditor == submitter || !verifier.may_audit(auditor) || verifier.is_banned(auditor) {
            return false;
        }
        let (Some(auditor), Some(submitter)) = (self.info(auditor), self.info(submitter)) else {
            return false;
        };
        let live = self.now_ms.saturating_sub(auditor.last_seen_ms) <= LIVE_WINDOW_MS;
        live && (self.shared_hardware || auditor.device.fingerprint != submitter.device.fingerprint)
    }

    /// The speed `node` is credited with (MFLOP/s): what its fragments show, or before they
    /// show anything, what its capability challenge showed.
    pub fn speed_of(&self, node: &NodeId) -> Option<u64> {
        credited_speed(self.info(node)?)
    }

    fn info(&self, node: &NodeId) -> Option<&NodeInfo> {
        self.nodes.get(node).map(|registered| &registered.info)
    }

    /// The nodes that have been given work or delivered some, with when each is expected
    /// free for more.
    pub fn free_times(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.nodes
            .iter()
            .filter_map(|(node, registered)| Some((node, registered.free_at_ms?)))
    }

    /// Whether `auditor` may take `fragment` as an audit task. With adaptive granularity only
    /// if it replays it within the target time, so that a slow node never holds up a round's
    /// close, and at least half as fast as the coordinator would, which otherwise replays it
    /// itself when the round's node audits are in (as it does an audit no live node fits).
    pub fn replays_in_time(
        &self,
        granularity: Granularity,
        fragment: &Fragment,
        auditor: &NodeId,
    ) -> bool {
        match (granularity, self.speed_of(auditor)) {
            (Granularity::Adaptive { target_ms }, Some(speed)) => {
                let in_time = u128::from(fragment.cost_flops)
                    <= u128::from(speed) * 1_000 * u128::from(target_ms);
                in_time
                    && self
                        .coordinator_mflops
                        .is_none_or(|coordinator| speed.saturating_mul(2) >= coordinator)
            }
            (Granularity::Adaptive { .. }, None) => false,
            (Granularity::Fixed, _) => true,
        }
    }

    /// Speeds of the live nodes (see [`speed_of`](Self::speed_of)), in registry order.
    pub fn live_speeds(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, registered)| {
                self.now_ms.saturating_sub(registered.info.last_seen_ms) <= LIVE_WINDOW_MS
            })
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

/// The speed a node is credited with (MFLOP/s): what its fragments show, or before they show
/// anything, what its capability challenge showed.
pub fn credited_speed(info: &NodeInfo) -> Option<u64> {
    info.observed_mflops
        .or_else(|| info.capability.as_ref().map(|c| c.demonstrated_mflops))
}

#[cfg(test)]
mod tests {
    use corex_core::messages::DeviceReport;
    use corex_core::{FragmentKind, Hash};

    use super::*;

    fn node_of(mflops: u64) -> NodeInfo {
        NodeInfo {
            device: DeviceReport {
                hostname: "host".into(),
                os: "linux".into(),
                cpu_model: "cpu".into(),
                logical_cores: 1,
                memory_bytes: 1 << 30,
                gpus: Vec::new(),
                compute_threads: 1,
                agent_version: "test".into(),
                claimed_gflops: None,
                fingerprint: Hash::default(),
                benchmark: None,
                backend: corex_core::ComputeBackend::Cpu,
                adapter: None,
            },
            registered_ms: 0,
            last_seen_ms: 0,
            capability: None,
            endpoint: String::new(),
            observed_mflops: Some(mflops),
            behaviour_flag: None,
        }
    }

    #[test]
    fn an_audit_goes_to_a_node_in_time_and_at_least_half_as_fast_as_the_coordinator() {
        let (slow, medium, fast) = (NodeId([1; 32]), NodeId([2; 32]), NodeId([3; 32]));
        let nodes = BTreeMap::from([
            (slow, Registered::new(node_of(4_000))),
            (medium, Registered::new(node_of(20_000))),
            (fast, Registered::new(node_of(60_000))),
        ]);
        let fragment = Fragment {
            id: Hash::default(),
            job: Hash::default(),
            round: 0,
            index: 0,
            model: Hash::default(),
            kind: FragmentKind::LocalSteps,
            indices: Vec::new(),
            // 2 GFLOP: 500 ms on the slow node, 100 ms on the medium one.
            cost_flops: 2_000_000_000,
            holder: None,
            steps: None,
        };
        let adaptive = Granularity::Adaptive { target_ms: 150 };
        let mut auditors = Auditors {
            nodes: &nodes,
            now_ms: 0,
            shared_hardware: true,
            coordinator_mflops: None,
        };
        let fits = |auditors: &Auditors<'_>, node: &NodeId| {
            auditors.replays_in_time(adaptive, &fragment, node)
        };
        assert!(!fits(&auditors, &slow), "past the target time");
        assert!(fits(&auditors, &medium) && fits(&auditors, &fast));
        auditors.coordinator_mflops = Some(50_000);
        assert!(
            !fits(&auditors, &medium),
            "less than half the coordinator's speed"
        );
        assert!(fits(&auditors, &fast));
        assert!(auditors.replays_in_time(Granularity::Fixed, &fragment, &slow));
    }
}
