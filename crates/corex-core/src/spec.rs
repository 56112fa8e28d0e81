//! Job specifications: the declarative description of a training job.
//!
//! A job is data, never code: a model from a built-in family (`model`), a dataset reference (never
//! a path), an optimizer and the round plan. Everything here is plain serde data with a `validate()` that
//! rejects specs the rest of the system cannot run, so that a bad spec fails at submission and
//! not in the middle of a round.

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// How the coordinator combines a round's accepted gradients: a job policy. The mean is exact
/// (and what the equivalence test checks); the robust rules bound what one bad contribution
/// can do when something slips past the audits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum AggregationSpec {
    #[default]
    Mean,
    /// Per coordinate, the sample-weighted mean over the parts that carry a value there (a
    /// nonzero one): for compressed updates, where each node sends its own top values and
    /// leaves the rest at zero, a value one node sent is not divided by the nodes that did
    /// not send one. Dense parts give the mean.
    ContributorMean,
    TrimmedMean {
        trim: f64,
    },
    Median,
    CenteredClipping {
        radius: f64,
        iterations: u32,
    },
}

impl AggregationSpec {
    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |reason: &str| Err(SpecError::Invalid(reason.into()));
        match *self {
            Self::TrimmedMean { trim } if !(0.0..0.5).contains(&trim) => {
                invalid("aggregation trim must be in [0, 0.5)")
            }
            Self::CenteredClipping { radius, iterations }
                if !(radius > 0.0 && radius.is_finite() && (1..=100).contains(&iterations)) =>
            {
                invalid("centred clipping needs radius > 0 and 1..=100 iterations")
            }
            _ => Ok(()),
        }
    }
}

/// How a round's samples are cut into fragments: a job policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Granularity {
    /// Fragments of `fragment_samples` each (the last may be smaller); a round is the same
    /// whichever nodes compute it.
    #[default]
    Fixed,
    /// Fragments sized to the nodes present when the round opens: each node's part of the
    /// round follows its measured speed, cut into pieces that take about `target_ms` on it
    /// (never under `fragment_samples`); nodes lease the pending piece closest to their size.
    Adaptive { target_ms: u64 },
}

impl Granularity {
    pub fn validate(&self) -> Result<(), SpecError> {
        match *self {
            Self::Adaptive { target_ms } if !(10..=600_000).contains(&target_ms) => Err(
                SpecError::Invalid(format!("target_ms {target_ms} is outside 10..=600000")),
            ),
            _ => Ok(()),
        }
    }
}

/// The optimizer the coordinator applies to the aggregated gradient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerSpec {
    /// Stochastic gradient descent with (optional, when `momentum` is 0) heavy-ball momentum.
    Sgd { learning_rate: f64, momentum: f64 },
    /// SGD with Nesterov momentum (`v ← μ v + g`, step along `g + μ v`): DiLoCo's outer
    /// optimizer, applied to the round's mean pseudo-gradient. `momentum` in (0, 1).
    Nesterov { learning_rate: f64, momentum: f64 },
    /// Adam (Kingma & Ba) with the usual moment decay rates.
    Adam {
        learning_rate: f64,
        #[serde(default = "default_beta_1")]
        beta_1: f32,
        #[serde(default = "default_beta_2")]
        beta_2: f32,
        #[serde(default = "default_epsilon")]
        epsilon: f32,
    },
}

fn default_beta_1() -> f32 {
    0.9
}
fn default_beta_2() -> f32 {
    0.999
}
fn default_epsilon() -> f32 {
    1e-8
}

impl OptimizerSpec {
    pub fn learning_rate(&self) -> f64 {
        match self {
            Self::Sgd { learning_rate, .. }
            | Self::Nesterov { learning_rate, .. }
            | Self::Adam { learning_rate, .. } => *learning_rate,
        }
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        let rate = self.learning_rate();
        if !(rate.is_finite() && rate > 0.0 && rate <= 10.0) {
            return Err(SpecError::Invalid(format!(
                "learning rate {rate} is outside (0, 10]"
            )));
        }
        match self {
            Self::Sgd { momentum, .. } if !(0.0..1.0).contains(momentum) => Err(
                SpecError::Invalid(format!("momentum {momentum} is outside [0, 1)")),
            ),
            Self::Nesterov { momentum, .. } if !(*momentum > 0.0 && *momentum < 1.0) => Err(
                SpecError::Invalid(format!("Nesterov momentum {momentum} is outside (0, 1)")),
            ),
            Self::Adam {
                beta_1,
                beta_2,
                epsilon,
                ..
            } if !((0.0..1.0).contains(beta_1)
                && (0.0..1.0).contains(beta_2)
                && epsilon.is_finite()
                && *epsilon > 0.0) =>
            {
                Err(SpecError::Invalid(
                    "Adam needs beta_1, beta_2 in [0, 1) and a positive epsilon".into(),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// How the outer learning rate changes over a job's rounds: a job policy, applied by the
/// coordinator's optimizer (and by the single-process baseline) as a pure function of the round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LearningRateSchedule {
    /// The optimizer's rate at every round.
    #[default]
    Constant,
    /// A linear warmup from `rate / warmup_rounds` to `rate` over the first `warmup_rounds`
    /// rounds, then a cosine decay to `final_fraction × rate` at the last round.
    Cosine {
        warmup_rounds: u32,
        final_fraction: f64,
    },
}

impl LearningRateSchedule {
    /// The factor on the optimizer's rate at round `round` (0-based) of `rounds`.
    pub fn factor(&self, round: u32, rounds: u32) -> f64 {
        match *self {
            Self::Constant => 1.0,
            Self::Cosine {
                warmup_rounds,
                final_fraction,
            } => {
                if round < warmup_rounds {
                    return f64::from(round + 1) / f64::from(warmup_rounds);
                }
                let span = rounds
                    .saturating_sub(warmup_rounds)
                    .saturating_sub(1)
                    .max(1);
                let progress = (f64::from(round - warmup_rounds) / f64::from(span)).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                final_fraction + (1.0 - final_fraction) * cosine
            }
        }
    }

    pub fn validate(&self, rounds: u32) -> Result<(), SpecError> {
        match *self {
            Self::Cosine {
                warmup_rounds,
                final_fraction,
            } if warmup_rounds >= rounds || !(0.0..=1.0).contains(&final_fraction) => {
                Err(SpecError::Invalid(format!(
                    "a cosine schedule needs warmup_rounds below rounds ({rounds}) and final_fraction in [0, 1]"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Longest name of a dataset in the operator's directory.
pub const MAX_DATASET_NAME: usize = 64;

/// Where a job's data comes from. Never a path: the coordinator reads no file a spec names.
/// Nodes load the built-in digits themselves and fetch any other dataset from the coordinator
/// as a hash-checked blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DatasetSource {
    /// The 1,797-image 8×8 handwritten-digits set shipped inside smartcore (offline).
    Digits,
    /// A dataset the job owner uploaded (`POST /v1/datasets`, `corex job submit --dataset`),
    /// named by its content hash; a job may use only datasets its owner uploaded.
    Uploaded { dataset: crate::hash::Hash },
    /// A CSV file in the directory the coordinator's operator allows (`--datasets-dir`), by
    /// file name: numeric feature columns and an integer class label in the column named
    /// `label_column` (the last column when absent).
    Named {
        name: String,
        #[serde(default)]
        label_column: Option<String>,
    },
    /// A public dataset that a distribution package installs at a fixed path on the
    /// coordinator (see [`PackagedDataset`]); nodes fetch it from the coordinator as a blob.
    Packaged { name: PackagedDataset },
}

/// Datasets read from the fixed install path of a distribution package, offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackagedDataset {
    /// Zalando's Fashion-MNIST, 70,000 28 × 28 grey images in 10 classes (Debian
    /// `dataset-fashion-mnist`, IDX files); its own 10,000-image test set is the held-out split.
    FashionMnist,
    /// The Jargon File 4.4.7 as plain text (Debian `jargon-text`), 1.7 MB of English bytes.
    JargonFile,
}

impl PackagedDataset {
    /// The package that installs it, for error messages and the README.
    pub fn package(self) -> &'static str {
        match self {
            Self::FashionMnist => "dataset-fashion-mnist",
            Self::JargonFile => "jargon-text",
        }
    }
}

/// How tabular features are scaled before training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureScaling {
    /// Standardize CSV data (uploaded or named); leave built-in and packaged data as they are.
    #[default]
    Auto,
    /// Use the features as given.
    None,
    /// `(x − mean) / std` per feature, with statistics fitted on the training split only.
    Standardize,
}

impl DatasetSource {
    /// A dataset name is a plain file name: 1..=64 ASCII letters, digits, `.`, `_`, `-`, not
    /// starting with `.` (no separators, no parent directory, no hidden file).
    pub fn validate(&self) -> Result<(), SpecError> {
        let Self::Named { name, label_column } = self else {
            return Ok(());
        };
        let plain = (1..=MAX_DATASET_NAME).contains(&name.len())
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
        if !plain {
            return Err(SpecError::Invalid(format!(
                "dataset name {:?} must be a plain file name of 1..={MAX_DATASET_NAME} letters, digits, '.', '_' or '-', not starting with '.'",
                name.chars().take(MAX_DATASET_NAME).collect::<String>()
            )));
        }
        if label_column
            .as_ref()
            .is_some_and(|column| column.len() > 128)
        {
            return Err(SpecError::Invalid(
                "label_column must be at most 128 bytes".into(),
            ));
        }
        Ok(())
    }
}

/// The dataset and its fixed, seeded train/test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    pub source: DatasetSource,
    /// Fraction of samples held out for evaluation, in (0, 1).
    pub test_fraction: f64,
    /// Seed of the train/test permutation.
    pub split_seed: u64,
    /// Feature scaling of tabular data (default: standardize CSV data).
    #[serde(default)]
    pub scaling: FeatureScaling,
}

impl DatasetSpec {
    /// Whether the features are standardized on the training split's statistics.
    pub fn standardizes(&self) -> bool {
        match self.scaling {
            FeatureScaling::Standardize => true,
            FeatureScaling::None => false,
            FeatureScaling::Auto => matches!(
                self.source,
                DatasetSource::Uploaded { .. } | DatasetSource::Named { .. }
            ),
        }
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        self.source.validate()?;
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(SpecError::Invalid(format!(
                "test_fraction {} is outside (0, 1)",
                self.test_fraction
            )));
        }
        Ok(())
    }
}
