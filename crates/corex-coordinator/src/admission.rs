//! Who may do what with jobs: the operator's admission policy for job owners, and read access
//! to a job's spec, report, weights and outputs.
//!
//! In: the key that signed a request, the coordinator's operators, and (for a stake policy)
//! that key's stake on the ledger. Out: admitted, or a refusal naming the rule. Pure: the
//! caller looks the stake up; nothing here reads the ledger, a clock or the network.
//!
//! Invariant: an operator is admitted and may read everything, whatever the policy; a private
//! job is readable only by its owner and the operators.

use std::collections::BTreeSet;

use corex_core::NodeId;

use crate::error::CoordinatorError;

/// Which keys may submit jobs and upload datasets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionPolicy {
    /// Any key (a devnet, a test network).
    Open,
    /// Only the listed keys (and the operators). Empty is the default: a coordinator started
    /// without a policy admits only its operators.
    AllowList(BTreeSet<NodeId>),
    /// Keys with at least this much stake on the ledger, in base units (and the operators).
    MinStake(u128),
}

impl AdmissionPolicy {
    /// A coordinator started without a policy admits only its operators.
    pub fn operators_only() -> Self {
        Self::AllowList(BTreeSet::new())
    }
}

impl Default for AdmissionPolicy {
    fn default() -> Self {
        Self::operators_only()
    }
}

/// The admission policy with the keys that hold the operator's rights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    pub policy: AdmissionPolicy,
    /// Admitted whatever the policy; may read and cancel every job and see nodes' addresses.
    pub operators: BTreeSet<NodeId>,
}

impl Admission {
    pub fn is_operator(&self, key: &NodeId) -> bool {
        self.operators.contains(key)
    }

    /// Whether the policy needs `owner`'s stake to decide (only then need the caller look it up).
    pub fn needs_stake(&self, owner: &NodeId) -> bool {
        matches!(self.policy, AdmissionPolicy::MinStake(_)) && !self.is_operator(owner)
    }

    /// Admits `owner` to submit jobs and upload datasets; `stake` is its stake on the ledger
    /// (consulted only under a stake policy).
    pub fn admit(&self, owner: &NodeId, stake: u128) -> Result<(), CoordinatorError> {
        if self.is_operator(owner) {
            return Ok(());
        }
        match &self.policy {
            AdmissionPolicy::Open => Ok(()),
            AdmissionPolicy::AllowList(allowed) if allowed.contains(owner) => Ok(()),
            AdmissionPolicy::AllowList(_) => Err(CoordinatorError::NotAdmitted(format!(
                "key {} is not on this coordinator's allow-list of job owners",
                owner.short()
            ))),
            AdmissionPolicy::MinStake(minimum) if stake >= *minimum => Ok(()),
            AdmissionPolicy::MinStake(minimum) => Err(CoordinatorError::NotAdmitted(format!(
                "key {} has {stake} base units staked; job owners here need at least {minimum}",
                owner.short()
            ))),
        }
    }

    /// Whether `reader` may read a job owned by `owner` (`public`: the job says anyone may).
    pub fn may_read(&self, reader: &NodeId, owner: &NodeId, public: bool) -> bool {
        public || reader == owner || self.is_operator(reader)
    }

    /// Whether `key` may cancel a job owned by `owner`.
    pub fn may_cancel(&self, key: &NodeId, owner: &NodeId) -> bool {
        key == owner || self.is_operator(key)
    }
}

#[cfg(test)]
mod tests {
    use corex_core::Keypair;

    use super::*;

    fn key(byte: u8) -> NodeId {
        Keypair::from_secret([byte; 32]).id()
    }

    #[test]
    fn the_default_admits_only_operators() {
        let admission = Admission {
            operators: BTreeSet::from([key(1)]),
            ..Admission::default()
        };
        assert!(admission.admit(&key(1), 0).is_ok());
        let refused = admission.admit(&key(2), u128::MAX).unwrap_err();
        assert_eq!(refused.code(), "not_admitted");
    }

    #[test]
    fn allow_list_and_stake_policies() {
        let listed = Admission {
            policy: AdmissionPolicy::AllowList(BTreeSet::from([key(2)])),
            operators: BTreeSet::new(),
        };
        assert!(listed.admit(&key(2), 0).is_ok());
        assert!(listed.admit(&key(3), 0).is_err());
        let staked = Admission {
            policy: AdmissionPolicy::MinStake(100),
            operators: BTreeSet::new(),
        };
        assert!(staked.needs_stake(&key(2)));
        assert!(staked.admit(&key(2), 100).is_ok());
        assert!(staked.admit(&key(2), 99).is_err());
        assert!(
            Admission {
                policy: AdmissionPolicy::Open,
                operators: BTreeSet::new()
            }
            .admit(&key(9), 0)
            .is_ok()
        );
    }

    #[test]
    fn private_jobs_are_read_by_owner_and_operators_only() {
        let admission = Admission {
            policy: AdmissionPolicy::Open,
            operators: BTreeSet::from([key(1)]),
        };
        let owner = key(2);
        assert!(admission.may_read(&owner, &owner, false));
        assert!(admission.may_read(&key(1), &owner, false));
        assert!(!admission.may_read(&key(3), &owner, false));
        assert!(admission.may_read(&key(3), &owner, true));
        assert!(!admission.may_cancel(&key(3), &owner));
        assert!(admission.may_cancel(&key(1), &owner));
    }
}
