//! Lease order among nodes waiting for work at once. Each lease request, for as long as its
//! long poll lasts, stands in a queue with its node's task priority ([`TierPolicy::priority`]:
//! the tier its verified speed earns once online time, ledger reputation or stake trust it,
//! then reputation raised by stake, then online time); a node takes a pending fragment only
//! while more are pending than nodes of higher priority wait (see [`WaitingNodes`]).

use std::sync::Mutex;

use corex_core::NodeId;
use corex_core::messages::NodeInfo;
use corex_ledger::BASE_UNITS_PER_CXT;
use corex_scheduler::{Standing, TierPolicy, WaitingNodes, verified_speed};

use crate::ledger::LedgerService;
use crate::server::lock;

/// The lease requests waiting now, with their nodes' priorities.
#[derive(Debug, Default)]
pub struct LeaseQueue {
    waiting: Mutex<WaitingNodes>,
}

/// A request's place in the [`LeaseQueue`]; leaving the scope leaves the queue.
pub struct InQueue<'a> {
    queue: &'a LeaseQueue,
    node: NodeId,
    priority: u64,
}

impl LeaseQueue {
    pub fn enter(&self, node: NodeId, priority: u64) -> InQueue<'_> {
        lock(&self.waiting).enter(node, priority);
        InQueue {
            queue: self,
            node,
            priority,
        }
    }
}

impl LeaseQueue {
    /// Lease requests waiting for work now.
    pub fn requests(&self) -> usize {
        lock(&self.waiting).requests()
    }
}

impl InQueue<'_> {
    /// How many nodes of higher priority wait now.
    pub fn ahead(&self) -> usize {
        lock(&self.queue.waiting).ahead_of(&self.node, self.priority)
    }
}

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        lock(&self.queue.waiting).leave(&self.node);
    }
}

/// `node`'s task priority from what the node registry (`info`) and the ledger know.
pub fn priority_of(node: &NodeId, info: Option<&NodeInfo>, ledger: &LedgerService) -> u64 {
    let state = ledger.chain().state();
    let standing = Standing {
        verified_mflops: info.map_or(0, |info| {
            let challenge = info
                .capability
                .as_ref()
                .map_or(0, |capability| capability.demonstrated_mflops);
            verified_speed(challenge, info.observed_mflops)
        }),
        online_ms: info.map_or(0, |info| {
            info.last_seen_ms.saturating_sub(info.registered_ms)
        }),
        reputation: state.nodes.get(node).map_or(0, |profile| profile.score),
        stake_cxt: state.account(node).map_or(0, |account| {
            u64::try_from(account.stake / BASE_UNITS_PER_CXT).unwrap_or(u64::MAX)
        }),
    };
    TierPolicy::default().priority(&standing)
}
