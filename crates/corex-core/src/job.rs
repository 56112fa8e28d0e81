//! The job spec a job owner submits, and the round plan derived from it.

use serde::{Deserialize, Serialize};

use crate::compression::CompressionSpec;
use crate::error::SpecError;
use crate::federated::{DataHolder, FederatedSpec, PrivacySpec};
use crate::hash::Hash;
use crate::model::{CnnSpec, ModelSpec, TransformerSpec};
use crate::spec::{
    AggregationSpec, DatasetSource, DatasetSpec, FeatureScaling, Granularity, LearningRateSchedule,
    OptimizerSpec, PackagedDataset,
};
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
    /// The default job: an MLP on the handwritten-digits set, trained to ≥ 95% test accuracy
    /// DiLoCo-style: each fragment is 64 inner SGD steps of 128 samples (about 100 ms on one
    /// core, worth moving the 670 KB model down and its update up), model averaging is the
    /// outer step, 15 rounds. The same samples and steps as [`digits_h16`](Self::digits_h16)
    /// with a quarter of its transfers, at a step size that keeps its accuracy.
    pub fn default_digits() -> Self {
        Self {
            name: "digits-mlp".into(),
            rounds: 15,
            global_batch: 32_768,
            fragment_samples: 8_192,
            eval_every: 5,
            work: WorkSpec::LocalSteps {
                steps: 64,
                inner: OptimizerSpec::Sgd {
                    learning_rate: 0.07,
                    momentum: 0.0,
                },
            },
            ..Self::digits_h16()
        }
    }

    /// The default job until session 22 (`jobs/digits-h16.toml`): fragments of 16 inner SGD
    /// steps of 128 samples, 60 rounds; every 23 ms of compute moves the model both ways.
    pub fn digits_h16() -> Self {
        Self {
            name: "digits-mlp-h16".into(),
            optimizer: OptimizerSpec::Sgd {
                learning_rate: 1.0,
                momentum: 0.0,
            },
            global_batch: 8192,
            fragment_samples: 2048,
            work: WorkSpec::LocalSteps {
                steps: 16,
                inner: OptimizerSpec::Sgd {
                    learning_rate: 0.05,
                    momentum: 0.0,
                },
            },
            ..Self::digits_gradient()
        }
    }

    /// The digits job with one gradient per fragment (128 samples) and Adam on their mean:
    /// exactly single-process training, which the equivalence test checks.
    pub fn digits_gradient() -> Self {
        Self {
            name: "digits-mlp-gradient".into(),
            model: ModelSpec::mlp(64, vec![512, 256], 10),
            dataset: DatasetSpec {
                source: DatasetSource::Digits,
                test_fraction: 0.2,
                split_seed: 42,
                scaling: Default::default(),
            },
            optimizer: OptimizerSpec::Adam {
                learning_rate: 0.01,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
            },
            rounds: 60,
            global_batch: 512,
            fragment_samples: 128,
            seed: 7,
            eval_every: 10,
            lease_ms: 10_000,
            schedule: LearningRateSchedule::Constant,
            aggregation: AggregationSpec::Mean,
            work: WorkSpec::Gradient,
            granularity: Granularity::Fixed,
            federated: None,
            public: false,
            compression: CompressionSpec::None,
            download_compression: CompressionSpec::None,
        }
    }

    /// The federated digits job: federated averaging over `holders`, each running 16 local
    /// SGD steps of `local_batch` 32 on its own data per round (model averaging as the outer
    /// step), 50 rounds; `dataset` is the owner's held-out validation split of the digits.
    pub fn digits_federated(holders: Vec<DataHolder>, privacy: Option<PrivacySpec>) -> Self {
        Self {
            name: "digits-mlp-federated".into(),
            rounds: 50,
            work: WorkSpec::LocalSteps {
                steps: 16,
                inner: OptimizerSpec::Sgd {
                    learning_rate: 0.1,
                    momentum: 0.0,
                },
            },
            fragment_samples: 512,
            global_batch: 512,
            federated: Some(FederatedSpec {
                holders,
                local_batch: 32,
                privacy,
            }),
            ..Self::digits_h16()
        }
    }

    /// The language-model job: a 2-block, 128-wide byte-level transformer over contexts of 64
    /// bytes, trained on the Jargon File (Debian `jargon-text`) with one gradient per fragment
    /// of 16 windows and Adam on their mean (64 windows a round, the rate warmed up over 100
    /// rounds and decayed by a cosine to a tenth); the last 5 % of the text is held out.
    pub fn jargon_lm() -> Self {
        Self {
            name: "jargon-byte-lm".into(),
            model: ModelSpec::Transformer(TransformerSpec {
                layers: 2,
                width: 128,
                heads: 4,
                context: 64,
                ff: None,
            }),
            dataset: DatasetSpec {
                source: DatasetSource::Packaged {
                    name: PackagedDataset::JargonFile,
                },
                test_fraction: 0.05,
                split_seed: 1,
                scaling: FeatureScaling::Auto,
            },
            optimizer: OptimizerSpec::Adam {
                learning_rate: 0.003,
                beta_1: 0.9,
                beta_2: 0.99,
                epsilon: 1e-8,
            },
            rounds: 2000,
            global_batch: 64,
            fragment_samples: 16,
            seed: 7,
            eval_every: 250,
            lease_ms: 30_000,
            schedule: LearningRateSchedule::Cosine {
                warmup_rounds: 100,
                final_fraction: 0.1,
            },
            aggregation: AggregationSpec::Mean,
            work: WorkSpec::Gradient,
            granularity: Granularity::Fixed,
            federated: None,
            public: false,
            compression: CompressionSpec::None,
            download_compression: CompressionSpec::None,
        }
    }

    /// The Fashion-MNIST job: a CNN (two 3 × 3 convolution blocks of 32 and 64 channels, a
    /// 128-wide dense layer) on Debian's `dataset-fashion-mnist`, one gradient per fragment of
    /// 64 images and Adam on their mean (about 4 epochs, the rate warmed up over 50 rounds and
    /// decayed by a cosine to a tenth); the set's own 10,000 test images are held out.
    pub fn fashion_cnn() -> Self {
        Self {
            name: "fashion-mnist-cnn".into(),
            model: ModelSpec::Cnn(CnnSpec {
                channels: 1,
                height: 28,
                width: 28,
                conv: vec![32, 64],
                kernel: 3,
                hidden: vec![128],
                classes: 10,
            }),
            dataset: DatasetSpec {
                source: DatasetSource::Packaged {
                    name: PackagedDataset::FashionMnist,
                },
                test_fraction: 0.1,
                split_seed: 1,
                scaling: FeatureScaling::Auto,
            },
            optimizer: OptimizerSpec::Adam {
                learning_rate: 0.002,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
            },
            rounds: 1000,
            global_batch: 256,
            fragment_samples: 64,
            eval_every: 200,
            lease_ms: 30_000,
            schedule: LearningRateSchedule::Cosine {
                warmup_rounds: 50,
                final_fraction: 0.1,
            },
            ..Self::jargon_lm()
        }
    }

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

    #[test]
    fn the_built_in_jobs_are_valid_and_round_trip_through_toml() {
        for spec in [
            JobSpec::default_digits(),
            JobSpec::digits_h16(),
            JobSpec::digits_gradient(),
        ] {
            spec.validate().expect("valid");
            assert_eq!(JobSpec::from_toml(&spec.to_toml()).expect("parses"), spec);
            assert_eq!(spec.fragments_per_round(), 4);
        }
        for spec in [JobSpec::jargon_lm(), JobSpec::fashion_cnn()] {
            spec.validate().expect("valid");
            assert_eq!(JobSpec::from_toml(&spec.to_toml()).expect("parses"), spec);
            crate::ResourceLimits::default()
                .check(&spec)
                .expect("within the default budget");
        }
    }

    #[test]
    fn the_job_files_are_the_built_in_jobs() {
        let file = |text: &str| JobSpec::from_toml(text).expect("a valid job file");
        assert_eq!(
            file(include_str!("../../../jobs/jargon-lm.toml")),
            JobSpec::jargon_lm()
        );
        assert_eq!(
            file(include_str!("../../../jobs/fashion-cnn.toml")),
            JobSpec::fashion_cnn()
        );
        // The default job until session 22 is the default job with a quarter of the steps per
        // fragment and 4× the rounds: the same samples and steps, at its own step size.
        let h16 = file(include_str!("../../../jobs/digits-h16.toml"));
        assert_eq!(h16, JobSpec::digits_h16());
        let default = JobSpec::default_digits();
        assert_eq!(
            h16,
            JobSpec {
                name: h16.name.clone(),
                rounds: default.rounds * 4,
                global_batch: default.global_batch / 4,
                fragment_samples: default.fragment_samples / 4,
                eval_every: default.eval_every * 2,
                work: WorkSpec::LocalSteps {
                    steps: 16,
                    inner: OptimizerSpec::Sgd {
                        learning_rate: 0.05,
                        momentum: 0.0
                    }
                },
                ..default
            }
        );
    }

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
