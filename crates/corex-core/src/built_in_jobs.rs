//! The built-in jobs: the default digits job and its relatives, the language-model jobs and
//! the Fashion-MNIST CNN, each also a file under `jobs/` where the README runs it.

use crate::compression::CompressionSpec;
use crate::federated::{DataHolder, FederatedSpec, PrivacySpec};
use crate::job::JobSpec;
use crate::model::{CnnSpec, ModelSpec, TransformerSpec};
use crate::spec::{
    AggregationSpec, DatasetSource, DatasetSpec, FeatureScaling, Granularity, LearningRateSchedule,
    OptimizerSpec, PackagedDataset,
};
use crate::work::WorkSpec;

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
}
