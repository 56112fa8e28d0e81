//! The coordinator's side of the ledger: it keeps the chain in `DATA_DIR/ledger.redb`, turns
//! closed rounds into signed records (the round, its contributions in exact FLOPs, a verdict
//! per result), records the audit seed chains' anchors and reveals in the order the verifier
//! made them, closes epochs when ledger time passes their end (the server's timer calls
//! [`LedgerService::close_epochs`]; any block past the end settles them too), and includes
//! account transactions from the API. Each block is stored durably before anyone hears of it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use corex_core::messages::{ResultVerdict, RoundRecord};
use corex_core::{Fragment, FragmentKind, Hash, Keypair, NodeId};
use corex_ledger::{
    Block, Chain, ContributionEntry, Genesis, NodeStatus, Params, Proposal, SignedTx, SoftReason,
    TxBody, TxReceipt, Verdict, merkle_root,
};
use corex_ledger_store::LedgerStore;

use crate::error::CoordinatorError;
use crate::verification::{AuditEvent, Verifier};

/// One node's accepted work in a round, in FLOPs.
#[derive(Debug, Default)]
struct NodeTally {
    /// Compute-PoC units: FLOPs of accepted results.
    compute: u128,
    /// Model-PoT units: FLOPs of accepted results that gradient consistency found in line
    /// with the round.
    consistent: u128,
    accepted: u64,
    flagged: u64,
    /// Verification units: FLOPs of accepted audit replays computed for other nodes.
    verification: u128,
}

impl NodeTally {
    /// Model-PoT quality: the share of accepted results that consistency did not flag.
    fn quality_ppm(&self) -> u32 {
        if self.accepted == 0 {
            return 0;
        }
        ((self.accepted - self.flagged) * 1_000_000 / self.accepted) as u32
    }

    /// Up to three entries: Compute-PoC units at full quality (every accepted result was
    /// verified or open to audit), Model-PoT units at the consistency quality, verification
    /// units at full quality (every accepted replay matched).
    fn entries(&self, node: NodeId) -> impl Iterator<Item = ContributionEntry> {
        let compute = (self.compute > 0).then(|| ContributionEntry::compute(node, self.compute));
        let pot = (self.consistent > 0).then(|| ContributionEntry {
            pot_units: self.consistent,
            quality_ppm: self.quality_ppm(),
            ..ContributionEntry::compute(node, 0)
        });
        let verification = (self.verification > 0).then(|| ContributionEntry {
            verification_units: self.verification,
            ..ContributionEntry::compute(node, 0)
        });
        [compute, pot, verification].into_iter().flatten()
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
    /// Shared with readers (`reader`), which read stored blocks and the explorer's index
    /// without holding the service.
    store: Arc<LedgerStore>,
    chain: Chain,
    key: Keypair,
}

/// A closed round as the engine hands it over, in the order rounds closed.
#[derive(Debug, Clone)]
pub struct ClosedRound {
    pub job: Hash,
    pub kind: FragmentKind,
    pub record: RoundRecord,
}

/// What the engine hands the ledger recorder, in the order it happened.
#[derive(Debug, Clone)]
pub enum LedgerRecord {
    Audit(AuditEvent),
    Round(ClosedRound),
}

/// Which of the verifier's audit events the ledger has been handed. The core hands them over
/// before every round, so a round's reveal reaches the ledger before the round, and reveals
/// reach it in chain order.
#[derive(Debug, Default)]
pub struct LedgerCursor {
    /// Number of the first audit event not handed over yet.
    audit_sent: u64,
}

impl LedgerCursor {
    /// The verifier's audit events not handed over yet, as ledger records.
    pub fn audit_records(&mut self, verifier: &Verifier) -> Vec<LedgerRecord> {
        let (events, end) = verifier.seeds.events_from(self.audit_sent);
        self.audit_sent = end;
        events.iter().cloned().map(LedgerRecord::Audit).collect()
    }

    /// The audit events not handed over yet, then `closed`.
    pub fn round_records(&mut self, verifier: &Verifier, closed: ClosedRound) -> Vec<LedgerRecord> {
        let mut records = self.audit_records(verifier);
        records.push(LedgerRecord::Round(closed));
        records
    }

    /// The audit events not handed over yet; the verifier forgets them.
    pub fn flush_audit_records(&mut self, verifier: &mut Verifier) -> Vec<LedgerRecord> {
        let records = self.audit_records(verifier);
        verifier.seeds.forget_events_before(self.audit_sent);
        records
    }
}

fn storage(error: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Storage(error.to_string())
}

impl LedgerService {
    /// Opens the ledger in `dir`, or starts one with this coordinator as the records' signer
    /// and `params` as its rules (a stored ledger keeps the rules of its own genesis).
    pub fn open(
        dir: &Path,
        key: Keypair,
        params: Params,
        now_ms: u64,
    ) -> Result<Self, CoordinatorError> {
        let id = key.id();
        let (store, chain) = LedgerStore::open_or_init(&dir.join("ledger.redb"), || Genesis {
            params,
            ..Genesis::new(format!("corex-{}", id.short()), id, now_ms)
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
            store: Arc::new(store),
            chain,
            key,
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

    /// The stored ledger, to read blocks and the index from after letting go of the service.
    pub fn reader(&self) -> Arc<LedgerStore> {
        self.store.clone()
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

    /// Records what the engine handed over: an audit chain's anchor, a reveal, or a round.
    pub fn record(&mut self, record: &LedgerRecord, now_ms: u64) -> Result<(), CoordinatorError> {
        match record {
            LedgerRecord::Audit(AuditEvent::Anchor(anchor)) => {
                self.commit_audit_anchor(*anchor, now_ms)
            }
            LedgerRecord::Audit(AuditEvent::Reveal { job, seed }) => self.sign_and_commit(
                vec![TxBody::RevealAuditSeed {
                    job: *job,
                    seed: *seed,
                }],
                now_ms,
            ),
            LedgerRecord::Round(closed) => self.record_round(closed, now_ms),
        }
    }

    /// The timer's part of ledger time: once an epoch with work (or a reward's lock window)
    /// has ended, writes a block that settles it, so an idle ledger still closes epochs.
    /// Returns whether it wrote one.
    pub fn close_epochs(&mut self, now_ms: u64) -> Result<bool, CoordinatorError> {
        if !self.chain.settlement_due(now_ms) {
            return Ok(false);
        }
        let epoch = self.chain.state().epoch;
        self.sign_and_commit(vec![TxBody::SettleEpoch { epoch }], now_ms)?;
        Ok(true)
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

    /// Records a closed round in one block: the round (which must apply), the contributions
    /// of nodes active before it (paid from the release of the epoch the block falls in), and
    /// a verdict per result and per audit replay.
    pub fn record_round(
        &mut self,
        closed: &ClosedRound,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let state = self.chain.state();
        let record = &closed.record;
        let mut work: BTreeMap<NodeId, NodeTally> = BTreeMap::new();
        let mut task_demand = 0u128;
        let mut verdicts = Vec::new();
        for result in &record.results {
            task_demand += u128::from(result.flops);
            if !state.is_active_node(&result.node) {
                // Not on the ledger (or removed): its work cannot be recorded or paid.
                continue;
            }
            let verdict = match &result.verdict {
                ResultVerdict::Accepted { flag, .. } => {
                    let tally = work.entry(result.node).or_default();
                    tally.compute += u128::from(result.flops);
                    tally.accepted += 1;
                    if flag.is_some() {
                        tally.flagged += 1;
                    } else {
                        tally.consistent += u128::from(result.flops);
                    }
                    Verdict::Accept
                }
                ResultVerdict::Rejected { evidence, .. } => Verdict::HardReject {
                    evidence: *evidence,
                },
                ResultVerdict::Discarded { .. } => Verdict::SoftReject {
                    reason: SoftReason::Unhelpful,
                },
            };
            verdicts.push(TxBody::RecordVerdict {
                node: result.node,
                fragment: result.fragment,
                verdict,
            });
        }
        for audit in &record.audits {
            if !state.is_active_node(&audit.auditor) {
                continue;
            }
            let verdict = match &audit.verdict {
                ResultVerdict::Accepted { .. } => {
                    work.entry(audit.auditor).or_default().verification += u128::from(audit.flops);
                    Verdict::Accept
                }
                ResultVerdict::Rejected { evidence, .. } => Verdict::HardReject {
                    evidence: *evidence,
                },
                ResultVerdict::Discarded { .. } => Verdict::SoftReject {
                    reason: SoftReason::Unhelpful,
                },
            };
            verdicts.push(TxBody::RecordVerdict {
                node: audit.auditor,
                fragment: Fragment::derive_audit_id(&audit.fragment),
                verdict,
            });
        }
        let commitments: Vec<Hash> = record.results.iter().map(|r| r.commitment).collect();
        let mut bodies = vec![
            TxBody::RecordRound {
                job: closed.job,
                round: record.round,
                model: record.model,
                results_root: merkle_root(&commitments),
                audit_seed: record.audit_seed,
            },
            TxBody::RecordContributions {
                entries: work
                    .iter()
                    .flat_map(|(node, tally)| tally.entries(*node))
                    .collect(),
                task_demand,
            },
        ];
        bodies.extend(verdicts);
        self.sign_and_commit(bodies, now_ms)
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
        self.store
            .append(&proposal.block, &proposal.next)
            .map_err(storage)?;
        self.chain = proposal.next;
        Ok(proposal.block)
    }
}
