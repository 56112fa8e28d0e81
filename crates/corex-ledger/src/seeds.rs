//! The audit seed chains on the ledger: which anchors were committed, which seeds revealed,
//! and which round each seed judged.
//!
//! The coordinator commits an anchor `s₀` before any result its chain will judge, then
//! reveals `s₁, s₂, …` one by one, each bound to the job whose round it judges, where
//! `H(sₖ) = sₖ₋₁` (`corex_verify::follows`). Before a chain runs out it commits the anchor of
//! the next one, drawn from fresh randomness (nothing revealed leads to it); the first reveal
//! that follows that anchor moves the ledger onto the new chain. Reveals arrive in chain
//! order, whatever order the rounds close in: a round record must carry exactly the seed last
//! revealed for its job, and claims it.

use std::collections::BTreeMap;

use corex_core::Hash;
use serde::{Deserialize, Serialize};

use crate::error::LedgerError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSeeds {
    /// The newest reveal of the current chain, or its anchor before the first reveal.
    pub current: Option<Hash>,
    /// The committed anchor of the chain that follows the current one.
    pub next_anchor: Option<Hash>,
    /// Per job, the seed revealed for its round in audit, not yet claimed by its round record.
    pub pending: BTreeMap<Hash, Hash>,
}

impl AuditSeeds {
    /// Commits `anchor`: the start of the first chain, or else the current chain's successor
    /// (replacing a successor not yet used: a coordinator that restarted draws a new chain).
    pub(crate) fn commit(&mut self, anchor: Hash) {
        if self.current.is_none() {
            self.current = Some(anchor);
        } else {
            self.next_anchor = Some(anchor);
        }
    }

    /// Checks that `seed` is the next reveal of the current chain or the first of the next.
    pub(crate) fn check_reveal(&self, seed: &Hash) -> Result<(), LedgerError> {
        let follows = |previous: &Option<Hash>| {
            previous.is_some_and(|previous| corex_verify::follows(&previous, seed))
        };
        if follows(&self.current) || follows(&self.next_anchor) {
            Ok(())
        } else {
            Err(LedgerError::AuditSeedOutOfOrder { seed: *seed })
        }
    }

    /// Records a reveal [`check_reveal`](Self::check_reveal) accepted.
    pub(crate) fn reveal(&mut self, job: Hash, seed: Hash) {
        let on_current = self
            .current
            .is_some_and(|previous| corex_verify::follows(&previous, &seed));
        if !on_current {
            self.next_anchor = None;
        }
        self.current = Some(seed);
        self.pending.insert(job, seed);
    }

    /// Checks that `seed` is the one revealed for `job`'s round in audit.
    pub(crate) fn check_claim(
        &self,
        job: &Hash,
        seed: &Hash,
        round: u32,
    ) -> Result<(), LedgerError> {
        if self.pending.get(job) == Some(seed) {
            Ok(())
        } else {
            Err(LedgerError::AuditSeedBroken { round })
        }
    }

    /// Marks the seed of `job`'s round used.
    pub(crate) fn claim(&mut self, job: &Hash) {
        self.pending.remove(job);
    }
}
