//! The resource budget of a job spec: what running it would cost, computed from the spec alone
//! without allocating anything in proportion to it, and the operator's limits it must fit.
//!
//! In: a deserialized `JobSpec` (bounded in size by the request body limit) and the
//! coordinator's `ResourceLimits`. Out: the spec's `ResourceUse`, or a `SpecError::OverBudget`
//! naming the first limit it breaks. The coordinator checks this before it validates the spec
//! in detail, loads data, slices rounds or initializes a model, so a spec that passes can
//! allocate at most what the limits allow, on the coordinator and on every node.
//!
//! Invariant (fuzzed): a spec that passes `ResourceLimits::check` and `JobSpec::validate` has a
//! `resource_use()` within every limit, and every figure is computed with saturating integer
//! arithmetic, so no spec can overflow it into a small number.

use serde::{Deserialize, Serialize};

use crate::error::SpecError;
use crate::job::JobSpec;
use crate::work::WorkSpec;

/// Bytes of one parameter or activation value (f32).
const VALUE_BYTES: u64 = 4;
/// Copies of the parameters a training fragment holds at once: weights, gradients and up to
/// two optimizer moments.
const PARAMETER_COPIES: u64 = 4;
/// Copies of each activation a training step keeps: the forward value, its gradient and the
/// pre-activation that the backward pass reads.
const ACTIVATION_COPIES: u64 = 3;

/// The operator's limits on one job, set in the coordinator's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// Layers of the model (hidden layers plus the output layer).
    pub max_layers: u64,
    /// Trainable scalars of the model.
    pub max_parameters: u64,
    /// Estimated working memory of one fragment on a node (see [`ResourceUse`]).
    pub max_fragment_memory_bytes: u64,
    /// FLOPs of the whole job, summed over every round's fragments.
    pub max_job_flops: u128,
    /// Rounds of the job.
    pub max_rounds: u64,
    /// Data holders of a federated job.
    pub max_holders: u64,
    /// Samples one data holder may declare (a fragment may name every one of them).
    pub max_holder_samples: u64,
    /// Bytes of one fragment's result tensor.
    pub max_result_bytes: u64,
}

impl Default for ResourceLimits {
    /// Limits that fit a coordinator of a few GiB and nodes of 2 GiB: 16 M parameters,
    /// 1 GiB per fragment, 10¹⁸ FLOPs (about three GPU-days at 4 TFLOP/s), 100,000 rounds.
    fn default() -> Self {
        Self {
            max_layers: 64,
            max_parameters: 16 * 1024 * 1024,
            max_fragment_memory_bytes: 1 << 30,
            max_job_flops: 1_000_000_000_000_000_000,
            max_rounds: u64::from(crate::job::MAX_ROUNDS),
            max_holders: crate::federated::MAX_HOLDERS as u64,
            max_holder_samples: 1 << 22,
            max_result_bytes: 256 * 1024 * 1024,
        }
    }
}

/// What a job would cost, from its spec alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUse {
    pub layers: u64,
    pub parameters: u64,
    /// `4 B × (4 × parameters + 3 × batch × activations per sample + indices)`: parameter copies,
    /// activations of the largest batch one step holds, and the fragment's sample indices.
    pub fragment_memory_bytes: u64,
    pub job_flops: u128,
    pub rounds: u64,
    pub holders: u64,
    /// The most samples any one data holder declares (0 for a job on shared data).
    pub holder_samples: u64,
    pub result_bytes: u64,
}

impl JobSpec {
    /// The job's resource use. Iterates the spec's lists once and allocates nothing.
    pub fn resource_use(&self) -> ResourceUse {
        let model = &self.model;
        let parameters = model.parameter_count_u64();
        let macs = model.forward_macs_per_sample();
        let activations = model.activations_per_sample();
        let fragment_samples = u64::from(self.fragment_samples);
        let (holders, holder_samples) = self.federated.as_ref().map_or((0, 0), |federated| {
            let most = federated.holders.iter().map(|h| u64::from(h.samples)).max();
            (federated.holders.len() as u64, most.unwrap_or(0))
        });
        let (step_batch, samples_per_round) = match (&self.work, &self.federated) {
            (WorkSpec::LocalSteps { steps, .. }, Some(federated)) => {
                let batch = u64::from(federated.local_batch);
                (
                    batch,
                    batch
                        .saturating_mul(u64::from(*steps))
                        .saturating_mul(holders),
                )
            }
            (WorkSpec::LocalSteps { steps, .. }, None) => (
                fragment_samples.div_ceil(u64::from((*steps).max(1))),
                u64::from(self.global_batch),
            ),
            _ => (fragment_samples, u64::from(self.global_batch)),
        };
        // A fragment names its sample indices; under differential privacy, every local one.
        let indices = holder_samples.max(fragment_samples);
        let values = PARAMETER_COPIES
            .saturating_mul(parameters)
            .saturating_add(
                ACTIVATION_COPIES
                    .saturating_mul(step_batch)
                    .saturating_mul(activations),
            )
            .saturating_add(indices);
        let flops_per_sample = match &self.work {
            WorkSpec::Gradient | WorkSpec::LocalSteps { .. } => 6u64.saturating_mul(macs),
            WorkSpec::Inference { .. } => 2u64.saturating_mul(macs),
            WorkSpec::Transform { transform } => {
                transform.flops_per_sample(model.feature_width().unwrap_or(0))
            }
        };
        let result_values = match self.work.output_width(model) {
            None => parameters,
            Some(width) => (width as u64).saturating_mul(fragment_samples),
        };
        ResourceUse {
            layers: model.layer_count(),
            parameters,
            fragment_memory_bytes: VALUE_BYTES.saturating_mul(values),
            job_flops: u128::from(self.rounds)
                .saturating_mul(u128::from(samples_per_round))
                .saturating_mul(u128::from(flops_per_sample)),
            rounds: u64::from(self.rounds),
            holders,
            holder_samples,
            result_bytes: VALUE_BYTES.saturating_mul(result_values),
        }
    }
}

impl ResourceLimits {
    /// The spec's resource use, or the first limit it breaks.
    pub fn check(&self, spec: &JobSpec) -> Result<ResourceUse, SpecError> {
        let used = spec.resource_use();
        // Counts before sizes: a spec with too many of something is told so first.
        let checks: [(&'static str, u128, u128); 8] = [
            ("max_layers", used.layers.into(), self.max_layers.into()),
            ("max_rounds", used.rounds.into(), self.max_rounds.into()),
            ("max_holders", used.holders.into(), self.max_holders.into()),
            (
                "max_holder_samples",
                used.holder_samples.into(),
                self.max_holder_samples.into(),
            ),
            (
                "max_parameters",
                used.parameters.into(),
                self.max_parameters.into(),
            ),
            (
                "max_result_bytes",
                used.result_bytes.into(),
                self.max_result_bytes.into(),
            ),
            (
                "max_fragment_memory_bytes",
                used.fragment_memory_bytes.into(),
                self.max_fragment_memory_bytes.into(),
            ),
            ("max_job_flops", used.job_flops, self.max_job_flops),
        ];
        match checks.into_iter().find(|(_, value, limit)| value > limit) {
            Some((limit_name, value, limit)) => Err(SpecError::OverBudget {
                limit_name,
                value,
                limit,
            }),
            None => Ok(used),
        }
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        if self.max_layers == 0
            || self.max_parameters == 0
            || self.max_fragment_memory_bytes == 0
            || self.max_job_flops == 0
            || self.max_rounds == 0
            || self.max_result_bytes == 0
        {
            return Err(SpecError::Invalid(
                "resource limits on layers, parameters, fragment memory, FLOPs, rounds and result bytes must be positive".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::DataHolder;
    use crate::identity::Keypair;
    use crate::model::ModelSpec;

    #[test]
    fn the_built_in_jobs_fit_the_default_budget() {
        let limits = ResourceLimits::default();
        for spec in [JobSpec::default_digits(), JobSpec::digits_gradient()] {
            let used = limits.check(&spec).expect("within budget");
            assert_eq!(used.parameters, spec.model.parameter_count() as u64);
            assert_eq!(used.result_bytes, 4 * used.parameters);
            assert_eq!(used.layers, 3);
        }
    }

    #[test]
    fn millions_of_layers_are_refused_by_name() {
        let mut spec = JobSpec::default_digits();
        spec.model = ModelSpec::mlp(64, vec![8; 3_000_000], 10);
        let error = ResourceLimits::default().check(&spec).unwrap_err();
        assert!(error.to_string().contains("max_layers"), "{error}");
    }

    #[test]
    fn a_holder_declaring_billions_of_samples_is_refused() {
        let holder = DataHolder {
            node: Keypair::from_secret([3; 32]).id(),
            samples: 4_000_000_000,
        };
        let spec = JobSpec::digits_federated(vec![holder], None);
        let error = ResourceLimits::default().check(&spec).unwrap_err();
        assert!(error.to_string().contains("max_holder_samples"), "{error}");
    }

    #[test]
    fn figures_saturate_instead_of_wrapping() {
        let mut spec = JobSpec::default_digits();
        spec.model = ModelSpec::mlp(usize::MAX, vec![usize::MAX; 4], 10);
        let used = spec.resource_use();
        assert_eq!(used.parameters, u64::MAX);
        assert!(ResourceLimits::default().check(&spec).is_err());
    }

    #[test]
    fn each_limit_binds() {
        let spec = JobSpec::default_digits();
        let used = spec.resource_use();
        let tight = ResourceLimits {
            max_job_flops: used.job_flops - 1,
            ..ResourceLimits::default()
        };
        let error = tight.check(&spec).unwrap_err().to_string();
        assert!(error.contains("max_job_flops"), "{error}");
        let tight = ResourceLimits {
            max_fragment_memory_bytes: used.fragment_memory_bytes - 1,
            ..ResourceLimits::default()
        };
        let error = tight.check(&spec).unwrap_err().to_string();
        assert!(error.contains("max_fragment_memory_bytes"), "{error}");
    }
}
