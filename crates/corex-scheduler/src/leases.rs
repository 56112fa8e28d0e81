//! Fragment leases for one round: who holds which fragment until when.
//!
//! Each fragment slot is pending, leased, or done. A leased slot has a holder and, near the
//! round's end, possibly a second one: when nothing is pending, a free node may take a copy of
//! a fragment whose holder has overrun the time it was expected to take (a straggler's; see
//! [`straggler_due_ms`]), or early when the copier is much faster
//! ([`speculative_copy_due_ms`]), and the first valid result wins; the other holder's result
//! is then refused as already done (not paid). A node asking again
//! while it holds a lease gets the same fragment back (a restarted node resumes), an expired
//! lease drops its holder (the fragment is pending again once no holder is left), and only a
//! holder of a live lease may complete a fragment. Time comes in as milliseconds; nothing here
//! reads a clock.

use corex_core::NodeId;
use thiserror::Error;

use crate::balance::duration_ms;

/// Most nodes holding one fragment at once: its first holder and one straggler copy.
const MAX_HOLDERS: usize = 2;

/// A holder becomes a straggler once it has had its fragment this many percent of the time
/// its measured speed predicts...
pub const STRAGGLER_SLACK_PERCENT: u64 = 150;
/// ...plus this long, for the transfers around the computation.
pub const STRAGGLER_GRACE_MS: u64 = 50;
/// A copier at least this many times as fast as the holder copies early (speculatively).
pub const SPECULATIVE_SPEEDUP: u64 = 2;

/// From when a copy of a fragment of `cost_flops`, held since `since_ms` by a node of
/// `holder_mflops`, may go to a node of `copier_mflops`: once the holder has overrun its
/// expected time by [`STRAGGLER_SLACK_PERCENT`] and [`STRAGGLER_GRACE_MS`], and only to a copier
/// at least as fast as the holder (a slower copy would most likely finish later still).
pub fn straggler_due_ms(
    cost_flops: u64,
    since_ms: u64,
    holder_mflops: u64,
    copier_mflops: u64,
) -> Option<u64> {
    if copier_mflops < holder_mflops {
        return None;
    }
    let expected_ms = duration_ms(cost_flops / 1_000_000, holder_mflops);
    Some(since_ms + expected_ms * STRAGGLER_SLACK_PERCENT / 100 + STRAGGLER_GRACE_MS)
}

/// From when a copier [`SPECULATIVE_SPEEDUP`] times as fast as the holder or more may copy the
/// fragment speculatively (see [`straggler_due_ms`] for the arguments): from when its copy,
/// with [`STRAGGLER_GRACE_MS`] for the transfers, would land when the holder is expected done.
/// A fragment is then done by about its expected time whenever a strong node is free,
/// whatever the holder's luck, and a holder on time still wins. `None` for a slower copier.
/// Meant for nodes of really different speeds (adaptive granularity), not for the noise
/// between alike ones.
pub fn speculative_copy_due_ms(
    cost_flops: u64,
    since_ms: u64,
    holder_mflops: u64,
    copier_mflops: u64,
) -> Option<u64> {
    if copier_mflops < holder_mflops.saturating_mul(SPECULATIVE_SPEEDUP) {
        return None;
    }
    let expected_ms = duration_ms(cost_flops / 1_000_000, holder_mflops);
    let copy_ms = duration_ms(cost_flops / 1_000_000, copier_mflops) + STRAGGLER_GRACE_MS;
    Some(since_ms + expected_ms.saturating_sub(copy_ms))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    node: NodeId,
    since_ms: u64,
    deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Pending,
    /// One or two holders, the first holder first.
    Leased(Vec<Holder>),
    Done {
        node: NodeId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LeaseError {
    #[error("fragment {0} is not part of this round")]
    UnknownFragment(u32),
    #[error("fragment {index} is leased to node {holder}, not to the submitter")]
    LeasedToOther { index: u32, holder: String },
    #[error("fragment {0} is not leased to anyone (its lease expired or was never granted)")]
    NotLeased(u32),
    #[error("fragment {0} is already done")]
    AlreadyDone(u32),
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub index: u32,
    pub deadline_ms: u64,
    /// True when the fragment had been leased before (it expired, or this is a straggler copy).
    pub reissued: bool,
}

#[derive(Debug, Clone)]
pub struct LeaseBook {
    slots: Vec<Slot>,
    /// Whether each slot has ever been leased, to count re-issues.
    ever_leased: Vec<bool>,
}

impl LeaseBook {
    pub fn new(fragments: usize) -> Self {
        Self {
            slots: vec![Slot::Pending; fragments],
            ever_leased: vec![false; fragments],
        }
    }

    /// Grants `node` a fragment: the one it already holds, else the first pending one.
    pub fn lease(&mut self, node: NodeId, now_ms: u64, lease_ms: u64) -> Option<Lease> {
        self.lease_by(node, now_ms, lease_ms, |index| Some(index as u64))
    }

    /// Grants `node` a fragment: the one it already holds, else the pending one of lowest
    /// `rank(index)` (ties: lowest index), for example the one whose size best fits the node.
    /// A fragment ranked `None` is not for this node (a federated fragment of another data
    /// holder, say).
    pub fn lease_by(
        &mut self,
        node: NodeId,
        now_ms: u64,
        lease_ms: u64,
        rank: impl Fn(usize) -> Option<u64>,
    ) -> Option<Lease> {
        let deadline_ms = now_ms + lease_ms;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::Leased(holders) = slot
                && let Some(holder) = holders
                    .iter_mut()
                    .find(|h| h.node == node && h.deadline_ms > now_ms)
            {
                holder.deadline_ms = deadline_ms;
                return Some(Lease {
                    index: index as u32,
                    deadline_ms,
                    reissued: false,
                });
            }
        }
        let (_, index) = self
            .pending_indices()
            .filter_map(|index| Some((rank(index)?, index)))
            .min()?;
        self.slots[index] = Slot::Leased(vec![Holder {
            node,
            since_ms: now_ms,
            deadline_ms,
        }]);
        let reissued = std::mem::replace(&mut self.ever_leased[index], true);
        Some(Lease {
            index: index as u32,
            deadline_ms,
            reissued,
        })
    }

    /// The straggler `node` could copy soonest, with the time from which it may: among the
    /// fragments out with a single holder other than `node`, the one of earliest
    /// `due_ms(index, holder, since_ms)` (ties: lowest index; `None`: not for `node`). Nothing
    /// while any fragment is still pending.
    pub fn next_straggler(
        &self,
        node: &NodeId,
        due_ms: impl Fn(usize, &NodeId, u64) -> Option<u64>,
    ) -> Option<(u32, u64)> {
        if self.slots.contains(&Slot::Pending) {
            return None;
        }
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| match slot {
                Slot::Leased(holders)
                    if holders.len() < MAX_HOLDERS && holders.iter().all(|h| h.node != *node) =>
                {
                    let due = due_ms(index, &holders[0].node, holders[0].since_ms)?;
                    Some((due, index as u32))
                }
                _ => None,
            })
            .min()
            .map(|(due, index)| (index, due))
    }

    /// Gives `node` a copy of fragment `index` if it is out with a single holder other than
    /// `node` (see [`next_straggler`](Self::next_straggler)). The first valid result of the
    /// two wins.
    pub fn copy_straggler(
        &mut self,
        index: u32,
        node: NodeId,
        now_ms: u64,
        lease_ms: u64,
    ) -> Option<Lease> {
        let Slot::Leased(holders) = self.slots.get_mut(index as usize)? else {
            return None;
        };
        if holders.len() >= MAX_HOLDERS || holders.iter().any(|h| h.node == node) {
            return None;
        }
        let deadline_ms = now_ms + lease_ms;
        holders.push(Holder {
            node,
            since_ms: now_ms,
            deadline_ms,
        });
        Some(Lease {
            index,
            deadline_ms,
            reissued: true,
        })
    }

    /// The fragments waiting for a first holder.
    pub fn pending_indices(&self) -> impl Iterator<Item = usize> {
        (0..self.slots.len()).filter(|index| self.slots[*index] == Slot::Pending)
    }

    /// How many fragments wait for a first holder.
    pub fn pending(&self) -> usize {
        self.pending_indices().count()
    }

    /// Whether `node` holds a fragment under a lease still live at `now_ms`.
    pub fn holds(&self, node: &NodeId, now_ms: u64) -> bool {
        self.slots.iter().any(|slot| {
            matches!(slot, Slot::Leased(holders)
                if holders.iter().any(|h| h.node == *node && h.deadline_ms > now_ms))
        })
    }

    /// When `node`'s lease on fragment `index` was granted, if it holds one.
    pub fn leased_since(&self, index: u32, node: &NodeId) -> Option<u64> {
        match self.slots.get(index as usize)? {
            Slot::Leased(holders) => holders.iter().find(|h| h.node == *node).map(|h| h.since_ms),
            _ => None,
        }
    }

    /// Drops every holder whose deadline has passed; a fragment with no holder left is pending
    /// again. Yields `(index, node)` for each dropped holder.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(u32, NodeId)> {
        let mut expired = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::Leased(holders) = slot {
                holders.retain(|holder| {
                    let live = holder.deadline_ms > now_ms;
                    if !live {
                        expired.push((index as u32, holder.node));
                    }
                    live
                });
                if holders.is_empty() {
                    *slot = Slot::Pending;
                }
            }
        }
        expired
    }

    /// Checks that `node` may submit a result for fragment `index` now.
    pub fn check_submission(&self, index: u32, node: &NodeId) -> Result<(), LeaseError> {
        match self.slots.get(index as usize) {
            None => Err(LeaseError::UnknownFragment(index)),
            Some(Slot::Leased(holders)) if holders.iter().any(|h| h.node == *node) => Ok(()),
            Some(Slot::Leased(holders)) => Err(LeaseError::LeasedToOther {
                index,
                holder: holders.first().map(|h| h.node.short()).unwrap_or_default(),
            }),
            Some(Slot::Pending) => Err(LeaseError::NotLeased(index)),
            Some(Slot::Done { .. }) => Err(LeaseError::AlreadyDone(index)),
        }
    }

    /// Marks fragment `index` done by `node`, after [`check_submission`](Self::check_submission).
    pub fn complete(&mut self, index: u32, node: NodeId) -> Result<(), LeaseError> {
        self.check_submission(index, &node)?;
        self.slots[index as usize] = Slot::Done { node };
        Ok(())
    }

    /// Marks fragment `index` done by `node` without a lease: a result accepted before a
    /// coordinator restart, put back. Out of range, nothing changes.
    pub fn restore_done(&mut self, index: u32, node: NodeId) {
        if let Some(slot) = self.slots.get_mut(index as usize) {
            *slot = Slot::Done { node };
        }
    }

    /// Whether some fragment is held under a lease still live at `now_ms`.
    pub fn any_held(&self, now_ms: u64) -> bool {
        self.slots.iter().any(|slot| {
            matches!(slot, Slot::Leased(holders) if holders.iter().any(|h| h.deadline_ms > now_ms))
        })
    }

    /// How many fragments are done.
    pub fn done(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| matches!(slot, Slot::Done { .. }))
            .count()
    }

    /// Drops every fragment that is not done, for a round that closes without them; returns
    /// their positions in increasing order. The remaining fragments move down to fill the gaps.
    pub fn drop_unfinished(&mut self) -> Vec<usize> {
        let dropped: Vec<usize> = (0..self.slots.len())
            .filter(|&index| !matches!(self.slots[index], Slot::Done { .. }))
            .collect();
        for &index in dropped.iter().rev() {
            self.slots.remove(index);
            self.ever_leased.remove(index);
        }
        dropped
    }

    /// Drops the fragment at `index` (its only possible holder declined it); the fragments
    /// after it move down one place.
    pub fn drop_fragment(&mut self, index: usize) {
        if index < self.slots.len() {
            self.slots.remove(index);
            self.ever_leased.remove(index);
        }
    }

    pub fn is_complete(&self) -> bool {
        self.slots
            .iter()
            .all(|slot| matches!(slot, Slot::Done { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(byte: u8) -> NodeId {
        NodeId([byte; 32])
    }

    #[test]
    fn fragments_go_out_in_order_and_a_holder_gets_its_own_back() {
        let mut book = LeaseBook::new(2);
        assert_eq!(book.lease(node(1), 0, 100).map(|l| l.index), Some(0));
        assert_eq!(book.lease(node(2), 0, 100).map(|l| l.index), Some(1));
        assert_eq!(book.lease(node(1), 10, 100).map(|l| l.index), Some(0));
        assert_eq!(book.lease(node(3), 10, 100), None);
        assert_eq!(book.leased_since(0, &node(1)), Some(0));
        assert_eq!(book.pending(), 0);
        assert!(book.holds(&node(1), 99) && !book.holds(&node(1), 110));
        assert!(!book.holds(&node(3), 10));
    }

    #[test]
    fn an_expired_lease_is_reissued_and_the_old_holder_is_refused() {
        let mut book = LeaseBook::new(1);
        book.lease(node(1), 0, 100);
        assert!(book.expire(99).is_empty());
        assert_eq!(book.expire(100), vec![(0, node(1))]);
        assert_eq!(
            book.check_submission(0, &node(1)),
            Err(LeaseError::NotLeased(0))
        );
        let lease = book.lease(node(2), 100, 100).expect("pending again");
        assert!(lease.reissued);
        assert!(matches!(
            book.complete(0, node(1)),
            Err(LeaseError::LeasedToOther { .. })
        ));
        assert_eq!(book.complete(0, node(2)), Ok(()));
        assert!(book.is_complete());
        assert_eq!(book.complete(0, node(2)), Err(LeaseError::AlreadyDone(0)));
        assert_eq!(
            book.check_submission(7, &node(2)),
            Err(LeaseError::UnknownFragment(7))
        );
    }

    #[test]
    fn a_ranked_lease_takes_the_best_fitting_pending_fragment() {
        let mut book = LeaseBook::new(3);
        let sizes = [100u64, 400, 25];
        let fit = |wanted: u64| move |index: usize| Some(sizes[index].abs_diff(wanted));
        assert_eq!(
            book.lease_by(node(1), 0, 10, fit(30)).map(|l| l.index),
            Some(2)
        );
        assert_eq!(
            book.lease_by(node(2), 0, 10, fit(500)).map(|l| l.index),
            Some(1)
        );
        assert_eq!(
            book.lease_by(node(3), 0, 10, fit(500)).map(|l| l.index),
            Some(0)
        );
    }

    #[test]
    fn a_round_can_drop_what_is_not_done() {
        let mut book = LeaseBook::new(3);
        book.lease(node(1), 0, 10).unwrap();
        book.lease(node(2), 0, 10).unwrap();
        book.complete(1, node(2)).unwrap();
        assert!(book.any_held(5), "node 1 still holds fragment 0");
        assert!(!book.any_held(10), "its lease has expired");
        assert_eq!(book.done(), 1);
        assert_eq!(book.drop_unfinished(), vec![0, 2]);
        assert!(book.is_complete());
        assert_eq!(
            book.check_submission(0, &node(2)),
            Err(LeaseError::AlreadyDone(0))
        );
    }

    #[test]
    fn a_fragment_ranked_none_is_never_leased_to_that_node() {
        let mut book = LeaseBook::new(2);
        let only_first = |index: usize| (index == 0).then_some(0);
        assert_eq!(
            book.lease_by(node(1), 0, 10, only_first).map(|l| l.index),
            Some(0)
        );
        assert_eq!(book.lease_by(node(2), 0, 10, only_first), None);
        assert_eq!(book.lease(node(2), 0, 10).map(|l| l.index), Some(1));
    }

    #[test]
    fn a_straggler_is_due_after_its_expected_time_and_only_for_a_faster_copier() {
        // 3 GFLOP at 10 GFLOP/s is expected to take 300 ms.
        assert_eq!(
            straggler_due_ms(3_000_000_000, 1_000, 10_000, 10_000),
            Some(1_000 + 450 + STRAGGLER_GRACE_MS)
        );
        assert_eq!(
            straggler_due_ms(3_000_000_000, 1_000, 10_000, 40_000),
            Some(1_000 + 450 + STRAGGLER_GRACE_MS)
        );
        assert_eq!(straggler_due_ms(3_000_000_000, 1_000, 10_000, 9_999), None);
    }

    #[test]
    fn a_much_faster_copier_copies_so_that_its_copy_lands_when_the_holder_is_due() {
        // 3 GFLOP at 10 GFLOP/s is expected to take 300 ms; at 40 GFLOP/s the copy takes
        // 75 ms and lands at 1,300 ms.
        assert_eq!(
            speculative_copy_due_ms(3_000_000_000, 1_000, 10_000, 40_000),
            Some(1_000 + 300 - 75 - STRAGGLER_GRACE_MS)
        );
        assert_eq!(
            speculative_copy_due_ms(3_000_000_000, 1_000, 10_000, 19_999),
            None
        );
        // A copy that cannot land in time may start at once.
        assert_eq!(
            speculative_copy_due_ms(30_000_000, 1_000, 1_000, 1_000_000),
            Some(1_000)
        );
    }

    #[test]
    fn a_straggler_gets_one_copy_and_the_first_result_wins() {
        let mut book = LeaseBook::new(3);
        // Fragment 0 falls due at 1_000 after its lease, the others at 500.
        let due = |index: usize, _: &NodeId, since: u64| {
            Some(since + if index == 0 { 1_000 } else { 500 })
        };
        book.lease(node(1), 0, 10_000);
        book.lease(node(2), 50, 10_000);
        assert_eq!(
            book.next_straggler(&node(3), due),
            None,
            "a fragment is still pending"
        );
        book.lease(node(3), 60, 10_000);
        assert_eq!(book.next_straggler(&node(4), due), Some((1, 550)));
        assert_eq!(
            book.next_straggler(&node(2), due),
            Some((2, 560)),
            "never its own"
        );
        let none_for_fragment_1 = |index: usize, holder: &NodeId, since: u64| {
            (index != 1).then(|| due(index, holder, since)).flatten()
        };
        assert_eq!(
            book.next_straggler(&node(4), none_for_fragment_1),
            Some((2, 560))
        );
        let copy = book.copy_straggler(1, node(4), 600, 10_000).unwrap();
        assert_eq!((copy.index, copy.reissued), (1, true));
        assert_eq!(
            book.copy_straggler(1, node(5), 600, 10_000),
            None,
            "one copy each"
        );
        assert_eq!(
            book.copy_straggler(2, node(3), 600, 10_000),
            None,
            "its own"
        );
        assert_eq!(book.next_straggler(&node(5), due), Some((2, 560)));
        // The copy finishes first; the original holder's result is then refused.
        assert_eq!(book.complete(1, node(4)), Ok(()));
        assert_eq!(book.complete(1, node(2)), Err(LeaseError::AlreadyDone(1)));
        // A copy's holder keeps the fragment when the original holder's lease expires.
        let copy = book.copy_straggler(0, node(5), 700, 20_000).unwrap();
        assert_eq!(copy.index, 0);
        assert_eq!(book.expire(10_000), vec![(0, node(1))]);
        assert_eq!(book.check_submission(0, &node(5)), Ok(()));
    }
}
