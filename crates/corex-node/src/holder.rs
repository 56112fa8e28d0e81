//! A data holder's own rules for the federated jobs that name it: whose jobs it computes, the
//! least differential-privacy noise it accepts, and how much privacy (ε) it lets one job
//! spend. The coordinator and the job owner cannot override them: the data never leaves
//! without the holder's agreement.
//!
//! In: the job's owner and spec, the round about to be computed, the holder's sample count.
//! Out: `None` (compute it) or the reason to decline. Pure: no I/O, no clock.
//!
//! Secure by default: a holder with no allowed owners computes no federated job at all.

use std::collections::BTreeSet;

use corex_core::{JobSpec, NodeId, WorkSpec};

/// What a data holder agrees to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HolderPolicy {
    /// Job owners whose federated jobs this holder computes; empty: none.
    pub allowed_owners: BTreeSet<NodeId>,
    /// The least DP-SGD noise multiplier a job must use; 0: jobs without differential
    /// privacy are accepted too.
    pub min_noise_multiplier: f64,
    /// The most privacy loss ε (at the job's δ) one job may spend on this holder's data, by
    /// the accountant's count over every round up to the one about to be computed (as if the
    /// holder computed every round: an upper bound). `None`: no budget.
    pub max_epsilon: Option<f64>,
}

impl HolderPolicy {
    /// Why this holder declines round `round` of the job `spec` by `owner` on its `samples`
    /// local samples; `None` when it computes it.
    pub fn refusal(
        &self,
        owner: &NodeId,
        spec: &JobSpec,
        round: u32,
        samples: usize,
    ) -> Option<String> {
        if !self.allowed_owners.contains(owner) {
            return Some(format!(
                "job owner {} is not one this data holder allows",
                owner.short()
            ));
        }
        let federated = spec.federated.as_ref()?;
        let Some(privacy) = federated.privacy else {
            return (self.min_noise_multiplier > 0.0 || self.max_epsilon.is_some()).then(|| {
                "the job uses no differential privacy; this data holder requires it".into()
            });
        };
        if privacy.noise_multiplier < self.min_noise_multiplier {
            return Some(format!(
                "noise multiplier {} is below this data holder's floor of {}",
                privacy.noise_multiplier, self.min_noise_multiplier
            ));
        }
        let budget = self.max_epsilon?;
        let steps_per_round = match spec.work {
            WorkSpec::LocalSteps { steps, .. } => u64::from(steps),
            _ => 1,
        };
        let steps = (u64::from(round) + 1).saturating_mul(steps_per_round);
        let sampling_rate = f64::from(federated.local_batch) / samples.max(1) as f64;
        let spent = corex_ml::epsilon(
            privacy.noise_multiplier,
            sampling_rate.min(1.0),
            steps,
            privacy.delta,
        )
        .map_or(f64::INFINITY, |spent| spent.epsilon);
        (spent > budget).then(|| {
            format!(
                "round {round} would bring this job's privacy loss to ε = {spent:.3}, over this data holder's budget of {budget}"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use corex_core::{DataHolder, Keypair, PrivacySpec};

    use super::*;

    fn job(privacy: Option<PrivacySpec>) -> JobSpec {
        let holder = DataHolder {
            node: Keypair::from_secret([1; 32]).id(),
            samples: 400,
        };
        JobSpec::digits_federated(vec![holder], privacy)
    }

    fn private(noise_multiplier: f64) -> Option<PrivacySpec> {
        Some(PrivacySpec {
            clip_norm: 1.0,
            noise_multiplier,
            delta: 1e-5,
        })
    }

    #[test]
    fn a_holder_computes_only_for_owners_it_allows() {
        let owner = Keypair::from_secret([9; 32]).id();
        let stranger = Keypair::from_secret([8; 32]).id();
        assert!(
            HolderPolicy::default()
                .refusal(&owner, &job(None), 0, 400)
                .is_some()
        );
        let policy = HolderPolicy {
            allowed_owners: BTreeSet::from([owner]),
            ..HolderPolicy::default()
        };
        assert_eq!(policy.refusal(&owner, &job(None), 0, 400), None);
        assert!(policy.refusal(&stranger, &job(None), 0, 400).is_some());
    }

    #[test]
    fn the_noise_floor_and_the_budget_bind() {
        let owner = Keypair::from_secret([9; 32]).id();
        let policy = HolderPolicy {
            allowed_owners: BTreeSet::from([owner]),
            min_noise_multiplier: 1.0,
            max_epsilon: Some(8.0),
        };
        assert!(
            policy.refusal(&owner, &job(None), 0, 400).is_some(),
            "no DP at all"
        );
        assert!(
            policy.refusal(&owner, &job(private(0.5)), 0, 400).is_some(),
            "too little noise"
        );
        assert_eq!(policy.refusal(&owner, &job(private(2.0)), 0, 400), None);
        let spent = policy.refusal(&owner, &job(private(1.0)), 10_000, 400);
        assert!(
            spent.is_some_and(|reason| reason.contains("budget")),
            "ε grows with rounds"
        );
    }
}
