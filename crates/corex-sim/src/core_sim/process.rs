//! The simulated coordinator process: the real core over the real stores (`coordinator.redb`,
//! the atomic files, `ledger.redb`) in a data directory, opened and restored exactly as
//! `corex coordinator` opens them after a kill -9 (`durability::restore`), so a simulated
//! restart exercises the same path.

use std::path::{Path, PathBuf};

use corex_coordinator::core::CoordinatorCore;
use corex_coordinator::durability;
use corex_coordinator::job_run::Progress;
use corex_coordinator::ledger::LedgerService;
use corex_coordinator::store::StateStore;
use corex_coordinator::verification::Verifier;
use corex_coordinator::{Coordinator, CoordinatorConfig, CoordinatorError};
use corex_core::{Hash, Keypair};

/// The ledger's clock: virtual milliseconds from this moment (a fixed date, so block
/// timestamps are part of the seeded run).
pub(super) const GENESIS_UNIX_MS: u64 = 1_800_000_000_000;

/// A running coordinator: its core and the stores it writes.
pub(super) struct Running {
    pub core: CoordinatorCore,
    pub store: StateStore,
    pub ledger: LedgerService,
    /// Virtual time when this process started: its own clock counts from there.
    pub started_ms: u64,
}

impl Running {
    /// The process's own monotonic clock at virtual time `now_ms`.
    pub(super) fn core_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.started_ms)
    }
}

pub(super) struct Process {
    pub dir: PathBuf,
    pub identity: Keypair,
    pub config: CoordinatorConfig,
    pub running: Option<Running>,
    /// Starts so far; a computation started by an earlier incarnation is lost.
    pub incarnation: u32,
}

impl Process {
    pub(super) fn new(dir: &Path, identity: Keypair, config: CoordinatorConfig) -> Self {
        Self {
            dir: dir.to_owned(),
            identity,
            config,
            running: None,
            incarnation: 0,
        }
    }

    /// Starts (or restarts) the coordinator at virtual time `now_ms`, with `anchor_seed` for a
    /// fresh audit seed chain: opens the ledger and the state, commits the chain's anchor, and
    /// restores what was stored. Returns the jobs whose kept results completed their round.
    pub(super) fn start(
        &mut self,
        anchor_seed: [u8; 32],
        now_ms: u64,
    ) -> Result<Vec<(Hash, Progress)>, CoordinatorError> {
        let unix_ms = GENESIS_UNIX_MS + now_ms;
        let verifier = Verifier::new(
            anchor_seed,
            self.config.audit_chain_length,
            self.config.audit_policy,
        );
        let mut ledger = LedgerService::open(
            &self.dir,
            self.identity.clone(),
            self.config.genesis.clone(),
            unix_ms,
        )?;
        ledger.commit_audit_anchor(verifier.anchor(), unix_ms)?;
        let store = StateStore::open(&self.dir)?;
        let mut engine = Coordinator::new(self.identity.clone(), self.config.clone(), verifier);
        let progressed =
            durability::restore(&mut engine, &store, &self.dir, ledger.removed_nodes())?;
        self.running = Some(Running {
            core: CoordinatorCore::new(engine),
            store,
            ledger,
            started_ms: now_ms,
        });
        self.incarnation += 1;
        Ok(progressed)
    }

    /// Kill -9: the process and everything it held in memory are gone; the stores keep what
    /// they committed.
    pub(super) fn crash(&mut self) {
        self.running = None;
    }
}
