//! Fragment leases for one round: who holds which fragment until when.
//!
//! Each fragment slot is pending, leased to one node until a deadline, or done. A node asking
//! again while it holds a lease gets the same fragment back (a restarted node resumes), an
//! expired lease returns its fragment to the pending pool, and only the holder of a live lease
//! may complete a fragment. Time comes in as milliseconds; nothing here reads a clock.

use corex_core::NodeId;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Pending,
    Leased { node: NodeId, deadline_ms: u64 },
    Done { node: NodeId },
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
    /// True when the fragment had been leased before and expired.
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
        if let Some(index) = self.slots.iter().position(|slot| {
            matches!(slot, Slot::Leased { node: holder, deadline_ms } if *holder == node && *deadline_ms > now_ms)
        }) {
            let deadline_ms = now_ms + lease_ms;
            self.slots[index] = Slot::Leased { node, deadline_ms };
            return Some(Lease { index: index as u32, deadline_ms, reissued: false });
        }
        let index = self.slots.iter().position(|slot| *slot == Slot::Pending)?;
        let deadline_ms = now_ms + lease_ms;
        self.slots[index] = Slot::Leased { node, deadline_ms };
        let reissued = std::mem::replace(&mut self.ever_leased[index], true);
        Some(Lease {
            index: index as u32,
            deadline_ms,
            reissued,
        })
    }

    /// Returns every lease whose deadline has passed to the pending pool; yields `(index, node)`.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(u32, NodeId)> {
        let mut expired = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::Leased { node, deadline_ms } = *slot
                && deadline_ms <= now_ms
            {
                *slot = Slot::Pending;
                expired.push((index as u32, node));
            }
        }
        expired
    }

    /// Checks that `node` may submit a result for fragment `index` now.
    pub fn check_submission(&self, index: u32, node: &NodeId) -> Result<(), LeaseError> {
        match self.slots.get(index as usize) {
            None => Err(LeaseError::UnknownFragment(index)),
            Some(Slot::Leased { node: holder, .. }) if holder == node => Ok(()),
            Some(Slot::Leased { node: holder, .. }) => Err(LeaseError::LeasedToOther {
                index,
                holder: holder.short(),
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
}
