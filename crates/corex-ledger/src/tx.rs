//! Transactions: what accounts sign (transfers, node registration, staking) and what the
//! coordinator records (contributions, verdicts, rounds, epoch settlements).

use corex_core::{Hash, Keypair, NodeId, Signature};
use serde::{Deserialize, Serialize};

use crate::error::LedgerError;

/// The device class a node declares when it registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    Edge,
    Cpu,
    Gpu,
    Hpc,
}

/// One node's verified work, as the coordinator measured it. Units are exact FLOPs (the cost
/// the coordinator derived from the spec, never rounded up), so no fragment counts for more
/// than it cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributionEntry {
    pub node: NodeId,
    /// Compute-PoC units: FLOPs of verified work.
    #[serde(with = "crate::amount::as_string")]
    pub compute_units: u128,
    /// Model-PoT units: FLOPs of training contribution judged useful.
    #[serde(with = "crate::amount::as_string")]
    pub pot_units: u128,
    /// Verification units: FLOPs of audits replayed for others.
    #[serde(with = "crate::amount::as_string")]
    pub verification_units: u128,
    /// Quality of this work, 0..=1,000,000 ppm.
    pub quality_ppm: u32,
}

impl ContributionEntry {
    /// Compute-PoC work only, at full quality.
    pub fn compute(node: NodeId, compute_units: u128) -> Self {
        Self {
            node,
            compute_units,
            pot_units: 0,
            verification_units: 0,
            quality_ppm: 1_000_000,
        }
    }
}

/// Why a result was dropped without blame (soft) or with it (suspicious soft rejects count as
/// abnormal events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftReason {
    Timeout,
    Infrastructure,
    Suspicious,
    /// A federated result the owner's held-out validation left out: statistics, not proof
    /// of cheating, so it costs the result's pay and a timeout's reputation, no more.
    Unhelpful,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Accept,
    SoftReject { reason: SoftReason },
    HardReject { evidence: Hash },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TxBody {
    Transfer {
        to: NodeId,
        #[serde(with = "crate::amount::as_string")]
        amount: u128,
    },
    RegisterNode {
        device_fingerprint: Hash,
        device_class: DeviceClass,
    },
    Stake {
        #[serde(with = "crate::amount::as_string")]
        amount: u128,
    },
    BeginUnbonding {
        #[serde(with = "crate::amount::as_string")]
        amount: u128,
    },
    /// Moves every unbonding entry whose period has ended back to the balance.
    Withdraw,
    /// Work to be paid from the release of the epoch the block falls in.
    RecordContributions {
        entries: Vec<ContributionEntry>,
        /// FLOPs of every result judged (accepted or not): the demand factor's numerator.
        #[serde(with = "crate::amount::as_string")]
        task_demand: u128,
    },
    RecordVerdict {
        node: NodeId,
        fragment: Hash,
        verdict: Verdict,
    },
    RecordRound {
        job: Hash,
        round: u32,
        model: Hash,
        /// Merkle root of the round's accepted result commitments.
        results_root: Hash,
        /// The audit seed that judged the round: the one revealed for `job` last.
        audit_seed: Hash,
    },
    /// Publishes the anchor of the next audit seed chain, before any result it will judge;
    /// the first anchor starts the chain, later ones are the successor of the current chain.
    CommitAuditChain { anchor: Hash },
    /// Reveals the next seed of the audit chain (in chain order), drawn for `job`'s round
    /// whose results are all committed.
    RevealAuditSeed { job: Hash, seed: Hash },
    /// Marks that epoch `epoch` is over by this block's time. Settlement itself needs no
    /// record: every block first settles the epochs that ended before its timestamp. The
    /// coordinator's timer sends this so that an idle ledger still closes epochs.
    SettleEpoch { epoch: u64 },
}

impl TxBody {
    /// Records only the coordinator may sign.
    pub fn is_coordinator_record(&self) -> bool {
        matches!(
            self,
            Self::RecordContributions { .. }
                | Self::RecordVerdict { .. }
                | Self::RecordRound { .. }
                | Self::CommitAuditChain { .. }
                | Self::RevealAuditSeed { .. }
                | Self::SettleEpoch { .. }
        )
    }
}

/// A transaction as it travels and is stored: body, signer, nonce, signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    pub signer: NodeId,
    /// The signer's transaction count after this one: 1 for its first.
    pub nonce: u64,
    pub body: TxBody,
    pub signature: Signature,
}

/// What a signature covers: the chain, the signer, the nonce and the body.
fn signing_bytes(chain: &Hash, signer: &NodeId, nonce: u64, body: &TxBody) -> Hash {
    Hash::of_parts(&[
        b"corex-tx-v1",
        &chain.0,
        &signer.0,
        &nonce.to_le_bytes(),
        &crate::canonical(body),
    ])
}

impl SignedTx {
    pub fn sign(key: &Keypair, chain: &Hash, nonce: u64, body: TxBody) -> Self {
        let signer = key.id();
        let message = signing_bytes(chain, &signer, nonce, &body);
        Self {
            signer,
            nonce,
            signature: key.sign(message.as_bytes()),
            body,
        }
    }

    /// The transaction's id: the hash of everything in it, signature included.
    pub fn id(&self) -> Hash {
        Hash::of_parts(&[b"corex-txid-v1", &crate::canonical(self)])
    }

    /// The message the signature must cover on chain `chain`.
    pub fn message(&self, chain: &Hash) -> Hash {
        signing_bytes(chain, &self.signer, self.nonce, &self.body)
    }

    pub fn verify_signature(&self, chain: &Hash) -> Result<(), LedgerError> {
        self.signer
            .verify(self.message(chain).as_bytes(), &self.signature)
            .map_err(|_| LedgerError::BadSignature(self.signer))
    }
}

/// Checks many signatures at once with ed25519 batch verification; on failure, finds the
/// first bad one. Faster than one by one when most are valid.
pub fn verify_batch(chain: &Hash, txs: &[SignedTx]) -> Result<(), LedgerError> {
    let messages: Vec<Hash> = txs.iter().map(|tx| tx.message(chain)).collect();
    let mut keys = Vec::with_capacity(txs.len());
    for tx in txs {
        // Weak (small-order) keys are refused: anyone can sign for them.
        match tx.signer.verifying_key() {
            Ok(key) => keys.push(key),
            Err(_) => return Err(LedgerError::BadSignature(tx.signer)),
        }
    }
    let signatures: Vec<ed25519_dalek::Signature> = txs
        .iter()
        .map(|tx| ed25519_dalek::Signature::from_bytes(&tx.signature.0))
        .collect();
    let message_bytes: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes().as_slice()).collect();
    if ed25519_dalek::verify_batch(&message_bytes, &signatures, &keys).is_ok() {
        return Ok(());
    }
    for tx in txs {
        tx.verify_signature(chain)?;
    }
    Ok(())
}
