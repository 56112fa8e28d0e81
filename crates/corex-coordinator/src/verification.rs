//! Proof of contribution at round close: which results to replay (a revealed seed and each
//! node's audit rate), the replays and their comparison, and the verdicts. For model updates
//! (gradients, pseudo-gradients) two things force an audit: a gradient-consistency flag, and a
//! result whose bytes were seen before (a copy, or an old result resubmitted). Only the audit
//! decides, so an honest node whose gradient looks odd, or happens to repeat, is replayed and
//! accepted, never punished.
//!
//! Outputs (logits, transformed rows) are not screened: their statistics say nothing about a
//! cheat, and equal bytes are legitimate wherever inputs are equal, so the seeded draw alone
//! picks their audits. Transformed rows are compared with their replay bit for bit.
//!
//! Replays are computed by proven nodes other than the audited one when they are free (the
//! job run hands them out as audit tasks), otherwise by the coordinator. A node replay that
//! agrees with the result settles the audit; one that disagrees is arbitrated by the
//! coordinator's own replay, which judges both the result and the auditor.
//!
//! Seeds come from `seeds::SeedSource`: revealed hash chains whose successors are drawn from
//! fresh randomness and committed ahead, and an ordered log of anchors and reveals for the
//! ledger (docs/verification.md).

mod judge;
mod seeds;

pub use judge::{Comparator, RecordDelta};
pub use seeds::{AuditEvent, CHAIN_LENGTH, SeedSource};

use std::collections::{BTreeMap, HashSet};

use corex_core::messages::ResultVerdict;
use corex_core::{Hash, NodeId, WorkSpec};
use corex_verify::{
    AuditPolicy, ConsistencyPolicy, Tolerance, gather, is_audited, round_consistency,
    sample_coordinates,
};

use crate::error::CoordinatorError;

/// Failed audits after which the coordinator stops giving a node work (the ledger removes
/// the node at the same count).
pub const BAN_AFTER_FAILED_AUDITS: u64 = 3;

/// Coordinates drawn (from the revealed seed) for the consistency statistics.
const CONSISTENCY_SAMPLE: usize = 8_192;

/// A node's audit history, which sets its audit rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditRecord {
    pub passed: u64,
    pub failed: u64,
}

/// What a round's results are, which decides how they are screened and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// Gradients and pseudo-gradients: screened by consistency statistics and repeated bytes,
    /// compared with their replay within the tolerance.
    Update,
    /// Logits: not screened; compared within the tolerance (forward passes on other devices
    /// differ by rounding).
    Prediction,
    /// Transformed rows: not screened; compared bit for bit (transforms are exact).
    TransformedRows,
}

impl ResultKind {
    /// The kind of the results of a job whose fragments do `work`.
    pub fn of(work: &WorkSpec) -> Self {
        match work {
            WorkSpec::Gradient | WorkSpec::LocalSteps { .. } => Self::Update,
            WorkSpec::Inference { .. } => Self::Prediction,
            WorkSpec::Transform { .. } => Self::TransformedRows,
        }
    }
}

/// A result waiting for its verdict.
/// What a round's updates are screened for before the audit draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Repeated bytes and the gradient-consistency statistics (dense updates).
    Consistency,
    /// Repeated bytes only: compressed updates keep different coordinates per node, so their
    /// statistics say nothing about honesty; every audited one is judged by replay.
    RepeatsOnly,
}

pub struct Candidate<'a> {
    pub node: NodeId,
    pub fragment: Hash,
    pub commitment: Hash,
    pub result_hash: Hash,
    /// The result tensor: an update, logits or transformed rows.
    pub gradient: &'a [f32],
    /// The mean loss the node reported for its samples.
    pub loss: f32,
    /// Why the result fails its audit whatever a replay says (a compressed result whose bytes
    /// are not a faithful compression of what it claims), if it does.
    pub defect: Option<&'a str>,
    /// The part of the update `gradient` holds, when it holds only some (a compressed
    /// result's claim on the opened leaves of its feedback states): replays are compared on
    /// those values. `None`: the whole tensor.
    pub opened: Option<Opened<'a>>,
}

/// The part of an update a claim holds.
#[derive(Debug, Clone, Copy)]
pub struct Opened<'a> {
    /// The values held, one range after the other.
    pub covers: &'a [std::ops::Range<usize>],
    /// How far rounding may take the claim from the node's update (L2): where the replay is
    /// exactly zero on these values, a claim no larger matches it
    /// (`corex_verify::claim_rounding`).
    pub rounding: f64,
}

/// What an audit recomputes: the result tensor and the mean loss.
#[derive(Clone)]
pub struct Replay {
    pub gradient: Vec<f32>,
    pub loss: f32,
}

/// The verdict on one result and, for a rejected one, the gradient that replaces it.
pub struct Judged {
    pub verdict: ResultVerdict,
    pub replacement: Option<Vec<f32>>,
    /// The node whose agreeing replay audited the result (none: the coordinator's replay did).
    pub audited_by: Option<NodeId>,
}

pub struct Verifier {
    /// The audit seeds and what the ledger must record about them.
    pub seeds: SeedSource,
    policy: AuditPolicy,
    tolerance: Tolerance,
    consistency: ConsistencyPolicy,
    records: BTreeMap<NodeId, AuditRecord>,
    /// Hashes of every result judged so far.
    seen_results: HashSet<Hash>,
}

impl Verifier {
    /// `secret` comes from the OS at the edge; the first chain's anchor is public from the
    /// start. Chains hold `chain_length` reveals each; `policy` sets the audit rates.
    pub fn new(secret: [u8; 32], chain_length: usize, policy: AuditPolicy) -> Self {
        Self {
            seeds: SeedSource::new(secret, chain_length),
            policy,
            tolerance: Tolerance::default(),
            consistency: ConsistencyPolicy::default(),
            records: BTreeMap::new(),
            seen_results: HashSet::new(),
        }
    }

    /// The current chain's anchor (before any reveal: the one to commit at start).
    pub fn anchor(&self) -> Hash {
        self.seeds.anchor()
    }

    pub fn record(&self, node: &NodeId) -> AuditRecord {
        self.records.get(node).copied().unwrap_or_default()
    }

    /// Counts a check `node`'s result passed (`passed`) or failed outside a replay audit (a
    /// federated result repeating earlier bytes, which nobody can replay).
    pub fn count_check(&mut self, node: &NodeId, passed: bool) {
        let record = self.records.entry(*node).or_default();
        if passed {
            record.passed += 1;
        } else {
            record.failed += 1;
        }
    }

    /// Bans `node` from the start: one the stored ledger removed before this verifier, whose
    /// records live in memory, existed (a coordinator restart).
    pub fn ban(&mut self, node: NodeId) {
        let record = self.records.entry(node).or_default();
        record.failed = record.failed.max(BAN_AFTER_FAILED_AUDITS);
    }

    /// Puts back a node's record as a coordinator stored it before a restart.
    pub fn restore_record(&mut self, node: NodeId, record: AuditRecord) {
        self.records.insert(node, record);
    }

    /// A node caught cheating this often gets no more work.
    pub fn is_banned(&self, node: &NodeId) -> bool {
        self.record(node).failed >= BAN_AFTER_FAILED_AUDITS
    }

    /// Whether `node` may replay other nodes' results: it has passed its probation audits
    /// and never failed one. Cheaters that cheat from the start never qualify.
    pub fn may_audit(&self, node: &NodeId) -> bool {
        let record = self.record(node);
        record.failed == 0 && record.passed >= u64::from(self.policy.probation_audits)
    }

    /// Decides which of `job`'s complete round's results are replayed: reveals the next seed
    /// (the results are committed by now), and for updates computes the consistency flags and
    /// finds repeated result bytes; a flag forces an audit, the seed and each node's rate pick
    /// the rest.
    pub fn plan_round(
        &mut self,
        job: &Hash,
        candidates: &[Candidate<'_>],
        kind: ResultKind,
        screen: Screen,
    ) -> Result<AuditPlan, CoordinatorError> {
        let seed = self.seeds.reveal(job);
        let flags = match kind {
            ResultKind::Update => self.update_flags(&seed, candidates, screen)?,
            ResultKind::Prediction | ResultKind::TransformedRows => vec![None; candidates.len()],
        };
        // Rates come from each node's record before this round: a new node's results are all
        // audited until its probation audits have passed, however many it sends in a round.
        let audits = candidates
            .iter()
            .zip(flags)
            .map(|(candidate, flag)| {
                let record = self.record(&candidate.node);
                let rate = self.policy.rate_ppm(record.passed, record.failed);
                let audited = flag.is_some() || is_audited(&seed, &candidate.commitment, rate);
                PlannedAudit { audited, flag }
            })
            .collect();
        Ok(AuditPlan { seed, kind, audits })
    }

    /// The flag of each update of a round: repeated bytes, or else (when `screen` asks for
    /// it) a consistency flag.
    fn update_flags(
        &mut self,
        seed: &Hash,
        candidates: &[Candidate<'_>],
        screen: Screen,
    ) -> Result<Vec<Option<String>>, CoordinatorError> {
        let consistency = match screen {
            Screen::Consistency => {
                let parts: Vec<&[f32]> = candidates.iter().map(|c| c.gradient).collect();
                let len = parts.first().map_or(0, |part| part.len());
                let sampled = gather(&parts, &sample_coordinates(seed, len, CONSISTENCY_SAMPLE));
                let sampled: Vec<&[f32]> = sampled.iter().map(Vec::as_slice).collect();
                round_consistency(&sampled, &self.consistency)
                    .map_err(|error| CoordinatorError::Training(error.to_string()))?
                    .into_iter()
                    .map(|consistency| {
                        consistency
                            .flag
                            .map(|flag| format!("{flag:?}").to_lowercase())
                    })
                    .collect()
            }
            Screen::RepeatsOnly => vec![None; candidates.len()],
        };
        // A result is repeated if its bytes were judged in an earlier round or appear more
        // than once in this one; every copy is flagged, whichever came first.
        let mut in_round: BTreeMap<Hash, usize> = BTreeMap::new();
        for candidate in candidates {
            *in_round.entry(candidate.result_hash).or_default() += 1;
        }
        let repeated: Vec<bool> = candidates
            .iter()
            .map(|c| in_round[&c.result_hash] > 1 || self.seen_results.contains(&c.result_hash))
            .collect();
        self.seen_results
            .extend(candidates.iter().map(|candidate| candidate.result_hash));
        Ok(repeated
            .into_iter()
            .zip(consistency)
            .map(|(repeated, consistency)| {
                if repeated {
                    Some("repeated_result".to_owned())
                } else {
                    consistency
                }
            })
            .collect())
    }

    /// The pure judge of replays, with this verifier's tolerance: it runs off the engine
    /// lock, and what it decides about nodes' records comes back as [`RecordDelta`]s for
    /// [`Verifier::apply`].
    pub fn comparator(&self) -> Comparator {
        Comparator {
            tolerance: self.tolerance,
        }
    }

    /// Counts what a round's judgement decided about nodes' records.
    pub fn apply(&mut self, deltas: &[RecordDelta]) {
        for delta in deltas {
            self.count_check(&delta.node, delta.passed);
        }
    }
}

/// Which results of a round are replayed, decided once its results are committed.
#[derive(Debug, Clone)]
pub struct AuditPlan {
    /// The seed revealed for this round.
    pub seed: Hash,
    /// What the round's results are, which sets how they are compared with replays.
    pub kind: ResultKind,
    /// One entry per candidate, in order.
    pub audits: Vec<PlannedAudit>,
}

#[derive(Debug, Clone)]
pub struct PlannedAudit {
    pub audited: bool,
    /// The consistency or repetition flag that forced the audit, if one did (updates only).
    pub flag: Option<String>,
}

/// The verdict on one segment audit.
pub struct SegmentJudgement {
    /// Why the claimed segment disagrees with the replay that decided (none: it agrees).
    pub disagreement: Option<String>,
    /// The node whose agreeing replay settled it (none: the coordinator's replay did).
    pub audited_by: Option<NodeId>,
    /// The verdict on the node's replay of the segment, when one came.
    pub auditor_verdict: Option<ResultVerdict>,
}

/// An audit replay computed by a node (not the audited one).
pub struct NodeReplay {
    pub auditor: NodeId,
    /// Hash of the replay's tensor bytes.
    pub result_hash: Hash,
    pub replay: Replay,
}

/// The verdicts of a round: one per result, one per node replay (by candidate index), and
/// what they count in nodes' audit records.
#[derive(Default)]
pub struct RoundJudgement {
    pub results: Vec<Judged>,
    pub audits: Vec<(usize, ResultVerdict)>,
    pub records: Vec<RecordDelta>,
}
