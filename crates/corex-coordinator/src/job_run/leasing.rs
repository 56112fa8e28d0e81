//! Handing out a round's work: fragments (with adaptive granularity by an earliest-finish
//! plan; when fragments are scarce, to higher-priority waiting nodes first), audit tasks while
//! the round is audited, straggler copies near the round's end, and lease expiry.
//!
//! Within a round of adaptive granularity a node takes what a list schedule of the pending
//! fragments over the working nodes gives it ([`corex_scheduler::earliest_finish_pick`]), and
//! an audit task only if no free eligible node would replay it sooner; when it is left
//! nothing this way, it asks again in [`DEFERRED_RETRY_MS`].
//!
//! A straggler is a holder that has overrun the time its measured speed predicts for its
//! fragment (see [`straggler_due_ms`]); any node at least as fast may then take a copy, and
//! the first valid result wins. With adaptive granularity a node at least twice as fast may
//! copy earlier, so that its copy lands when the holder is expected done
//! ([`speculative_copy_due_ms`]). Where speeds are unknown, a fragment out 1.5× the round's
//! median fragment time is a straggler. A node with nothing to do learns when the next copy
//! falls due for it ([`JobRun::next_copy_ms`]), so its lease request can wait exactly that long.

use corex_scheduler::{Worker, earliest_finish_pick, speculative_copy_due_ms, straggler_due_ms};

use super::*;

/// A node expected free longer ago than this no longer counts for the earliest-finish rule; a
/// waiting node asks again at least every 500 ms, which keeps it counted.
const COMPETING_WINDOW_MS: u64 = 1_000;

/// After this many target times in a round's computing or audit phase, a node takes the
/// cheapest open work whatever the earliest-finish plan says.
const PATIENCE_TARGETS: u64 = 4;

/// When a node was left nothing because other nodes would finish the pending fragments
/// sooner, it asks again this soon: those nodes are about to take them, and what is left may
/// then be its.
pub const DEFERRED_RETRY_MS: u64 = 20;

/// What a job has for a node that asks for work.
#[derive(Debug)]
pub enum JobLease {
    /// A fragment or audit task, and how long the lease runs.
    Granted(Fragment, u64),
    /// Nothing now, only because other working nodes would finish the open work sooner: ask
    /// again in [`DEFERRED_RETRY_MS`].
    Deferred,
    /// Nothing for this node.
    Nothing,
}

impl JobRun {
    /// Leases `node` a fragment of the current round, or while the round is audited an audit
    /// task it may take. With adaptive granularity and a known speed the earliest-finish plan
    /// decides, and after [`PATIENCE_TARGETS`] target times in the phase the node takes the
    /// cheapest open work whatever the plan says (so the round never waits on a node that does
    /// not come). Otherwise a node takes the first pending fragment, and only while more are
    /// pending than the `ahead` nodes of higher priority waiting now (see
    /// [`corex_scheduler::WaitingNodes`]).
    pub fn lease(
        &mut self,
        node: NodeId,
        now_ms: u64,
        ahead: usize,
        verifier: &Verifier,
        auditors: &Auditors<'_>,
    ) -> JobLease {
        let granularity = self.spec.granularity;
        let lease_ms = self.spec.lease_ms;
        let federated = self.spec.federated.is_some();
        let Some(round) = self.round.as_mut() else {
            return JobLease::Nothing;
        };
        let (adaptive_speed, patience_ms) = match granularity {
            Granularity::Adaptive { target_ms } => {
                (auditors.speed_of(&node), PATIENCE_TARGETS * target_ms)
            }
            Granularity::Fixed => (None, 0),
        };
        if let Some(auditing) = round.auditing.as_mut() {
            let patient = now_ms < auditing.began_ms + patience_ms;
            let planned_speed = adaptive_speed.filter(|_| patient);
            return lease_audit_task(
                auditing,
                node,
                granularity,
                planned_speed,
                lease_ms,
                verifier,
                auditors,
            );
        }
        let plan = adaptive_speed.map(|mflops| {
            let patient = now_ms < round.opened_ms + patience_ms;
            let others: Vec<Worker> = competitors(&node, verifier, auditors)
                .into_iter()
                .map(|(_, worker)| worker)
                .collect();
            let pending = round
                .leases
                .pending_indices()
                .map(|index| (index, round.fragments[index].cost_flops / 1_000_000));
            if patient {
                earliest_finish_pick(pending, mflops, &others, now_ms)
            } else {
                pending
                    .min_by_key(|&(index, cost)| (cost, index))
                    .map(|(index, _)| index)
            }
        });
        // Without a plan, scarce work goes to the higher-priority nodes waiting now; a node's
        // own lease is always its own, and a federated fragment has only one possible holder.
        let pending = round.leases.pending();
        if plan.is_none()
            && !federated
            && (1..=ahead).contains(&pending)
            && !round.leases.holds(&node, now_ms)
        {
            return JobLease::Nothing;
        }
        let fragments = &round.fragments;
        let rank = |index: usize| {
            may_hold(fragments[index].holder, &node).then_some(())?;
            match plan {
                Some(picked) => (picked == Some(index)).then_some(0),
                None => Some(index as u64),
            }
        };
        let lease = match round.leases.lease_by(node, now_ms, lease_ms, rank) {
            Some(lease) => lease,
            None if plan.is_some() && pending > 0 => return JobLease::Deferred,
            // A federated fragment has no copies: only its holder has the data.
            None if federated => return JobLease::Nothing,
            None => {
                let Some((index, due_ms)) = next_straggler(round, &node, granularity, auditors)
                else {
                    return JobLease::Nothing;
                };
                match (due_ms <= now_ms)
                    .then(|| round.leases.copy_straggler(index, node, now_ms, lease_ms))
                    .flatten()
                {
                    Some(lease) => lease,
                    None => return JobLease::Nothing,
                }
            }
        };
        round.first_lease_ms.get_or_insert(now_ms);
        if lease.reissued {
            self.reissued += 1;
        }
        let Some(fragment) = round.fragments.get(lease.index as usize) else {
            return JobLease::Nothing;
        };
        tracing::debug!(
            round = fragment.round,
            index = lease.index,
            node = %node.short(),
            samples = fragment.indices.len(),
            copy = lease.reissued,
            planned = plan.is_some(),
            since_open_ms = now_ms.saturating_sub(round.opened_ms),
            "fragment leased"
        );
        JobLease::Granted(fragment.clone(), lease.deadline_ms.saturating_sub(now_ms))
    }

    /// When `node`, which has nothing to do now, may take a copy of a straggler's fragment
    /// (see [`lease`](Self::lease)); `None` when no copy is in sight for it.
    pub fn next_copy_ms(&self, node: &NodeId, auditors: &Auditors<'_>) -> Option<u64> {
        let round = self.round.as_ref()?;
        if self.spec.federated.is_some() || round.auditing.is_some() {
            return None;
        }
        next_straggler(round, node, self.spec.granularity, auditors).map(|(_, due_ms)| due_ms)
    }

    /// Returns expired leases to the pool; the fragments freed and who had held them.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(Hash, NodeId)> {
        let Some(round) = self.round.as_mut() else {
            return Vec::new();
        };
        if let Some(auditing) = round.auditing.as_mut() {
            let mut freed = Vec::new();
            for task in &mut auditing.tasks {
                if let Some((holder, deadline)) = task.holder
                    && task.replay.is_none()
                    && deadline <= now_ms
                {
                    task.holder = None;
                    freed.push((task.fragment.id, holder));
                }
            }
            // An abandoned audit task goes to another node, or to the coordinator at the
            // round's close: re-issued like an abandoned fragment.
            self.reissued += freed.len() as u64;
            return freed;
        }
        round
            .leases
            .expire(now_ms)
            .into_iter()
            .filter_map(|(index, node)| Some((round.fragments.get(index as usize)?.id, node)))
            .collect()
    }
}

/// An audit task of `auditing` for `node`: one it fits and may replay. With `planned_speed`
/// (the node's, under the earliest-finish plan), only one that no free eligible node would
/// replay sooner.
fn lease_audit_task(
    auditing: &mut Auditing,
    node: NodeId,
    granularity: Granularity,
    planned_speed: Option<u64>,
    lease_ms: u64,
    verifier: &Verifier,
    auditors: &Auditors<'_>,
) -> JobLease {
    let idle = match planned_speed {
        Some(_) => competitors(&node, verifier, auditors),
        None => Vec::new(),
    };
    let first_to_replay = |task: &AuditTask| {
        let Some(mflops) = planned_speed else {
            return true;
        };
        let others: Vec<Worker> = idle
            .iter()
            .filter(|(other, _)| {
                auditors.replays_in_time(granularity, &task.fragment, other)
                    && auditors.may_replay(verifier, other, &task.submitter)
            })
            .map(|(_, worker)| *worker)
            .collect();
        let cost = task.fragment.cost_flops / 1_000_000;
        earliest_finish_pick([(0, cost)], mflops, &others, auditors.now_ms).is_some()
    };
    let mut open = auditing
        .tasks
        .iter_mut()
        .filter(|task| {
            task.replay.is_none()
                && task.holder.is_none()
                && auditors.replays_in_time(granularity, &task.fragment, &node)
                && auditors.may_replay(verifier, &node, &task.submitter)
        })
        .peekable();
    if open.peek().is_none() {
        return JobLease::Nothing;
    }
    match open.find(|task| first_to_replay(task)) {
        Some(task) => {
            task.holder = Some((node, auditors.now_ms + lease_ms));
            JobLease::Granted(task.fragment.clone(), lease_ms)
        }
        None => JobLease::Deferred,
    }
}

/// The other nodes as the earliest-finish rule sees them, each with a known speed and not
/// banned, free when [`Auditors::free_times`] says: when it was last left without work or
/// delivered a result, or when the work it was last given (a piece of this round, or work
/// elsewhere) is expected done; a node expected free now that is late counts as free now
/// (most are only a little late, and [`PATIENCE_TARGETS`] bounds the wait on one that is
/// stuck). A node expected free more than [`COMPETING_WINDOW_MS`] ago does not count: it has
/// gone, or is busy far beyond what its speed predicts.
fn competitors(
    node: &NodeId,
    verifier: &Verifier,
    auditors: &Auditors<'_>,
) -> Vec<(NodeId, Worker)> {
    let now_ms = auditors.now_ms;
    auditors
        .free_times()
        .filter(|(other, available_ms)| {
            *other != node
                && available_ms + COMPETING_WINDOW_MS >= now_ms
                && !verifier.is_banned(other)
        })
        .filter_map(|(other, available_ms)| {
            let worker = Worker {
                mflops: auditors.speed_of(other)?,
                free_at_ms: available_ms.max(now_ms),
            };
            Some((*other, worker))
        })
        .collect()
}

/// The straggler's fragment `node` could copy soonest in `round`, and from when: by measured
/// speeds where the holder's and `node`'s are known, else once it has been out 1.5× the
/// round's median fragment time so far.
fn next_straggler(
    round: &RoundState,
    node: &NodeId,
    granularity: Granularity,
    auditors: &Auditors<'_>,
) -> Option<(u32, u64)> {
    let mut elapsed: Vec<u64> = round
        .results
        .iter()
        .flatten()
        .map(|result| result.elapsed_ms)
        .collect();
    elapsed.sort_unstable();
    let typical_ms = elapsed.get(elapsed.len() / 2).copied();
    let copier_mflops = auditors.speed_of(node);
    round
        .leases
        .next_straggler(node, |index, holder, since_ms| {
            match (auditors.speed_of(holder), copier_mflops) {
                (Some(holder_mflops), Some(copier_mflops)) => {
                    let cost = round.fragments[index].cost_flops;
                    let overrun = straggler_due_ms(cost, since_ms, holder_mflops, copier_mflops);
                    let speculate = matches!(granularity, Granularity::Adaptive { .. });
                    let early = speculate
                        .then(|| {
                            speculative_copy_due_ms(cost, since_ms, holder_mflops, copier_mflops)
                        })
                        .flatten();
                    overrun.into_iter().chain(early).min()
                }
                _ => typical_ms.map(|typical| since_ms + typical.max(1) * 3 / 2),
            }
        })
}
