//! Handing out a round's work: fragments (with adaptive granularity the one that best fits
//! the asking node's speed; when fragments are scarce, to higher-priority waiting nodes first),
//! audit tasks while the round is audited, straggler copies near the round's end, and lease
//! expiry.
//!
//! A straggler is a holder that has overrun the time its measured speed predicts for its
//! fragment (see [`straggler_due_ms`]); any node at least as fast may then take a copy, and
//! the first valid result wins. Where speeds are unknown, a fragment out 1.5× the round's
//! median fragment time is a straggler. A node with nothing to do learns when the next copy
//! falls due for it ([`JobRun::next_copy_ms`]), so its lease request can wait exactly that long.

use corex_scheduler::straggler_due_ms;

use super::*;

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
        // With adaptive granularity, the pending fragment closest to what this node computes
        // in the target time; otherwise the first pending one.
        let wanted_samples = match self.spec.granularity {
            Granularity::Adaptive { target_ms } => auditors.speed_of(&node).map(|speed| {
                u128::from(speed) * 1_000 * u128::from(target_ms)
                    / u128::from(self.spec.work.flops_per_sample(&self.spec.model).max(1))
            }),
            Granularity::Fixed => None,
        };
        let granularity = self.spec.granularity;
        let fits =
            |fragment: &Fragment| replays_in_time(granularity, fragment, auditors.speed_of(&node));
        let federated = self.spec.federated.is_some();
        let round = self.round.as_mut()?;
        if let Some(auditing) = round.auditing.as_mut() {
            let task = auditing.tasks.iter_mut().find(|task| {
                task.replay.is_none()
                    && task.holder.is_none()
                    && fits(&task.fragment)
                    && auditors.may_replay(verifier, &node, &task.submitter)
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
        let fragments = &round.fragments;
        let rank = |index: usize| {
            let fragment = &fragments[index];
            may_hold(fragment.holder, &node).then(|| match wanted_samples {
                Some(wanted) => (fragment.indices.len() as u128).abs_diff(wanted) as u64,
                None => index as u64,
            })
        };
        let lease = match round
            .leases
            .lease_by(node, now_ms, self.spec.lease_ms, rank)
        {
            Some(lease) => lease,
            // A federated fragment has no copies: only its holder has the data.
            None if federated => return None,
            None => {
                let (index, due_ms) = next_straggler(round, &node, auditors)?;
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

    /// When `node`, which has nothing to do now, may take a copy of a straggler's fragment
    /// (see [`lease`](Self::lease)); `None` when no copy is in sight for it.
    pub fn next_copy_ms(&self, node: &NodeId, auditors: &Auditors<'_>) -> Option<u64> {
        let round = self.round.as_ref()?;
        if self.spec.federated.is_some() || round.auditing.is_some() {
            return None;
        }
        next_straggler(round, node, auditors).map(|(_, due_ms)| due_ms)
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

/// The straggler's fragment `node` could copy soonest in `round`, and from when: by measured
/// speeds where the holder's and `node`'s are known, else once it has been out 1.5× the
/// round's median fragment time so far.
fn next_straggler(
    round: &RoundState,
    node: &NodeId,
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
                (Some(holder_mflops), Some(copier_mflops)) => straggler_due_ms(
                    round.fragments[index].cost_flops,
                    since_ms,
                    holder_mflops,
                    copier_mflops,
                ),
                _ => typical_ms.map(|typical| since_ms + typical.max(1) * 3 / 2),
            }
        })
}
