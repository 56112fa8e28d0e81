//! The discrete-event loop: nodes ask for work when they join and whenever they finish, compute
//! at their true speed, and with probability `churn_ppm` leave in the middle of a fragment
//! (its lease fails and it waits again), coming back after `rejoin_ms`. The run ends when every
//! fragment has a first result.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use corex_scheduler::{Balancer, Completion, Ticket, duration_ms};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::policy::{Fifo, Policy, Scheduler};
use crate::population::{Population, SpeedClass};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    pub nodes: u32,
    pub fragments: u32,
    /// Nodes join over this window at the start.
    pub join_window_ms: u64,
    /// Chance, per assignment, that the node leaves before finishing (parts per million).
    pub churn_ppm: u32,
    /// How long a node that left stays away.
    pub rejoin_ms: u64,
    /// How long a node that got no work waits before asking again.
    pub poll_ms: u64,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 100_000,
            fragments: 1_000_000,
            join_window_ms: 1_000,
            churn_ppm: 20_000,
            rejoin_ms: 30_000,
            poll_ms: 2_000,
            seed: 7,
        }
    }
}

/// What a simulation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// Fragments handed out (first copies and straggler copies).
    pub assignments: u64,
    pub reissues: u64,
    /// Results that came after another copy's (not paid).
    pub late_results: u64,
    /// Fragments whose node left before finishing.
    pub failures: u64,
    /// When the last fragment got its first result.
    pub makespan_ms: u64,
    /// Total work over the nodes' total true speed: the makespan of a perfect split with
    /// every node present from the start and none leaving.
    pub ideal_ms: u64,
    /// Total variation distance between each node's share of the work done and its share of
    /// the capacity it offered while present: 0 is perfectly fair, 1 is as unfair as can be.
    pub fairness_tv: f64,
    /// Per speed class: share of the work done, share of the capacity offered.
    pub class_shares: Vec<(SpeedClass, f64, f64)>,
}

/// A scheduled event: (time, sequence, node, kind, fragment); the sequence keeps ties in
/// insertion order, so runs are deterministic.
type Event = Reverse<(u64, u64, u32, u8, u64)>;

const ASK: u8 = 0;
const DONE: u8 = 1;
const FAIL: u8 = 2;

/// Runs `population`'s fragments on its nodes under `policy`.
pub fn simulate(config: &SimConfig, population: &Population, policy: Policy) -> SimReport {
    match policy {
        Policy::Balanced { target_ms } => run(config, population, Balancer::new(target_ms)),
        Policy::Fifo => run(config, population, Fifo::default()),
    }
}

fn run(config: &SimConfig, population: &Population, mut scheduler: impl Scheduler) -> SimReport {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5151);
    scheduler.add(
        population
            .fragment_costs
            .iter()
            .enumerate()
            .map(|(id, &cost_mflop)| Ticket {
                id: id as u64,
                cost_mflop,
            })
            .collect(),
    );
    let nodes = &population.nodes;
    let total = population.fragment_costs.len() as u64;
    let mut events: BinaryHeap<Event> = BinaryHeap::new();
    let mut sequence = 0u64;
    let mut push = |events: &mut BinaryHeap<_>, time: u64, node: u32, kind: u8, id: u64| {
        sequence += 1;
        events.push(Reverse((time, sequence, node, kind, id)));
    };
    for (index, node) in nodes.iter().enumerate() {
        push(&mut events, node.joins_ms, index as u32, ASK, 0);
    }
    // Nodes that got nothing and wait for a failed fragment to come back.
    let mut parked: Vec<u32> = Vec::new();
    let mut work = vec![0u128; nodes.len()];
    let mut away_ms = vec![0u64; nodes.len()];
    let (mut assignments, mut reissues, mut late_results, mut failures) = (0u64, 0u64, 0, 0);
    let (mut finished, mut makespan_ms) = (0u64, 0u64);
    while let Some(Reverse((now, _, node, kind, id))) = events.pop() {
        let index = node as usize;
        match kind {
            ASK => {
                let Some(assignment) = scheduler.assign(nodes[index].verified_mflops, now) else {
                    if scheduler.idle_nodes_poll() {
                        push(&mut events, now + config.poll_ms, node, ASK, 0);
                    } else {
                        parked.push(node);
                    }
                    continue;
                };
                assignments += 1;
                reissues += u64::from(assignment.reissue);
                let cost = assignment.ticket.cost_mflop;
                let takes = duration_ms(cost, nodes[index].true_mflops);
                if rng.random_range(0..1_000_000) < config.churn_ppm {
                    let leaves = now + rng.random_range(0..takes);
                    push(&mut events, leaves, node, FAIL, assignment.ticket.id);
                } else {
                    push(&mut events, now + takes, node, DONE, assignment.ticket.id);
                }
            }
            DONE => {
                match scheduler.complete(id) {
                    Completion::First => {
                        work[index] += u128::from(population.fragment_costs[id as usize]);
                        finished += 1;
                        makespan_ms = now;
                    }
                    Completion::Late => late_results += 1,
                }
                if finished == total {
                    break;
                }
                push(&mut events, now, node, ASK, 0);
            }
            _ => {
                scheduler.fail(id);
                failures += 1;
                for waiting in parked.drain(..) {
                    push(&mut events, now, waiting, ASK, 0);
                }
                away_ms[index] += config.rejoin_ms;
                push(&mut events, now + config.rejoin_ms, node, ASK, 0);
            }
        }
    }
    report(
        population,
        &work,
        &away_ms,
        makespan_ms,
        (assignments, reissues, late_results, failures),
    )
}

fn report(
    population: &Population,
    work: &[u128],
    away_ms: &[u64],
    makespan_ms: u64,
    (assignments, reissues, late_results, failures): (u64, u64, u64, u64),
) -> SimReport {
    let nodes = &population.nodes;
    let capacity: Vec<f64> = nodes
        .iter()
        .zip(away_ms)
        .map(|(node, away)| {
            let present = makespan_ms
                .saturating_sub(node.joins_ms)
                .saturating_sub(*away);
            node.true_mflops as f64 * present as f64
        })
        .collect();
    let total_capacity: f64 = capacity.iter().sum::<f64>().max(1.0);
    let total_work = work.iter().sum::<u128>().max(1) as f64;
    let fairness_tv = 0.5
        * work
            .iter()
            .zip(&capacity)
            .map(|(w, c)| (*w as f64 / total_work - c / total_capacity).abs())
            .sum::<f64>();
    let class_shares = [
        SpeedClass::Edge,
        SpeedClass::Cpu,
        SpeedClass::Gpu,
        SpeedClass::Hpc,
    ]
    .into_iter()
    .map(|class| {
        let in_class = |i: &usize| nodes[*i].class == class;
        let done: f64 = (0..nodes.len())
            .filter(in_class)
            .map(|i| work[i] as f64)
            .sum();
        let offered: f64 = (0..nodes.len()).filter(in_class).map(|i| capacity[i]).sum();
        (class, done / total_work, offered / total_capacity)
    })
    .collect();
    let total_speed: u128 = nodes.iter().map(|n| u128::from(n.true_mflops)).sum();
    let all_work: u128 = population
        .fragment_costs
        .iter()
        .map(|&c| u128::from(c))
        .sum();
    SimReport {
        assignments,
        reissues,
        late_results,
        failures,
        makespan_ms,
        ideal_ms: (all_work * 1_000 / total_speed.max(1)) as u64,
        fairness_tv,
        class_shares,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> (SimConfig, Population) {
        let config = SimConfig {
            nodes: 2_000,
            fragments: 20_000,
            ..SimConfig::default()
        };
        let population = Population::draw(config.nodes, config.fragments, 1_000, config.seed);
        (config, population)
    }

    #[test]
    fn a_simulation_is_a_pure_function_of_its_config() {
        let (config, population) = small();
        let policy = Policy::Balanced { target_ms: 2_000 };
        assert_eq!(
            simulate(&config, &population, policy),
            simulate(&config, &population, policy)
        );
    }

    #[test]
    fn the_balancer_finishes_sooner_and_fairer_than_first_come_first_served() {
        let (config, population) = small();
        let balanced = simulate(&config, &population, Policy::Balanced { target_ms: 2_000 });
        let fifo = simulate(&config, &population, Policy::Fifo);
        assert!(
            balanced.makespan_ms < fifo.makespan_ms,
            "{balanced:?}\n{fifo:?}"
        );
        assert!(
            balanced.fairness_tv < fifo.fairness_tv,
            "{balanced:?}\n{fifo:?}"
        );
        assert!(balanced.failures > 0, "churn happened");
        assert!(balanced.assignments >= u64::from(config.fragments));
    }
}
