//! Why the ledger refused something. Every refusal leaves the state exactly as it was.

use corex_core::{Hash, NodeId};
use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LedgerError {
    #[error("signature does not verify for signer {}", .0.short())]
    BadSignature(NodeId),
    #[error("only the coordinator may sign records; {} is not it", .0.short())]
    NotCoordinator(NodeId),
    #[error("unknown account {}", .0.short())]
    UnknownAccount(NodeId),
    #[error("{} is not a registered node", .0.short())]
    NotANode(NodeId),
    #[error("node {} is already registered", .0.short())]
    AlreadyRegistered(NodeId),
    #[error("node {} has been removed", .0.short())]
    NodeRemoved(NodeId),
    #[error("nonce {got} was already used (next is {expected})")]
    NonceReplayed { expected: u64, got: u64 },
    #[error("nonce {got} skips ahead (next is {expected})")]
    NonceSkipped { expected: u64, got: u64 },
    #[error("amount must be more than zero")]
    ZeroAmount,
    #[error("balance {balance} is less than {amount}")]
    Overdraft { balance: u128, amount: u128 },
    #[error("cannot unstake {amount}: only {stake} is staked")]
    UnstakeTooMuch { stake: u128, amount: u128 },
    #[error("nothing to withdraw in epoch {epoch}: unbonding ends at epoch {earliest:?}")]
    UnbondingNotDone { epoch: u64, earliest: Option<u64> },
    #[error("epoch {epoch} is not over: it ends at ledger time {ends_ms} ms")]
    EpochNotOver { epoch: u64, ends_ms: u64 },
    #[error("quality {0} ppm is over 1,000,000")]
    QualityOutOfRange(u32),
    #[error("round {got} of job {} is not after the last recorded round {last}", job.short())]
    RoundOutOfOrder { job: Hash, last: u32, got: u32 },
    #[error("round {round}: its audit seed is not the one last revealed for its job")]
    AuditSeedBroken { round: u32 },
    #[error("audit seed {} does not follow the last reveal or a committed anchor", seed.short())]
    AuditSeedOutOfOrder { seed: Hash },
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
    #[error("invalid genesis: {0}")]
    InvalidGenesis(String),
    #[error("block {got} does not follow height {expected}")]
    BadHeight { expected: u64, got: u64 },
    #[error("block {height} does not link to the head {}", expected.short())]
    BadPrevHash { height: u64, expected: Hash },
    #[error("block {height} was not produced by the coordinator")]
    BadProducer { height: u64 },
    #[error("block {height}: the producer's signature does not verify")]
    BadBlockSignature { height: u64 },
    #[error("block {height}: timestamp goes backwards")]
    TimestampBackwards { height: u64 },
    #[error("block {height}: transaction root does not match its transactions")]
    BadTxRoot { height: u64 },
    #[error("block {height}: state root {} does not match the replayed state {}", claimed.short(), replayed.short())]
    BadStateRoot {
        height: u64,
        claimed: Hash,
        replayed: Hash,
    },
    #[error("block {height}, transaction {index}: {error}")]
    BlockTx {
        height: u64,
        index: usize,
        error: Box<LedgerError>,
    },
    #[error("total supply is {found}, not {expected}: the ledger is corrupt")]
    SupplyBroken { expected: u128, found: u128 },
}
