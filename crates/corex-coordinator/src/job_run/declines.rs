//! A data holder declines a federated job: its owner is not one the holder allows, the job's
//! privacy is below the holder's floor, or the holder's privacy budget for it is spent. The
//! holder's fragment leaves the open round at once (no lease to expire, no timeout on the
//! ledger: declining is the holder's right, not a fault), and no later round names it.
//!
//! Invariant: only the holder a fragment names can decline it, only while the round still
//! waits for results, and only before it has delivered; anything else is refused unchanged.

use corex_core::{Hash, NodeId};
use corex_scheduler::LeaseError;

use super::{Engine, JobRun, Progress};
use crate::error::CoordinatorError;

impl JobRun {
    /// `node` declines this job, naming its fragment of the open round.
    pub fn decline_holder(
        &mut self,
        node: NodeId,
        fragment: &Hash,
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Result<Progress, CoordinatorError> {
        if !self.is_running() {
            return Err(CoordinatorError::JobNotRunning(self.id));
        }
        let closed = || CoordinatorError::FragmentClosed(*fragment);
        let round = self.round.as_mut().ok_or_else(closed)?;
        if round.auditing.is_some() {
            return Err(closed());
        }
        let index = round
            .fragments
            .iter()
            .position(|candidate| candidate.id == *fragment)
            .ok_or(CoordinatorError::UnknownFragment(*fragment))?;
        if round.fragments[index].holder != Some(node) {
            return Err(CoordinatorError::Lease(LeaseError::NotLeased(index as u32)));
        }
        if round.results[index].is_some() {
            return Err(CoordinatorError::Lease(LeaseError::AlreadyDone(
                index as u32,
            )));
        }
        self.declined.insert(node);
        round.fragments.remove(index);
        round.results.remove(index);
        round.leases.drop_fragment(index);
        self.closed_fragments.insert(*fragment);
        tracing::info!(job = %self.id.short(), holder = %node.short(), round = self.completed_rounds, "a data holder declined the job");
        if round.fragments.is_empty() {
            self.round = None;
            let reason = "every data holder of this federated job is banned or declined it";
            self.end(
                corex_core::messages::JobState::Failed {
                    reason: reason.into(),
                },
                now_ms,
            );
            // No round closed: nothing goes to the ledger.
            return Ok(Progress::JobFailed);
        }
        if round.leases.is_complete() {
            return self.begin_audits(now_ms, engine);
        }
        Ok(Progress::Accepted)
    }
}
