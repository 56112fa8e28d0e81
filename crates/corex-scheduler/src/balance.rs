//! Load balancing across heterogeneous nodes, pure: waiting fragments sit in cost classes
//! (class `c` holds costs in `[2^c, 2^(c+1))` MFLOP). A node that asks for work gets the
//! fragment whose cost is closest to what it computes in the target time (its verified
//! speed × `target_ms`), so heavy fragments go to strong nodes and light ones to edge
//! devices and every fragment takes about the same wall time. When nothing is waiting, a free
//! node may take a copy of the in-flight fragment that is expected to finish last, if it would
//! finish it sooner: the first valid result wins and the copy that loses is not paid.
//!
//! Time comes in as an argument; the caller owns the clock, the network and the verdicts.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

/// Cost classes: class `c` holds fragments of `2^c ..= 2^(c+1) − 1` MFLOP.
const CLASSES: usize = 64;

/// A node takes fragments at most this many classes above its ideal one (at most 4× its
/// target time), unless no node seen so far could take them sooner. Measured with
/// `corex bench scheduler --churn-percent 0`: 1 finishes 1,000,000 fragments on 100,000
/// nodes in 1.13× the ideal time, 2 in 1.20×, 3 in 1.50×.
const STRETCH_CLASSES: usize = 1;

/// A fragment waiting for, or out at, a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub id: u64,
    pub cost_mflop: u64,
}

/// What the balancer decided for a node asking for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub ticket: Ticket,
    /// When the node is expected to finish, from its verified speed.
    pub expected_done_ms: u64,
    /// Whether this is a copy of a straggler's fragment.
    pub reissue: bool,
}

/// How a finished fragment counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// First valid result: it counts and is paid.
    First,
    /// Another copy finished first: this result is not paid.
    Late,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    ticket: Ticket,
    expected_done_ms: u64,
    copies: u8,
}

/// The waiting fragments, the in-flight ones, and the rule that matches them to nodes.
#[derive(Debug)]
pub struct Balancer {
    target_ms: u64,
    classes: Vec<VecDeque<Ticket>>,
    waiting: usize,
    /// Fragments out at nodes, by id.
    in_flight: HashMap<u64, InFlight>,
    /// In-flight fragments by expected finish, latest last (straggler candidates).
    by_finish: BTreeSet<(u64, u64)>,
    /// Fragments already finished (so a late copy is recognised).
    done: HashSet<u64>,
    /// The ideal class of the fastest node seen: fragments beyond its reach go to anyone.
    fastest_ideal: usize,
}

impl Balancer {
    /// A balancer aiming for fragments that take about `target_ms` on the node that gets them.
    pub fn new(target_ms: u64) -> Self {
        Self {
            target_ms: target_ms.max(1),
            classes: vec![VecDeque::new(); CLASSES],
            waiting: 0,
            in_flight: HashMap::new(),
            by_finish: BTreeSet::new(),
            done: HashSet::new(),
            fastest_ideal: 0,
        }
    }

    /// Queues fragments (in the order given within each cost class).
    pub fn add(&mut self, tickets: impl IntoIterator<Item = Ticket>) {
        for ticket in tickets {
            self.classes[class_of(ticket.cost_mflop)].push_back(ticket);
            self.waiting += 1;
        }
    }

    /// Fragments waiting for a node.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Fragments out at nodes.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Work for a node of verified speed `speed_mflops` (MFLOP/s) asking at `now_ms`: the
    /// waiting fragment closest in cost to `speed × target` (lighter ones first, heavier ones
    /// only up to 4× the target time, so that a slow node never holds up a round with work a
    /// fast one should do), or else a copy of the straggler expected to finish last when this
    /// node would beat it by a quarter of the target time.
    pub fn assign(&mut self, speed_mflops: u64, now_ms: u64) -> Option<Assignment> {
        let speed = speed_mflops.max(1);
        let ideal = class_of(speed.saturating_mul(self.target_ms) / 1_000);
        self.fastest_ideal = self.fastest_ideal.max(ideal);
        if let Some(ticket) = self.take_nearest(ideal) {
            let expected_done_ms = now_ms + duration_ms(ticket.cost_mflop, speed);
            self.in_flight.insert(
                ticket.id,
                InFlight {
                    ticket,
                    expected_done_ms,
                    copies: 1,
                },
            );
            self.by_finish.insert((expected_done_ms, ticket.id));
            return Some(Assignment {
                ticket,
                expected_done_ms,
                reissue: false,
            });
        }
        self.reissue(speed, now_ms)
    }

    fn reissue(&mut self, speed: u64, now_ms: u64) -> Option<Assignment> {
        let &(straggler_done_ms, id) = self.by_finish.last()?;
        let flight = *self.in_flight.get(&id)?;
        let expected_done_ms = now_ms + duration_ms(flight.ticket.cost_mflop, speed);
        if flight.copies > 1 || expected_done_ms + self.target_ms / 4 >= straggler_done_ms {
            return None;
        }
        self.by_finish.remove(&(straggler_done_ms, id));
        self.by_finish.insert((expected_done_ms, id));
        self.in_flight.insert(
            id,
            InFlight {
                expected_done_ms,
                copies: flight.copies + 1,
                ..flight
            },
        );
        Some(Assignment {
            ticket: flight.ticket,
            expected_done_ms,
            reissue: true,
        })
    }

    /// A node finished fragment `id`. The first result counts; any later copy does not.
    pub fn complete(&mut self, id: u64) -> Completion {
        if self.done.contains(&id) {
            return Completion::Late;
        }
        if let Some(flight) = self.in_flight.remove(&id) {
            self.by_finish.remove(&(flight.expected_done_ms, id));
        }
        self.done.insert(id);
        Completion::First
    }

    /// A node holding fragment `id` left or its lease expired: unless another copy is still
    /// out or it is already done, the fragment waits again, at the front of its class.
    pub fn fail(&mut self, id: u64) {
        if self.done.contains(&id) {
            return;
        }
        let Some(flight) = self.in_flight.get_mut(&id) else {
            return;
        };
        if flight.copies > 1 {
            flight.copies -= 1;
            return;
        }
        let flight = *flight;
        self.in_flight.remove(&id);
        self.by_finish.remove(&(flight.expected_done_ms, id));
        self.classes[class_of(flight.ticket.cost_mflop)].push_front(flight.ticket);
        self.waiting += 1;
    }

    /// The first waiting ticket in class `ideal`, else in the nearest non-empty class (below
    /// first: a lighter fragment finishes early rather than late) within reach: at most
    /// [`STRETCH_CLASSES`] above `ideal`, or any class beyond the fastest node's reach.
    fn take_nearest(&mut self, ideal: usize) -> Option<Ticket> {
        if self.waiting == 0 {
            return None;
        }
        let reach = ideal + STRETCH_CLASSES;
        let beyond_everyone = self.fastest_ideal + STRETCH_CLASSES;
        for distance in 0..CLASSES {
            for class in [ideal.checked_sub(distance), ideal.checked_add(distance)]
                .into_iter()
                .flatten()
                .filter(|class| *class < CLASSES && (*class <= reach || *class > beyond_everyone))
            {
                if let Some(ticket) = self.classes[class].pop_front() {
                    self.waiting -= 1;
                    return Some(ticket);
                }
            }
        }
        None
    }
}

/// The cost class of `cost_mflop`: `⌊log₂ cost⌋` (0 for costs of 0 or 1).
fn class_of(cost_mflop: u64) -> usize {
    (63 - cost_mflop.max(1).leading_zeros()) as usize
}

/// Milliseconds a node of `speed` MFLOP/s needs for `cost` MFLOP (at least 1).
pub fn duration_ms(cost_mflop: u64, speed_mflops: u64) -> u64 {
    (u128::from(cost_mflop) * 1_000 / u128::from(speed_mflops.max(1))).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tickets(costs: &[u64]) -> Vec<Ticket> {
        costs
            .iter()
            .map(|&cost_mflop| Ticket {
                id: cost_mflop,
                cost_mflop,
            })
            .collect()
    }

    #[test]
    fn heavy_fragments_go_to_strong_nodes_and_light_ones_to_edge_nodes() {
        let mut balancer = Balancer::new(1_000);
        balancer.add(tickets(&[10, 10_000, 100, 1_000_000]));
        // 1 TFLOP/s node: ideal 1,000,000 MFLOP per second.
        let strong = balancer.assign(1_000_000, 0).unwrap();
        assert_eq!(strong.ticket.cost_mflop, 1_000_000);
        assert_eq!(strong.expected_done_ms, 1_000);
        // 10 MFLOP/s edge device: ideal 10 MFLOP.
        let edge = balancer.assign(10, 0).unwrap();
        assert_eq!(edge.ticket.cost_mflop, 10);
        // Nor may it take the 100 MFLOP one: 10× its target time.
        assert!(balancer.assign(10, 0).is_none());
        let fast = balancer.assign(100, 0).unwrap();
        assert_eq!(fast.ticket.cost_mflop, 100);
        let medium = balancer.assign(10_000, 0).unwrap();
        assert_eq!(medium.ticket.cost_mflop, 10_000);
        assert_eq!(balancer.waiting(), 0);
    }

    #[test]
    fn a_failed_fragment_waits_again_and_a_straggler_is_copied_once() {
        let mut balancer = Balancer::new(1_000);
        balancer.add(tickets(&[1_000]));
        let slow = balancer.assign(100, 0).unwrap();
        assert_eq!(slow.expected_done_ms, 10_000);
        // Nothing waits; a fast node copies the straggler, a second fast one does not.
        let copy = balancer.assign(10_000, 100).unwrap();
        assert!(copy.reissue);
        assert_eq!(copy.ticket, slow.ticket);
        assert!(balancer.assign(10_000, 100).is_none());
        assert_eq!(balancer.complete(copy.ticket.id), Completion::First);
        assert_eq!(balancer.complete(slow.ticket.id), Completion::Late);
        assert_eq!(balancer.in_flight(), 0);

        balancer.add(tickets(&[5]));
        let held = balancer.assign(5, 0).unwrap();
        balancer.fail(held.ticket.id);
        assert_eq!(balancer.waiting(), 1);
        assert_eq!(balancer.assign(5, 0).unwrap().ticket, held.ticket);
    }

    #[test]
    fn a_node_no_faster_than_the_straggler_gets_nothing() {
        let mut balancer = Balancer::new(1_000);
        balancer.add(tickets(&[1_000]));
        balancer.assign(1_000, 0).unwrap();
        assert!(balancer.assign(1_000, 10).is_none());
    }
}
