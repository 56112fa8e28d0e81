//! The CXT mining pool ledger, pure and deterministic.
//!
//! Genesis mints exactly 100,000,000 CXT into the pool; nothing else mints, no key administers
//! the rules, and total supply is checked after every block. Accounts sign transfers, node
//! registration and staking; the coordinator signs records of contributions, verdicts, rounds
//! and audit seeds. Epochs are spans of ledger time (block timestamps), settled by the first
//! block past their end. Amounts are u128 base units (18 decimals) with checked arithmetic;
//! time and randomness never enter (timestamps come in with blocks). Storage lives elsewhere
//! (`corex-ledger-store`); this crate does no I/O.
//!
//! | module | owns |
//! | --- | --- |
//! | `amount` | base units, the total supply, exact CXT parsing and formatting, `mul_div` |
//! | `params` | the economic constants and the genesis record |
//! | `emission` | the per-epoch release share from the half-life, in integer fixed point |
//! | `tx` | transaction bodies, signing and (batch) verification |
//! | `account` | balances, stake, unbonding and locked rewards |
//! | `reputation` | node profiles, score, tier, priority, Stake-Boost |
//! | `settlement` | the epoch release and payout rule |
//! | `epochs` | ledger time: settling the epochs a block's timestamp has passed |
//! | `seeds` | the audit seed chains: anchors, reveals in chain order, claims by rounds |
//! | `state` | the state and `apply` |
//! | `block`, `merkle`, `chain` | blocks, roots, proposing and replaying |
//! | `views` | the summary, account and receipt shown over the API |

mod account;
mod amount;
mod block;
mod chain;
mod emission;
mod epochs;
mod error;
mod merkle;
mod params;
mod reputation;
mod seeds;
mod settlement;
mod state;
mod tx;
mod views;

pub use account::{Account, LockedReward, Unbonding};
pub use amount::{
    AmountError, BASE_UNITS_PER_CXT, PPM, TOTAL_SUPPLY, format_cxt, mul_div, parse_cxt,
};
pub use block::{Block, BlockHeader, tx_root};
pub use chain::{Chain, LeftOut, Proposal, Refused};
pub use emission::{PPQ, exp2_neg_ppq, release_per_epoch_ppq};
pub use error::LedgerError;
pub use merkle::merkle_root;
pub use params::{FOUR_YEARS_MS, Genesis, Params};
pub use reputation::{NodeProfile, NodeStatus, Tier, stake_boost_ppm};
pub use seeds::AuditSeeds;
pub use settlement::{EpochLoad, EpochWork, Participant, Settlement, demand_factor_ppm, settle};
pub use state::{RoundHead, State, Supply};
pub use tx::{ContributionEntry, DeviceClass, SignedTx, SoftReason, TxBody, Verdict, verify_batch};
pub use views::{AccountView, LedgerSummary, NodeView, TxReceipt};

/// The canonical bytes of a value: its JSON with fields in declaration order and maps sorted.
/// Only types without floats or hash maps go through here, so the bytes are the same on every
/// machine.
pub(crate) fn canonical<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
