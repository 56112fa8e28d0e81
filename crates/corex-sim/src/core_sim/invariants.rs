//! What must hold after every step of a simulated run, whatever faults were injected: no
//! fragment is paid twice, no honest node is hard-rejected, slashed, removed or banned, and the
//! supply is exactly 100,000,000 CXT. The model's identity with the fault-free run's is
//! checked at the end, against a second run.

use std::collections::BTreeSet;

use corex_coordinator::core::CoordinatorCore;
use corex_coordinator::ledger::{ClosedRound, LedgerService};
use corex_core::messages::ResultVerdict;
use corex_core::{Hash, NodeId};
use corex_ledger::TOTAL_SUPPLY;

#[derive(Default)]
pub(super) struct Invariants {
    /// `(job, fragment)` of every accepted result of a round the ledger recorded.
    paid: BTreeSet<(Hash, Hash)>,
    /// The ledger height at the last ledger-wide check.
    checked_height: Option<u64>,
    /// Steps after which the invariants were checked: by a scan when the ledger moved, else
    /// by its height alone (the supply, the honest nodes' profiles and bans change only in
    /// steps that write a block: a close hands its verdicts to the ledger in the same step).
    pub steps_checked: u64,
    /// Scans of the supply and of every honest node's standing, one per new ledger height.
    pub ledger_scans: u64,
}

impl Invariants {
    /// A round the ledger took: each of its accepted fragments must be paid for the first time.
    pub(super) fn round_recorded(&mut self, closed: &ClosedRound) -> Result<(), String> {
        for result in &closed.record.results {
            if matches!(result.verdict, ResultVerdict::Accepted { .. })
                && !self.paid.insert((closed.job, result.fragment))
            {
                return Err(format!(
                    "fragment {} of job {} paid twice (round {})",
                    result.fragment.short(),
                    closed.job.short(),
                    closed.record.round
                ));
            }
        }
        Ok(())
    }

    /// After a step: when the ledger moved, the supply and every honest node's standing on the
    /// ledger and in the core.
    pub(super) fn after_step(
        &mut self,
        ledger: &LedgerService,
        core: &CoordinatorCore,
        honest: &[NodeId],
    ) -> Result<(), String> {
        self.steps_checked += 1;
        let height = ledger.chain().height();
        if self.checked_height == Some(height) {
            return Ok(());
        }
        self.checked_height = Some(height);
        self.ledger_scans += 1;
        let state = ledger.chain().state();
        let total = state.supply().total();
        if total != TOTAL_SUPPLY {
            return Err(format!(
                "the supply is {total} base units at height {height}, not {TOTAL_SUPPLY}"
            ));
        }
        for node in honest {
            if let Some(profile) = state.nodes.get(node)
                && (profile.hard_rejects > 0 || profile.slashed > 0)
            {
                return Err(format!(
                    "honest node {} has {} hard reject(s) and {} slashed on the ledger",
                    node.short(),
                    profile.hard_rejects,
                    profile.slashed
                ));
            }
            if core.engine().verifier.is_banned(node) {
                return Err(format!("honest node {} is banned", node.short()));
            }
        }
        Ok(())
    }

    /// Fragments paid so far.
    pub(super) fn paid(&self) -> usize {
        self.paid.len()
    }
}
