//! Proof of contribution at round close: which results to replay (a revealed seed and each
//! node's audit rate), the replays and their comparison, and the verdicts. Two things force an
//! audit: a gradient-consistency flag, and a result whose bytes were seen before (a copy, or
//! an old result resubmitted). Only the audit decides, so an honest node whose gradient looks
//! odd, or happens to repeat, is replayed and accepted, never punished.

use std::collections::{BTreeMap, HashSet};

use corex_core::messages::ResultVerdict;
use corex_core::{Hash, NodeId};
use corex_verify::{
    AuditPolicy, ConsistencyPolicy, SeedChain, Tolerance, compare, gather, is_audited,
    round_consistency, sample_coordinates,
};

use crate::error::CoordinatorError;

/// Failed audits after which the coordinator stops giving a node work (the ledger removes
/// the node at the same count).
pub const BAN_AFTER_FAILED_AUDITS: u64 = 3;

/// Coordinates drawn (from the revealed seed) for the consistency statistics.
const CONSISTENCY_SAMPLE: usize = 8_192;

/// Reveals in one seed chain; a new chain (with a new anchor) follows when it runs out.
const CHAIN_LENGTH: usize = 100_000;

/// A node's audit history, which sets its audit rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditRecord {
    pub passed: u64,
    pub failed: u64,
}

/// A result waiting for its verdict.
pub struct Candidate<'a> {
    pub node: NodeId,
    pub fragment: Hash,
    pub commitment: Hash,
    pub result_hash: Hash,
    pub gradient: &'a [f32],
    /// The mean loss the node reported for its samples.
    pub loss: f32,
}

/// What an audit recomputes: the gradient and the mean loss.
pub struct Replay {
    pub gradient: Vec<f32>,
    pub loss: f32,
}

/// Largest accepted difference between reported and replayed loss, relative to the replayed
/// loss (with an absolute floor for losses near zero). Honest replays match exactly.
const LOSS_TOLERANCE: f32 = 1e-3;

/// The verdict on one result and, for a rejected one, the gradient that replaces it.
pub struct Judged {
    pub verdict: ResultVerdict,
    pub replacement: Option<Vec<f32>>,
}

pub struct Verifier {
    secret: [u8; 32],
    chain: SeedChain,
    next_reveal: usize,
    policy: AuditPolicy,
    tolerance: Tolerance,
    consistency: ConsistencyPolicy,
    records: BTreeMap<NodeId, AuditRecord>,
    /// Hashes of every result judged so far.
    seen_results: HashSet<Hash>,
}

impl Verifier {
    /// `secret` comes from the OS at the edge; the chain's anchor is public from the start.
    pub fn new(secret: [u8; 32]) -> Self {
        Self {
            chain: SeedChain::new(secret, CHAIN_LENGTH),
            secret,
            next_reveal: 1,
            policy: AuditPolicy::default(),
            tolerance: Tolerance::default(),
            consistency: ConsistencyPolicy::default(),
            records: BTreeMap::new(),
            seen_results: HashSet::new(),
        }
    }

    pub fn anchor(&self) -> Hash {
        self.chain.anchor()
    }

    pub fn record(&self, node: &NodeId) -> AuditRecord {
        self.records.get(node).copied().unwrap_or_default()
    }

    /// A node caught cheating this often gets no more work.
    pub fn is_banned(&self, node: &NodeId) -> bool {
        self.record(node).failed >= BAN_AFTER_FAILED_AUDITS
    }

    /// The next seed of the chain, revealed now that the round's results are committed.
    fn reveal(&mut self) -> Hash {
        if self.next_reveal > self.chain.len() {
            self.secret = corex_core::Hash::of_parts(&[b"corex-next-chain", &self.secret]).0;
            self.chain = SeedChain::new(self.secret, CHAIN_LENGTH);
            self.next_reveal = 1;
        }
        let seed = self.chain.reveal(self.next_reveal).unwrap_or_default();
        self.next_reveal += 1;
        seed
    }

    /// Judges a closed round's results. `replay(i)` recomputes candidate `i` from scratch.
    /// Returns the revealed seed and one verdict per candidate, in order.
    pub fn judge_round(
        &mut self,
        candidates: &[Candidate<'_>],
        mut replay: impl FnMut(usize) -> Result<Replay, CoordinatorError>,
    ) -> Result<(Hash, Vec<Judged>), CoordinatorError> {
        let seed = self.reveal();
        let parts: Vec<&[f32]> = candidates.iter().map(|c| c.gradient).collect();
        let len = parts.first().map_or(0, |part| part.len());
        let sampled = gather(&parts, &sample_coordinates(&seed, len, CONSISTENCY_SAMPLE));
        let sampled: Vec<&[f32]> = sampled.iter().map(Vec::as_slice).collect();
        let consistency = round_consistency(&sampled, &self.consistency)
            .map_err(|error| CoordinatorError::Training(error.to_string()))?;
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
        let mut judged = Vec::with_capacity(candidates.len());
        for (index, candidate) in candidates.iter().enumerate() {
            let record = self.record(&candidate.node);
            let rate = self.policy.rate_ppm(record.passed, record.failed);
            let flag = if repeated[index] {
                Some("repeated_result".to_owned())
            } else {
                consistency[index]
                    .flag
                    .map(|flag| format!("{flag:?}").to_lowercase())
            };
            let audited = flag.is_some() || is_audited(&seed, &candidate.commitment, rate);
            if !audited {
                judged.push(Judged {
                    verdict: ResultVerdict::Accepted {
                        audited: false,
                        flag: None,
                    },
                    replacement: None,
                });
                continue;
            }
            let Replay {
                gradient: truth,
                loss,
            } = replay(index)?;
            let comparison = compare(candidate.gradient, &truth, &self.tolerance)
                .map_err(|error| CoordinatorError::Training(error.to_string()))?;
            let loss_matches =
                (candidate.loss - loss).abs() <= LOSS_TOLERANCE * loss.abs().max(1e-3);
            let entry = self.records.entry(candidate.node).or_default();
            if comparison.within && loss_matches {
                entry.passed += 1;
                judged.push(Judged {
                    verdict: ResultVerdict::Accepted {
                        audited: true,
                        flag,
                    },
                    replacement: None,
                });
            } else {
                entry.failed += 1;
                let truth_hash = Hash::of(
                    &truth
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect::<Vec<u8>>(),
                );
                judged.push(Judged {
                    verdict: ResultVerdict::Rejected {
                        reason: format!(
                            "replay disagrees: relative L2 {:.3e}, cosine {:.4}, reported loss {:.6} against {:.6}{}",
                            comparison.relative_l2,
                            comparison.cosine,
                            candidate.loss,
                            loss,
                            flag.map(|f| format!("; consistency flag {f}"))
                                .unwrap_or_default()
                        ),
                        evidence: Hash::of_parts(&[
                            b"corex-evidence",
                            &candidate.fragment.0,
                            &candidate.result_hash.0,
                            &truth_hash.0,
                        ]),
                    },
                    replacement: Some(truth),
                });
            }
        }
        Ok((seed, judged))
    }
}
