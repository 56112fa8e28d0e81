//! The simulation's virtual time: happenings ordered by (time, order of scheduling), so a run
//! is a pure function of its seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

pub(super) struct Agenda<T> {
    due: BinaryHeap<Reverse<(u64, u64)>>,
    items: BTreeMap<u64, T>,
    scheduled: u64,
}

impl<T> Agenda<T> {
    pub(super) fn new() -> Self {
        Self {
            due: BinaryHeap::new(),
            items: BTreeMap::new(),
            scheduled: 0,
        }
    }

    pub(super) fn at(&mut self, time_ms: u64, item: T) {
        let order = self.scheduled;
        self.scheduled += 1;
        self.due.push(Reverse((time_ms, order)));
        self.items.insert(order, item);
    }

    /// The next happening and its time.
    pub(super) fn next(&mut self) -> Option<(u64, T)> {
        let Reverse((time_ms, order)) = self.due.pop()?;
        let item = self.items.remove(&order)?;
        Some((time_ms, item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happenings_come_in_time_order_then_in_the_order_they_were_scheduled() {
        let mut agenda = Agenda::new();
        agenda.at(5, "c");
        agenda.at(1, "a");
        agenda.at(5, "d");
        agenda.at(1, "b");
        let order: Vec<_> = std::iter::from_fn(|| agenda.next()).collect();
        assert_eq!(order, [(1, "a"), (1, "b"), (5, "c"), (5, "d")]);
        assert!(agenda.next().is_none());
    }
}
