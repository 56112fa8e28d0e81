//! The job spec a job owner submits, and the round plan derived from it.

use serde::{Deserialize, Serialize};

use crate::compression::CompressionSpec;
use crate::error::SpecError;
use crate::federated::FederatedSpec;
use crate::hash::Hash;
use crate::model::ModelSpec;
use crate::spec::{AggregationSpec, DatasetSpec, Granularity, LearningRateSchedule, OptimizerSpec};
use crate::work::WorkSpec;

/// Most rounds a job may ask for.
pub const MAX_ROUNDS: u32 = 100_000;
/// Most samples in one round's global batch.
pub const MAX_GLOBAL_BATCH: u32 = 1 << 20;

/// A job: model, data, what each fragment computes (`work`: training, or outputs at a fixed
/// model), the optimizer of a training job and how each round is cut into fragments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// A human name for tables and logs.
    pub name: String,
    pub model: ModelSpec,
    pub dataset: DatasetSpec,
    pub optimizer: OptimizerSpec,
    /// Number of rounds to run: optimizer steps of a training job. A job of output work
    /// passes over its dataset once, in sample order, and may ask for at most
    /// `⌈samples / global_batch⌉` rounds (fewer cover a prefix of the dataset).
    pub rounds: u32,
    /// Samples per round, split across fragments.
    pub global_batch: u32,
    /// Samples per fragment (the last fragment of a round may be smaller).
    pub fragment_samples: u32,
    /// Seed of the weight initialisation and of the per-epoch sample permutations.
    pub seed: u64,
    /// Evaluate on the held-out split every this many rounds (and after the last).
    pub eval_every: u32,
    /// How long a node may hold a fragment before it is re-issued, in milliseconds.
    pub lease_ms: u64,
    /// How the optimizer's learning rate changes over the rounds (default: constant).
    #[serde(default)]
    pub schedule: LearningRateSchedule,
    /// How accepted gradients are combined (default: the exact mean).
    #[serde(default)]
    pub aggregation: AggregationSpec,
    /// What each fragment computes (default: one gradient).
    #[serde(default)]
    pub work: WorkSpec,
    /// How rounds are cut into fragments (default: fixed `fragment_samples`).
    #[serde(default)]
    pub granularity: Granularity,
    /// A federated job: the training data stays on the named holders' nodes, and `dataset`
    /// is only the job owner's held-out validation data (default: none, every node loads
    /// `dataset` itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<FederatedSpec>,
    /// Whether anyone may read the job's spec, report, weights and outputs. A private job
    /// (the default) shows them only to its owner and the coordinator's operators; the nodes
    /// that compute it still see the model versions and data their fragments need.
    #[serde(default)]
    pub public: bool,
    /// How update results travel from node to coordinator (default: whole f32 vectors). A
    /// top-k policy sends chunked top-k values at low bit width with error feedback on the
    /// node (`corex_core::compression`, docs/verification.md).
    #[serde(default, skip_serializing_if = "CompressionSpec::is_none")]
    pub compression: CompressionSpec,
    /// How each round's model version travels to the nodes that hold the one before it
    /// (default: whole). A top-k policy publishes the round's compressed update beside the
    /// model, with error feedback on the coordinator (`corex_core::model_update`); a node
    /// behind by more than a round fetches the model whole.
    #[serde(default, skip_serializing_if = "CompressionSpec::is_none")]
    pub download_compression: CompressionSpec,
}

impl JobSpec {
    pub fn from_toml(text: &str) -> Result<Self, SpecError> {
        let spec: Self =
            toml::from_str(text).map_err(|error| SpecError::Toml(error.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn to_toml(&self) -> String {
        // A JobSpec is plain data with no maps keyed by non-strings: serialization cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The outer optimizer's learning rate at round `round` (0-based).
    pub fn learning_rate_at(&self, round: u32) -> f64 {
        self.optimizer.learning_rate() * self.schedule.factor(round, self.rounds)
    }

    pub fn fragments_per_round(&self) -> u32 {
        self.global_batch.div_ceil(self.fragment_samples)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        self.model.validate()?;
        self.dataset.validate()?;
        self.optimizer.validate()?;
        self.aggregation.validate()?;
        self.work.validate(&self.model, self.fragment_samples)?;
        self.granularity.validate()?;
        self.schedule.validate(self.rounds)?;
        let invalid = |reason: String| Err(SpecError::Invalid(reason));
        if self.name.is_empty() || self.name.len() > 128 {
            return invalid("name must be 1..=128 characters".into());
        }
        if self.rounds == 0 || self.rounds > MAX_ROUNDS {
            return invalid(format!(
                "rounds {} is outside 1..={MAX_ROUNDS}",
                self.rounds
            ));
        }
        if self.global_batch == 0 || self.global_batch > MAX_GLOBAL_BATCH {
            return invalid(format!(
                "global_batch {} is outside 1..={MAX_GLOBAL_BATCH}",
                self.global_batch
            ));
        }
        if self.fragment_samples == 0 || self.fragment_samples > self.global_batch {
            return invalid(format!(
                "fragment_samples {} is outside 1..=global_batch",
                self.fragment_samples
            ));
        }
        if self.eval_every == 0 {
            return invalid("eval_every must be at least 1".into());
        }
        if !(100..=3_600_000).contains(&self.lease_ms) {
            return invalid(format!(
                "lease_ms {} is outside 100..=3600000",
                self.lease_ms
            ));
        }
        self.compression.validate().map_err(SpecError::Invalid)?;
        if !self.compression.is_none() {
            if !matches!(self.work, WorkSpec::Gradient | WorkSpec::LocalSteps { .. }) {
                return invalid(
                    "compression applies to update work: gradient or local steps".into(),
                );
            }
            if self.federated.is_some() {
                return invalid("a federated job's updates are not compressed".into());
            }
        }
        self.download_compression
            .validate()
            .map_err(SpecError::Invalid)?;
        if self.download_compression.feedback_decay() != crate::compression::NO_DECAY {
            return invalid(
                "download compression keeps what a round did not send whole: no feedback_decay"
                    .into(),
            );
        }
        if !self.download_compression.is_none()
            && !matches!(self.work, WorkSpec::Gradient | WorkSpec::LocalSteps { .. })
        {
            return invalid(
                "download compression applies to training work: gradient or local steps".into(),
            );
        }
        if let Some(federated) = &self.federated {
            federated.validate()?;
            if !matches!(self.work, WorkSpec::LocalSteps { .. }) {
                return invalid("a federated job's work must be local steps".into());
            }
            if self.granularity != Granularity::Fixed {
                return invalid("a federated job has one fragment per holder and round; its granularity must be fixed".into());
            }
            if federated.privacy.is_some() && !matches!(self.model, ModelSpec::Mlp(_)) {
                return invalid(format!(
                    "differential privacy clips per-example gradients of the mlp family, not {}",
                    self.model.family()
                ));
            }
        }
        Ok(())
    }
}

/// A job's identity: the hash of its canonical spec, its owner and submission sequence.
pub fn job_id(spec: &JobSpec, owner: &crate::identity::NodeId, sequence: u64) -> Hash {
    let canonical = serde_json::to_vec(spec).unwrap_or_default();
    Hash::of_parts(&[b"corex-job", &canonical, &owner.0, &sequence.to_le_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federated::{DataHolder, PrivacySpec};

    #[test]
    fn compression_is_for_update_work_and_its_job_file_is_valid() {
        let compressed = JobSpec::from_toml(include_str!("../../../jobs/digits-compressed.toml"))
            .expect("a valid job file");
        compressed.validate().expect("valid");
        assert!(!compressed.compression.is_none());
        assert_eq!(
            JobSpec::from_toml(&compressed.to_toml()).unwrap(),
            compressed
        );
        let inference = JobSpec {
            work: WorkSpec::Inference { weights: None },
            ..compressed.clone()
        };
        assert!(inference.validate().is_err());
        let too_many = JobSpec {
            compression: CompressionSpec::TopK {
                chunk: 4096,
                k: 5000,
                bits: 2,
                feedback_decay: 1.0,
            },
            ..compressed.clone()
        };
        assert!(too_many.validate().is_err());
        // Decay is for a node's feedback; the coordinator's published version keeps it whole.
        let decayed_download = JobSpec {
            download_compression: CompressionSpec::TopK {
                chunk: 4096,
                k: 256,
                bits: 4,
                feedback_decay: 0.9,
            },
            ..compressed
        };
        assert!(decayed_download.validate().is_err());
        let language_model =
            JobSpec::from_toml(include_str!("../../../jobs/jargon-lm-diloco.toml"))
                .expect("a valid job file");
        language_model.validate().expect("valid");
        assert!(!language_model.compression.is_none());
        // A spec without the field is the uncompressed spec, and serializes as before.
        let plain = JobSpec::default_digits();
        assert!(
            !serde_json::to_string(&plain)
                .unwrap()
                .contains("compression")
        );
    }

    #[test]
    fn private_training_is_refused_for_families_it_cannot_clip() {
        let holders: Vec<DataHolder> = (1..=2u8)
            .map(|byte| DataHolder {
                node: crate::Keypair::from_secret([byte; 32]).id(),
                samples: 100,
            })
            .collect();
        let privacy = PrivacySpec {
            clip_norm: 1.0,
            noise_multiplier: 1.0,
            delta: 1e-5,
        };
        let mut spec = JobSpec::digits_federated(holders, Some(privacy));
        spec.validate().expect("an mlp may train privately");
        spec.model = JobSpec::fashion_cnn().model;
        let error = spec.validate().unwrap_err().to_string();
        assert!(error.contains("mlp family"), "{error}");
    }

    #[test]
    fn a_federated_job_round_trips_and_refuses_what_it_cannot_run() {
        let holders: Vec<DataHolder> = (1..=4u8)
            .map(|i| DataHolder {
                node: crate::Keypair::from_secret([i; 32]).id(),
                samples: 300,
            })
            .collect();
        let privacy = PrivacySpec {
            clip_norm: 1.0,
            noise_multiplier: 1.1,
            delta: 1e-5,
        };
        let spec = JobSpec::digits_federated(holders.clone(), Some(privacy));
        assert_eq!(JobSpec::from_toml(&spec.to_toml()).expect("parses"), spec);

        let mut twice = spec.clone();
        if let Some(federated) = twice.federated.as_mut() {
            federated.holders.push(holders[0].clone());
        }
        assert!(twice.validate().is_err(), "a holder named twice");
        let mut gradient = spec.clone();
        gradient.work = WorkSpec::Gradient;
        assert!(
            gradient.validate().is_err(),
            "federated work is local steps"
        );
        let mut too_few = spec.clone();
        if let Some(federated) = too_few.federated.as_mut() {
            federated.holders[2].samples = 3;
        }
        assert!(
            too_few.validate().is_err(),
            "fewer samples than a local batch"
        );
        let mut no_noise = spec;
        if let Some(privacy) = no_noise.federated.as_mut().and_then(|f| f.privacy.as_mut()) {
            privacy.noise_multiplier = 0.0;
        }
        assert!(no_noise.validate().is_err(), "DP needs noise");
    }

    #[test]
    fn output_jobs_round_trip_through_toml_and_refuse_what_they_cannot_run() {
        use crate::work::TransformSpec;
        let inference = JobSpec {
            work: WorkSpec::Inference {
                weights: Some(Hash::of(b"weights")),
            },
            ..JobSpec::digits_gradient()
        };
        let transform = JobSpec {
            work: WorkSpec::Transform {
                transform: TransformSpec::RandomProjection {
                    output: 16,
                    seed: 3,
                },
            },
            ..JobSpec::digits_gradient()
        };
        for spec in [inference, transform.clone()] {
            assert_eq!(JobSpec::from_toml(&spec.to_toml()).expect("parses"), spec);
        }
        let mut one_level = transform;
        one_level.work = WorkSpec::Transform {
            transform: TransformSpec::Quantize { levels: 1 },
        };
        assert!(one_level.validate().is_err(), "quantize needs two levels");
    }

    #[test]
    fn local_steps_need_a_sample_per_step() {
        let mut spec = JobSpec::default_digits();
        spec.fragment_samples = 8;
        assert!(spec.validate().is_err(), "64 steps over 8 samples");
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut spec = JobSpec::default_digits();
        spec.fragment_samples = 0;
        assert!(spec.validate().is_err());
        let mut spec = JobSpec::default_digits();
        spec.model = crate::ModelSpec::mlp(64, vec![1 << 20], 10);
        assert!(spec.validate().is_err());
        assert!(JobSpec::from_toml("rounds = 'many'").is_err());
    }
}
