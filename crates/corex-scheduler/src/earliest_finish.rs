//! Earliest-finish matching within a round, pure. A node asking for work takes what a list
//! schedule of the pending fragments gives it: costliest first, each to the working node that
//! would finish it first, counting each node's speed and when it will be free (now, or when
//! the fragment it holds is expected done, or when the plan's earlier fragments are).
//! Heavy fragments thus wait a moment for the strong node about to free up instead of going
//! to an edge device that would hold up the round, and the pieces a round was cut into go to
//! the nodes they were sized for, whichever asks first.
//!
//! Progress: among the nodes that ask, the one that would finish a fragment first takes it
//! when it asks (ties go to the asker). A fragment can wait only on a listed node that never
//! asks, so the caller lists only nodes that hold work in the round or are waiting for work
//! now, and stops following the plan after a patience limit.

use crate::balance::duration_ms;

/// A node that competes for a round's pending fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Worker {
    pub mflops: u64,
    /// When it will be free for a new fragment: now, or when its current one is expected done.
    pub free_at_ms: u64,
}

impl Worker {
    /// When this worker would finish a fragment of `cost_mflop` it took at its first chance.
    pub fn finish_ms(&self, cost_mflop: u64, now_ms: u64) -> u64 {
        self.free_at_ms.max(now_ms) + duration_ms(cost_mflop, self.mflops)
    }
}

/// Of the `pending` fragments (`(index, cost in MFLOP)`), the one a node of `mflops` asking at
/// `now_ms` should take, by list scheduling: costliest first, each fragment goes to whichever
/// worker (the asker or one of `others`) would finish it first, and that worker is then busy
/// until it has. The asker takes the first fragment this plan gives it (ties with another
/// worker go to the asker); `None` when the plan gives it nothing.
pub fn earliest_finish_pick(
    pending: impl IntoIterator<Item = (usize, u64)>,
    mflops: u64,
    others: &[Worker],
    now_ms: u64,
) -> Option<usize> {
    let mut pending: Vec<(usize, u64)> = pending.into_iter().collect();
    pending.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut others = others.to_vec();
    for (index, cost) in pending {
        let mine = now_ms + duration_ms(cost, mflops);
        let best_other = others
            .iter_mut()
            .map(|other| (other.finish_ms(cost, now_ms), other))
            .min_by_key(|(finish, _)| *finish);
        match best_other {
            Some((finish, other)) if finish < mine => other.free_at_ms = finish,
            _ => return Some(index),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: u64 = 50_000;
    const EDGE: u64 = 4_000;

    #[test]
    fn the_plan_counts_what_the_strong_node_already_has_to_do() {
        let fast_busy = [Worker {
            mflops: FAST,
            free_at_ms: 100,
        }];
        // A light piece alone: the fast node, free at 100 ms, is done at 110; the edge node
        // would need 125 ms.
        assert_eq!(earliest_finish_pick([(1, 500)], EDGE, &fast_busy, 0), None);
        // With a 10 GFLOP piece the fast node must do first (until 300 ms; 2.5 s on the edge
        // node), the light piece is the edge node's.
        let pending = [(0, 10_000), (1, 500)];
        assert_eq!(earliest_finish_pick(pending, EDGE, &fast_busy, 0), Some(1));
        // The fast node, asking, takes the heavy one.
        let edge_idle = [Worker {
            mflops: EDGE,
            free_at_ms: 0,
        }];
        assert_eq!(earliest_finish_pick(pending, FAST, &edge_idle, 0), Some(0));
    }

    #[test]
    fn a_round_cut_for_its_nodes_ends_near_the_ideal_whoever_asks_first() {
        // Two pieces per node, each 185 ms on the node it was sized for; the weakest asks
        // first. Every node asks whenever it is free, each millisecond.
        let speeds = [EDGE, 12_000, FAST];
        let costs = [740, 740, 2_220, 2_220, 9_250, 9_250];
        let mut pending: Vec<(usize, u64)> = costs.iter().copied().enumerate().collect();
        let mut free = [0u64; 3];
        let mut taken_by = [usize::MAX; 6];
        let mut now = 0;
        while !pending.is_empty() {
            for me in 0..speeds.len() {
                if free[me] > now {
                    continue;
                }
                let others: Vec<Worker> = (0..speeds.len())
                    .filter(|&other| other != me)
                    .map(|other| Worker {
                        mflops: speeds[other],
                        free_at_ms: free[other],
                    })
                    .collect();
                let picked =
                    earliest_finish_pick(pending.iter().copied(), speeds[me], &others, now);
                if let Some(index) = picked {
                    pending.retain(|(pending, _)| *pending != index);
                    free[me] = now + duration_ms(costs[index], speeds[me]);
                    taken_by[index] = me;
                }
            }
            now += 1;
        }
        assert_eq!(
            taken_by,
            [0, 0, 1, 1, 2, 2],
            "each piece to the node it was cut for"
        );
        let ideal_ms = costs.iter().sum::<u64>() * 1_000 / speeds.iter().sum::<u64>();
        let makespan_ms = free.into_iter().max().unwrap_or_default();
        assert!(
            makespan_ms <= ideal_ms + 2,
            "{makespan_ms} ms against {ideal_ms} ms"
        );
    }

    #[test]
    fn alone_a_node_takes_the_costliest_pending_fragment() {
        assert_eq!(
            earliest_finish_pick([(0, 5), (1, 9), (2, 9)], EDGE, &[], 7),
            Some(1)
        );
        assert_eq!(earliest_finish_pick([], EDGE, &[], 7), None);
    }

    #[test]
    fn every_fragment_has_a_node_that_takes_it() {
        // Whatever the workers, the one that finishes a fragment first is never refused it.
        let workers = [
            Worker {
                mflops: FAST,
                free_at_ms: 300,
            },
            Worker {
                mflops: 12_000,
                free_at_ms: 0,
            },
            Worker {
                mflops: EDGE,
                free_at_ms: 40,
            },
        ];
        for cost in [1, 100, 1_000, 10_000, 100_000] {
            // Each worker asks as soon as it is free.
            let takers = (0..workers.len())
                .filter(|&me| {
                    let others: Vec<Worker> = (0..workers.len())
                        .filter(|&other| other != me)
                        .map(|other| workers[other])
                        .collect();
                    let now = workers[me].free_at_ms;
                    earliest_finish_pick([(0, cost)], workers[me].mflops, &others, now).is_some()
                })
                .count();
            assert!(takers >= 1, "cost {cost}: nobody would take it");
        }
    }
}
