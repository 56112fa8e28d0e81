//! The schedulers the simulation compares, behind one trait.

use std::collections::{HashMap, VecDeque};

use corex_scheduler::{Assignment, Balancer, Completion, Ticket, duration_ms};

/// What the event loop asks of a scheduler.
pub trait Scheduler {
    fn add(&mut self, tickets: Vec<Ticket>);
    /// Work for a node of verified speed `speed_mflops` asking at `now_ms`.
    fn assign(&mut self, speed_mflops: u64, now_ms: u64) -> Option<Assignment>;
    fn complete(&mut self, id: u64) -> Completion;
    fn fail(&mut self, id: u64);
    /// Whether a node that got nothing may get work later without any fragment failing
    /// (straggler copies, fragments waiting for a faster node): then idle nodes keep asking.
    fn idle_nodes_poll(&self) -> bool;
}

/// Which scheduler a simulation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Corex's balancer: fragments sized to each node, straggler copies at the end.
    Balanced { target_ms: u64 },
    /// The baseline: one queue, first come first served, blind to speed.
    Fifo,
}

impl Scheduler for Balancer {
    fn add(&mut self, tickets: Vec<Ticket>) {
        Balancer::add(self, tickets);
    }
    fn assign(&mut self, speed_mflops: u64, now_ms: u64) -> Option<Assignment> {
        Balancer::assign(self, speed_mflops, now_ms)
    }
    fn complete(&mut self, id: u64) -> Completion {
        Balancer::complete(self, id)
    }
    fn fail(&mut self, id: u64) {
        Balancer::fail(self, id);
    }
    fn idle_nodes_poll(&self) -> bool {
        true
    }
}

/// First come, first served: the next fragment in line to whoever asks.
#[derive(Debug, Default)]
pub struct Fifo {
    queue: VecDeque<Ticket>,
    out: HashMap<u64, Ticket>,
}

impl Scheduler for Fifo {
    fn add(&mut self, tickets: Vec<Ticket>) {
        self.queue.extend(tickets);
    }
    fn assign(&mut self, speed_mflops: u64, now_ms: u64) -> Option<Assignment> {
        let ticket = self.queue.pop_front()?;
        self.out.insert(ticket.id, ticket);
        Some(Assignment {
            ticket,
            expected_done_ms: now_ms + duration_ms(ticket.cost_mflop, speed_mflops),
            reissue: false,
        })
    }
    fn complete(&mut self, id: u64) -> Completion {
        self.out.remove(&id);
        Completion::First
    }
    fn fail(&mut self, id: u64) {
        if let Some(ticket) = self.out.remove(&id) {
            self.queue.push_front(ticket);
        }
    }
    fn idle_nodes_poll(&self) -> bool {
        false
    }
}
