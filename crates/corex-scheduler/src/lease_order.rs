//! Lease order among nodes that wait for work at the same time, pure.
//!
//! Nodes ask for work with a long poll; when a round opens they all wake at once, and without
//! an order the fastest round trip would win. Each waiting node carries its task priority
//! ([`TierPolicy::priority`](crate::TierPolicy::priority): tier, then reputation raised by stake,
//! then online time). A node may take one of the pending fragments only while there are more
//! of them than waiting nodes of strictly higher priority: when work is scarce, it goes to the
//! strongest, most trusted nodes first, and nodes of equal priority are served as they come.

use std::collections::BTreeMap;

use corex_core::NodeId;

/// The nodes waiting for work now, each with its priority and how many of its requests wait.
#[derive(Debug, Clone, Default)]
pub struct WaitingNodes {
    nodes: BTreeMap<NodeId, (u64, usize)>,
}

impl WaitingNodes {
    /// `node` starts waiting with `priority` (a node's latest priority counts).
    pub fn enter(&mut self, node: NodeId, priority: u64) {
        let entry = self.nodes.entry(node).or_insert((priority, 0));
        *entry = (priority, entry.1 + 1);
    }

    /// Lease requests waiting now, over every node.
    pub fn requests(&self) -> usize {
        self.nodes.values().map(|(_, requests)| requests).sum()
    }

    /// One of `node`'s requests stops waiting.
    pub fn leave(&mut self, node: &NodeId) {
        if let Some(entry) = self.nodes.get_mut(node) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                self.nodes.remove(node);
            }
        }
    }

    /// How many other waiting nodes come strictly before a node of `priority`: it may take a
    /// pending fragment only when more than this many are pending.
    pub fn ahead_of(&self, node: &NodeId, priority: u64) -> usize {
        self.nodes
            .iter()
            .filter(|(other, (theirs, _))| *other != node && *theirs > priority)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(byte: u8) -> NodeId {
        NodeId([byte; 32])
    }

    #[test]
    fn only_strictly_higher_priorities_wait_ahead() {
        let mut waiting = WaitingNodes::default();
        waiting.enter(node(1), 50);
        waiting.enter(node(2), 10);
        waiting.enter(node(3), 50);
        assert_eq!(waiting.ahead_of(&node(2), 10), 2);
        assert_eq!(
            waiting.ahead_of(&node(1), 50),
            0,
            "equals are served as they come"
        );
        assert_eq!(waiting.ahead_of(&node(4), 60), 0);
        waiting.leave(&node(1));
        assert_eq!(waiting.ahead_of(&node(2), 10), 1);
    }

    #[test]
    fn a_node_waits_until_its_last_request_leaves() {
        let mut waiting = WaitingNodes::default();
        waiting.enter(node(1), 50);
        waiting.enter(node(1), 70);
        waiting.leave(&node(1));
        assert_eq!(waiting.ahead_of(&node(2), 60), 1, "still waiting, at 70");
        waiting.leave(&node(1));
        waiting.leave(&node(1));
        assert_eq!(waiting.ahead_of(&node(2), 0), 0);
    }
}
