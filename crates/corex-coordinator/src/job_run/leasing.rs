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

use corex_scheduler::{
    Worker, duration_ms, earliest_finish_pick, speculative_copy_due_ms, straggler_due_ms,
};

use super::*;

/// A node that asked for work this recently counts as free now for the earliest-finish rule;
/// idle nodes ask again at least every 500 ms.
const COMPETING_WINDOW_MS: u64 = 1_000;

/// When a node was left nothing because other nodes would finish the pending fragments
/// sooner, it asks again this soon: those nodes are about to take them, and what is left may
/// then be its.
pub const DEFERRED_RETRY_MS: u64 = 20;

impl JobRun {
    /// Leases a fragment of the current round to `node`, if one is free and fewer are pending
    /// than the `ahead` nodes of higher priority waiting now (see [`corex_scheduler::WaitingNodes`]);
    /// while the round is being audited, an audit task `node` may take.
    pub fn lease(
        &mut self,
        node: NodeId,
        now_ms: u64,
        ahead: usize,
        verifier: &Verifier,
        auditors: &Auditors<'_>,
    ) -> Option<(Fragment, u64)> {
        let granularity = self.spec.granularity;
        let fits = |fragment: &Fragment| auditors.replays_in_time(granularity, fragment, &node);
        let federated = self.spec.federated.is_some();
        let round = self.round.as_mut()?;
        let adaptive_speed = match granularity {
            Granularity::Adaptive { .. } => auditors.speed_of(&node),
            Granularity::Fixed => None,
        };
        if let Some(auditing) = round.auditing.as_mut() {
            // With adaptive granularity, a task goes to the free eligible node that replays it
            // first; the others ask again soon for what is left.
            let busy: Vec<NodeId> = auditing
                .tasks
                .iter()
                .filter(|task| task.replay.is_none())
                .filter_map(|task| task.holder.map(|(holder, _)| holder))
                .collect();
            let idle = adaptive_speed
                .map(|_| competitors(None, &node, verifier, auditors))
                .unwrap_or_default();
            let first_to_replay = |task: &AuditTask| {
                let Some(mflops) = adaptive_speed else {
                    return true;
                };
                let others: Vec<Worker> = idle
                    .iter()
                    .filter(|(other, _)| {
                        !busy.contains(other)
                            && auditors.replays_in_time(granularity, &task.fragment, other)
                            && auditors.may_replay(verifier, other, &task.submitter)
                    })
                    .map(|(_, worker)| *worker)
                    .collect();
                let cost = task.fragment.cost_flops / 1_000_000;
                earliest_finish_pick([(0, cost)], mflops, &others, now_ms).is_some()
            };
            let task = auditing.tasks.iter_mut().find(|task| {
                task.replay.is_none()
                    && task.holder.is_none()
                    && fits(&task.fragment)
                    && auditors.may_replay(verifier, &node, &task.submitter)
                    && first_to_replay(task)
            })?;
            let deadline = now_ms + self.spec.lease_ms;
            task.holder = Some((node, deadline));
            return Some((task.fragment.clone(), self.spec.lease_ms));
        }
        // Scarce work goes to the higher-priority nodes waiting now; a node's own lease is
        // always its own, and a federated fragment has only one possible holder anyway.
        let pending = round.leases.pending();
        if !federated && (1..=ahead).contains(&pending) && !round.leases.holds(&node, now_ms) {
            return None;
        }
        // With adaptive granularity and a known speed, the costliest pending fragment no
        // other working node would finish sooner (it may be none); otherwise the first.
        let pick = adaptive_speed.map(|mflops| {
            let others: Vec<Worker> = competitors(Some(round), &node, verifier, auditors)
                .into_iter()
                .map(|(_, worker)| worker)
                .collect();
            earliest_finish_pick(
                round
                    .leases
                    .pending_indices()
                    .map(|index| (index, round.fragments[index].cost_flops / 1_000_000)),
                mflops,
                &others,
                now_ms,
            )
        });
        let fragments = &round.fragments;
        let rank = |index: usize| {
            may_hold(fragments[index].holder, &node).then_some(())?;
            match pick {
                Some(picked) => (picked == Some(index)).then_some(0),
                None => Some(index as u64),
            }
        };
        let lease = match round
            .leases
            .lease_by(node, now_ms, self.spec.lease_ms, rank)
        {
            Some(lease) => lease,
            // A federated fragment has no copies: only its holder has the data.
            None if federated => return None,
            None => {
                let (index, due_ms) =
                    next_straggler(round, &node, adaptive_speed.is_some(), auditors)?;
                if due_ms > now_ms {
                    return None;
                }
                round
                    .leases
                    .copy_straggler(index, node, now_ms, self.spec.lease_ms)?
            }
        };
        round.first_lease_ms.get_or_insert(now_ms);
        if lease.reissued {
            self.reissued += 1;
        }
        let fragment = round.fragments.get(lease.index as usize)?.clone();
        Some((fragment, lease.deadline_ms.saturating_sub(now_ms)))
    }

    /// Whether `node` may have been left nothing only because other nodes would finish the
    /// pending fragments or audit tasks sooner (see [`DEFERRED_RETRY_MS`]).
    pub fn deferred(&self, node: &NodeId, auditors: &Auditors<'_>) -> bool {
        let open_work = |round: &RoundState| match &round.auditing {
            Some(auditing) => auditing
                .tasks
                .iter()
                .any(|task| task.replay.is_none() && task.holder.is_none()),
            None => round.leases.pending() > 0,
        };
        matches!(self.spec.granularity, Granularity::Adaptive { .. })
            && self.spec.federated.is_none()
            && auditors.speed_of(node).is_some()
            && self.round.as_ref().is_some_and(open_work)
    }

    /// When `node`, which has nothing to do now, may take a copy of a straggler's fragment
    /// (see [`lease`](Self::lease)); `None` when no copy is in sight for it.
    pub fn next_copy_ms(&self, node: &NodeId, auditors: &Auditors<'_>) -> Option<u64> {
        let round = self.round.as_ref()?;
        if self.spec.federated.is_some() || round.auditing.is_some() {
            return None;
        }
        let speculate = matches!(self.spec.granularity, Granularity::Adaptive { .. });
        next_straggler(round, node, speculate, auditors).map(|(_, due_ms)| due_ms)
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

/// The other nodes working on `round` as the earliest-finish rule sees them: each live node
/// with a known speed that holds one of its fragments (free when that is expected done) or
/// has asked for work within [`COMPETING_WINDOW_MS`] (free now). Banned nodes do not count.
fn competitors(
    round: Option<&RoundState>,
    node: &NodeId,
    verifier: &Verifier,
    auditors: &Auditors<'_>,
) -> Vec<(NodeId, Worker)> {
    let now_ms = auditors.now_ms;
    let mut free_at: BTreeMap<NodeId, u64> = BTreeMap::new();
    if let Some(round) = round {
        for (index, holder, since_ms) in round.leases.live_leases(now_ms) {
            if let Some(mflops) = auditors.speed_of(holder) {
                let cost_mflop = round.fragments[index].cost_flops / 1_000_000;
                let free = free_at.entry(*holder).or_default();
                *free = (*free).max(since_ms + duration_ms(cost_mflop, mflops));
            }
        }
    }
    for (other, info) in auditors.nodes {
        if now_ms.saturating_sub(info.last_seen_ms) <= COMPETING_WINDOW_MS {
            free_at.entry(*other).or_insert(now_ms);
        }
    }
    free_at
        .into_iter()
        .filter(|(other, _)| other != node && !verifier.is_banned(other))
        .filter_map(|(other, free_at_ms)| {
            let mflops = auditors.speed_of(&other)?;
            Some((other, Worker { mflops, free_at_ms }))
        })
        .collect()
}

/// The straggler's fragment `node` could copy soonest in `round`, and from when: by measured
/// speeds where the holder's and `node`'s are known, else once it has been out 1.5× the
/// round's median fragment time so far.
fn next_straggler(
    round: &RoundState,
    node: &NodeId,
    speculate: bool,
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
