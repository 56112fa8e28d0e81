//! Proof of contribution, the pure part: everything here is a function of its inputs.
//!
//! | module | owns |
//! | --- | --- |
//! | `audit` | the revealed seed chain, audit draws, adaptive audit rates |
//! | `compare` | replay comparison with calibrated tolerances (relative L2, cosine) |
//! | `compressed` | a compressed pseudo-gradient's claimed update on the opened chunks of its feedback states and whether its bytes are faithful there |
//! | `capability` | the Freivalds capability challenge |
//! | `consistency` | Model-PoT gradient consistency and the quality figure |
//! | `aggregate` | the aggregation rules: the mean and the robust ones (trimmed mean, median, centred clipping) |
//! | `detection` | the audit economics: catch probability against audit cost, by simulation |

mod aggregate;
mod audit;
mod capability;
mod compare;
mod compressed;
mod consistency;
mod detection;
mod error;

pub use aggregate::aggregate;
pub use audit::{AuditPolicy, SeedChain, audited_segment, follows, is_audited};
pub use capability::{
    CHALLENGE_SIZE, challenge_matrices, check_vector, commit_product, demonstrated_gflops,
    freivalds,
};
pub use compare::{Comparison, Tolerance, compare, norm};
pub use compressed::{OPENED_LEAVES, check_compression, claim_rounding, claimed_update};
pub use consistency::{
    Consistency, ConsistencyPolicy, Inconsistency, gather, round_consistency, sample_coordinates,
};
pub use detection::{DetectionStudy, Population, study_detection};
pub use error::VerifyError;
