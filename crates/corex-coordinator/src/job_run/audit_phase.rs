//! The audit phase of a round: once every result is in, the revealed seed picks what to
//! replay, reveal requests go to the submitters of traced results (segment audits, see
//! `reveals`), audit tasks to proven nodes, their replays come back, and overdue rounds close
//! (the coordinator replays what no node returned; a federated round goes on without holders
//! that went quiet).

use super::*;

impl JobRun {
    /// Plans the complete round's audits: segment audits for unflagged traced results, audit
    /// tasks for those another node may replay; closes the round at once when no audit waits
    /// for a node.
    pub(super) fn begin_audits(
        &mut self,
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Result<Progress, CoordinatorError> {
        let Some(round) = self.round.as_ref() else {
            return Ok(Progress::Accepted);
        };
        let accepted: Vec<&Accepted> = round.results.iter().flatten().collect();
        let candidates = candidates(&accepted, &round.fragments);
        let screen = match self.feedback {
            Some(_) => Screen::RepeatsOnly,
            None => Screen::Consistency,
        };
        let plan = engine.verifier.plan_round(
            &self.id,
            &candidates,
            ResultKind::of(&self.spec.work),
            screen,
        )?;
        // Unflagged audits of traced results check one segment; the rest replay it all. An
        // audited compressed result's node reveals its feedback states either way.
        let reveals: Vec<RevealTask> = plan
            .audits
            .iter()
            .zip(accepted.iter().zip(&round.fragments))
            .enumerate()
            .filter(|(_, (planned, _))| planned.audited)
            .filter_map(|(index, (planned, (result, fragment)))| {
                let segment = planned.flag.is_none();
                self.plan_reveal(index, result, fragment, &plan.seed, segment)
            })
            .collect();
        let tasks: Vec<AuditTask> = plan
            .audits
            .iter()
            .zip(accepted.iter().zip(&round.fragments))
            .enumerate()
            .filter(|(index, (planned, (result, fragment)))| {
                let fits = |auditor: &NodeId| {
                    engine
                        .auditors
                        .replays_in_time(self.spec.granularity, fragment, auditor)
                };
                planned.audited
                    && fragment.holder.is_none()
                    && !reveals
                        .iter()
                        .any(|reveal| reveal.index == *index && reveal.steps.is_some())
                    && engine.auditors.any_for(engine.verifier, &result.node, fits)
            })
            .map(|(index, (_, (result, fragment)))| AuditTask {
                index,
                fragment: Fragment {
                    id: Fragment::derive_audit_id(&fragment.id),
                    ..fragment.clone()
                },
                submitter: result.node,
                holder: None,
                replay: None,
                commitment: None,
            })
            .collect();
        let waiting = !tasks.is_empty() || !reveals.is_empty();
        let round = self.round.as_mut().ok_or_else(|| {
            CoordinatorError::Training("the round closed while its audits were planned".into())
        })?;
        round.auditing = Some(Auditing {
            plan,
            tasks,
            reveals,
            published: Vec::new(),
            began_ms: now_ms,
            deadline_ms: now_ms + self.spec.lease_ms,
        });
        if waiting {
            return Ok(Progress::Auditing);
        }
        self.close_round(now_ms, engine)
    }

    /// Takes a node's audit replay for task `task`, checked like any result.
    pub(super) fn submit_audit(
        &mut self,
        task: usize,
        node: NodeId,
        header: &ResultHeader,
        tensor: SignedTensor,
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Result<Progress, CoordinatorError> {
        let auditing = self
            .round
            .as_ref()
            .and_then(|round| round.auditing.as_ref())
            .ok_or(CoordinatorError::FragmentClosed(header.fragment))?;
        let pending = &auditing.tasks[task];
        if pending.replay.is_some() {
            return Err(CoordinatorError::FragmentClosed(header.fragment));
        }
        let index = pending.index as u32;
        match pending.holder {
            Some((holder, _)) if holder == node => {}
            Some((holder, _)) => {
                return Err(LeaseError::LeasedToOther {
                    index,
                    holder: holder.short(),
                }
                .into());
            }
            None => return Err(LeaseError::NotLeased(index).into()),
        }
        compressed::dense_only(header, &tensor)?;
        let commitment = tensor.commitment;
        let gradient = self.check_tensor_result(&pending.fragment, header, tensor.values)?;
        let all_in = {
            let auditing = self
                .round
                .as_mut()
                .and_then(|round| round.auditing.as_mut())
                .ok_or(CoordinatorError::FragmentClosed(header.fragment))?;
            let pending = &mut auditing.tasks[task];
            pending.replay = Some(NodeReplay {
                auditor: node,
                result_hash: header.result_hash,
                replay: Replay {
                    gradient,
                    loss: header.loss,
                },
            });
            pending.commitment = Some(commitment);
            tracing::debug!(
                round = self.completed_rounds,
                auditor = %node.short(),
                since_audits_ms = now_ms.saturating_sub(auditing.began_ms),
                "audit replay returned"
            );
            auditing.is_complete()
        };
        if all_in {
            return self.close_round(now_ms, engine);
        }
        Ok(Progress::Auditing)
    }

    /// Closes a round that is overdue: one whose audit deadline has passed (the coordinator
    /// replays what no node returned), or a federated round without the holders that have not
    /// delivered (see [`MIN_FEDERATED_QUORUM`]). `None` when there is nothing to close.
    pub fn close_overdue(
        &mut self,
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Option<Result<Progress, CoordinatorError>> {
        let round = self.round.as_mut()?;
        let Some(auditing) = round.auditing.as_ref() else {
            let quorum = round.fragments.len().div_ceil(MIN_FEDERATED_QUORUM).max(1);
            let partial = self.spec.federated.is_some()
                && round.opened_ms + self.spec.lease_ms <= now_ms
                && !round.leases.any_held(now_ms)
                && round.leases.done() >= quorum;
            if !partial {
                return None;
            }
            // Partial participation: the round goes on without holders that went quiet.
            for index in round.leases.drop_unfinished().into_iter().rev() {
                self.closed_fragments
                    .insert(round.fragments.remove(index).id);
                round.results.remove(index);
            }
            return Some(self.begin_audits(now_ms, engine));
        };
        (auditing.deadline_ms <= now_ms).then(|| self.close_round(now_ms, engine))
    }
}
