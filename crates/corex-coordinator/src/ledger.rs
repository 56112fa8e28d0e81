//! The coordinator's side of the ledger: it keeps the chain in `DATA_DIR/ledger.redb`, turns
//! closed rounds into signed records (the round, a verdict per accepted result, and every
//! `epoch_rounds` rounds the epoch's contributions and its settlement), and includes account
//! transactions from the API. Each block is stored durably before anyone hears of it.

use std::collections::BTreeMap;
use std::path::Path;

use corex_core::messages::{ResultVerdict, RoundRecord};
use corex_core::{Fragment, Hash, Keypair, NodeId};
use corex_ledger::{
    Block, Chain, ContributionEntry, Genesis, NodeStatus, Proposal, SignedTx, SoftReason, TxBody,
    TxReceipt, Verdict, merkle_root,
};
use corex_ledger_store::LedgerStore;

use crate::error::CoordinatorError;

/// Work of the current epoch, not yet recorded.
#[derive(Debug, Default)]
struct EpochTally {
    rounds: u32,
    work: BTreeMap<NodeId, NodeTally>,
    /// MFLOP of all results judged.
    demand: u64,
}

/// One node's accepted work in the epoch.
#[derive(Debug, Default)]
struct NodeTally {
    /// Compute-PoC units: MFLOP of accepted results.
    compute: u64,
    /// Model-PoT units: MFLOP of accepted results that gradient consistency found in line
    /// with the round.
    consistent: u64,
    accepted: u64,
    flagged: u64,
    /// Verification units: MFLOP of accepted audit replays computed for other nodes.
    verification: u64,
}

impl NodeTally {
    /// Model-PoT quality: the share of accepted results that consistency did not flag.
    fn quality_ppm(&self) -> u32 {
        if self.accepted == 0 {
            return 0;
        }
        ((self.accepted - self.flagged) * 1_000_000 / self.accepted) as u32
    }
}

/// What made the coordinator suspicious of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspicion {
    /// Claimed speed the capability challenge did not bear out.
    RefutedClaim,
    /// Fragments came far slower than the capability challenge showed.
    ContradictedBenchmark,
}

pub struct LedgerService {
    store: LedgerStore,
    chain: Chain,
    key: Keypair,
    epoch_rounds: u32,
    tally: EpochTally,
}

/// A closed round as the engine hands it over, in the order rounds closed.
#[derive(Debug, Clone)]
pub struct ClosedRound {
    pub job: Hash,
    pub record: RoundRecord,
    pub job_finished: bool,
}

const MFLOP: u64 = 1_000_000;

fn storage(error: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Storage(error.to_string())
}

impl LedgerService {
    /// Opens (or starts, with this coordinator as the records' signer) the ledger in `dir`.
    pub fn open(
        dir: &Path,
        key: Keypair,
        epoch_rounds: u32,
        now_ms: u64,
    ) -> Result<Self, CoordinatorError> {
        let id = key.id();
        let (store, chain) = LedgerStore::open_or_init(&dir.join("ledger.redb"), || {
            Genesis::new(format!("corex-{}", id.short()), id, now_ms)
        })
        .map_err(storage)?;
        if chain.genesis().coordinator != id {
            return Err(storage(format!(
                "the ledger in {} belongs to coordinator {}, not {}",
                dir.display(),
                chain.genesis().coordinator.short(),
                id.short()
            )));
        }
        Ok(Self {
            store,
            chain,
            key,
            epoch_rounds,
            tally: EpochTally::default(),
        })
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The nodes the ledger removed (repeated hard rejects). The ledger is stored, so this
    /// outlives a coordinator restart, unlike the verifier's in-memory audit records.
    pub fn removed_nodes(&self) -> Vec<NodeId> {
        self.chain
            .state()
            .nodes
            .iter()
            .filter(|(_, profile)| profile.status == NodeStatus::Removed)
            .map(|(node, _)| *node)
            .collect()
    }

    pub fn block(&self, height: u64) -> Result<Option<Block>, CoordinatorError> {
        self.store.block(height).map_err(storage)
    }

    /// Includes an account's transaction in a block of its own, stored before this returns.
    /// A transaction that does not apply is refused and changes nothing.
    pub fn submit(&mut self, tx: SignedTx, now_ms: u64) -> Result<TxReceipt, CoordinatorError> {
        if tx.body.is_coordinator_record() {
            return Err(CoordinatorError::Ledger(
                corex_ledger::LedgerError::NotCoordinator(tx.signer),
            ));
        }
        let id = tx.id();
        let Some(proposal) = self.chain.propose(&self.key, vec![tx.clone()], now_ms)? else {
            // The one transaction did not apply: say why (a copy of the state pays for that,
            // on refusals only).
            return Err(match self.chain.check(&tx) {
                Err(error) => CoordinatorError::Ledger(error),
                Ok(()) => storage("the transaction applies alone but not in a block"),
            });
        };
        let block = self.adopt(proposal)?;
        Ok(TxReceipt {
            tx: id,
            height: block.header.height,
            block: block.header.hash(),
        })
    }

    /// Puts a new audit seed chain's anchor on the ledger (at every start, before any round).
    pub fn commit_audit_anchor(
        &mut self,
        anchor: Hash,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        self.sign_and_commit(vec![TxBody::CommitAuditChain { anchor }], now_ms)
    }

    /// Leases that expired: soft rejects (timeouts), which cost a little score and nothing else.
    pub fn record_timeouts(
        &mut self,
        expired: &[(Hash, NodeId)],
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let state = self.chain.state();
        let bodies: Vec<TxBody> = expired
            .iter()
            .filter(|(_, node)| state.is_active_node(node))
            .map(|(fragment, node)| TxBody::RecordVerdict {
                node: *node,
                fragment: *fragment,
                verdict: Verdict::SoftReject {
                    reason: SoftReason::Timeout,
                },
            })
            .collect();
        if bodies.is_empty() {
            return Ok(());
        }
        self.sign_and_commit(bodies, now_ms)
    }

    /// Suspicious behaviour (`what`: a capability claim the challenge refuted, fragment times
    /// that contradict the challenge): a suspicious soft reject (no slash; the node's score
    /// drops and the event is counted).
    pub fn record_suspicious(
        &mut self,
        node: NodeId,
        what: Suspicion,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let active = self.chain.state().is_active_node(&node);
        if !active {
            return Ok(());
        }
        let tag: &[u8] = match what {
            Suspicion::RefutedClaim => b"corex-capability-claim",
            Suspicion::ContradictedBenchmark => b"corex-behaviour",
        };
        let body = TxBody::RecordVerdict {
            node,
            fragment: Hash::of_parts(&[tag, &node.0, &now_ms.to_le_bytes()]),
            verdict: Verdict::SoftReject {
                reason: SoftReason::Suspicious,
            },
        };
        self.sign_and_commit(vec![body], now_ms)
    }

    /// Records a closed round; settles the epoch when it is full or the job is finished.
    pub fn record_round(
        &mut self,
        closed: &ClosedRound,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let state = self.chain.state();
        let mut bodies = vec![TxBody::RecordRound {
            job: closed.job,
            round: closed.record.round,
            model: closed.record.model,
            results_root: merkle_root(
                &closed
                    .record
                    .results
                    .iter()
                    .map(|r| r.commitment)
                    .collect::<Vec<_>>(),
            ),
            audit_seed: closed.record.audit_seed,
        }];
        for result in &closed.record.results {
            self.tally.demand += result.flops.div_ceil(MFLOP);
            let active = state.is_active_node(&result.node);
            if !active {
                // Not on the ledger (or removed): its work cannot be recorded or paid.
                continue;
            }
            let verdict = match &result.verdict {
                ResultVerdict::Accepted { flag, .. } => {
                    let units = result.flops.div_ceil(MFLOP);
                    let tally = self.tally.work.entry(result.node).or_default();
                    tally.compute += units;
                    tally.accepted += 1;
                    if flag.is_some() {
                        tally.flagged += 1;
                    } else {
                        tally.consistent += units;
                    }
                    Verdict::Accept
                }
                ResultVerdict::Rejected { evidence, .. } => Verdict::HardReject {
                    evidence: *evidence,
                },
            };
            bodies.push(TxBody::RecordVerdict {
                node: result.node,
                fragment: result.fragment,
                verdict,
            });
        }
        for audit in &closed.record.audits {
            if !state.is_active_node(&audit.auditor) {
                continue;
            }
            let verdict = match &audit.verdict {
                ResultVerdict::Accepted { .. } => {
                    let tally = self.tally.work.entry(audit.auditor).or_default();
                    tally.verification += audit.flops.div_ceil(MFLOP);
                    Verdict::Accept
                }
                ResultVerdict::Rejected { evidence, .. } => Verdict::HardReject {
                    evidence: *evidence,
                },
            };
            bodies.push(TxBody::RecordVerdict {
                node: audit.auditor,
                fragment: Fragment::derive_audit_id(&audit.fragment),
                verdict,
            });
        }
        self.tally.rounds += 1;
        self.sign_and_commit(bodies, now_ms)?;
        if self.tally.rounds >= self.epoch_rounds || closed.job_finished {
            self.settle_epoch(now_ms)?;
        }
        Ok(())
    }

    /// Records the epoch's contributions of nodes still active (this round's verdicts may have
    /// removed some) and settles it.
    fn settle_epoch(&mut self, now_ms: u64) -> Result<(), CoordinatorError> {
        let state = self.chain.state();
        let epoch = state.epoch;
        let tally = std::mem::take(&mut self.tally);
        // Two entries per node: Compute-PoC units at full quality (every accepted result was
        // verified or open to audit), Model-PoT units at the node's consistency quality.
        let entries: Vec<ContributionEntry> = tally
            .work
            .into_iter()
            .filter(|(node, _)| state.is_active_node(node))
            .flat_map(|(node, tally)| {
                // Verification units at full quality: every accepted replay matched the result
                // it audited or the coordinator's own.
                let verification = (tally.verification > 0).then_some(ContributionEntry {
                    node,
                    compute_units: 0,
                    pot_units: 0,
                    verification_units: tally.verification,
                    quality_ppm: 1_000_000,
                });
                [
                    Some(ContributionEntry::compute(node, tally.compute)),
                    Some(ContributionEntry {
                        node,
                        compute_units: 0,
                        pot_units: tally.consistent,
                        verification_units: 0,
                        quality_ppm: tally.quality_ppm(),
                    }),
                    verification,
                ]
                .into_iter()
                .flatten()
            })
            .collect();
        let supply = entries.iter().map(|e| e.compute_units).sum();
        self.sign_and_commit(
            vec![
                TxBody::RecordContributions { epoch, entries },
                TxBody::SettleEpoch {
                    epoch,
                    compute_supply: supply,
                    task_demand: tally.demand,
                },
            ],
            now_ms,
        )
    }

    /// Commits the coordinator's `bodies` in one block. A record that no longer applies (a
    /// verdict on a node that an earlier verdict of the same block removed) is left out and
    /// logged; the first body (the round record itself) must apply.
    fn sign_and_commit(
        &mut self,
        bodies: Vec<TxBody>,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let (proposal, left_out) = self.chain.propose_records(&self.key, bodies, now_ms)?;
        for (index, error) in left_out {
            if index == 0 {
                return Err(CoordinatorError::Ledger(error));
            }
            tracing::info!(%error, "a ledger record was left out of the block");
        }
        let proposal = proposal.ok_or_else(|| storage("no record to commit"))?;
        self.adopt(proposal).map(|_| ())
    }

    /// Stores the proposed block durably, then makes its chain the current one.
    fn adopt(&mut self, proposal: Proposal) -> Result<Block, CoordinatorError> {
        self.store.append(&proposal.block).map_err(storage)?;
        self.chain = proposal.next;
        Ok(proposal.block)
    }
}
