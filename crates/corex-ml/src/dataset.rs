//! In-memory datasets of three kinds, their accessors and the train/test split.
//!
//! - **tabular**: `len × feature_count` `f32` features (row-major) and a `u32` class label
//!   per row (the digits, CSV files);
//! - **images**: `len × channels × height × width` bytes (row-major, 0–255) and a class label
//!   per image (Fashion-MNIST), kept as bytes, not `f32`; the last `holdout` images may be the
//!   dataset's own test set;
//! - **text**: a byte sequence; a sample of a language model is the window of `context + 1`
//!   bytes starting at a position.
//!
//! Everything is deterministic across machines: the split uses ChaCha8 with a hand-written
//! Fisher–Yates shuffle, and text is split by position, never by random window.

use corex_core::ModelSpec;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::MlError;

/// Most classes an image dataset may have (labels travel as one byte).
pub const MAX_IMAGE_CLASSES: usize = 256;

/// What a dataset holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetKind {
    Tabular,
    Images,
    Text,
}

/// Channels, height and width of every image of an image dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    pub fn pixels(&self) -> usize {
        self.channels * self.height * self.width
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Samples {
    Tabular {
        features: Vec<f32>,
        feature_count: usize,
        labels: Vec<u32>,
        class_count: usize,
    },
    Images {
        pixels: Vec<u8>,
        shape: ImageShape,
        labels: Vec<u32>,
        class_count: usize,
        holdout: usize,
    },
    Text {
        bytes: Vec<u8>,
    },
}

/// A dataset held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub(crate) samples: Samples,
}

/// A train/test partition of a dataset's sample indices (window positions for text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<u32>,
    pub test: Vec<u32>,
}

/// Labels must fit the index space and stay below the class count.
fn check_labels(labels: &[u32], class_count: usize) -> Result<(), MlError> {
    if labels.len() > u32::MAX as usize {
        return Err(MlError::Dataset(format!(
            "{} samples exceed the u32 index space",
            labels.len()
        )));
    }
    match labels
        .iter()
        .enumerate()
        .find(|(_, label)| **label as usize >= class_count)
    {
        Some((sample, label)) => Err(MlError::Dataset(format!(
            "label {label} of sample {sample} is not below the class count {class_count}"
        ))),
        None => Ok(()),
    }
}

impl Dataset {
    /// A tabular dataset from raw parts, checking that they are consistent: `features` holds
    /// `labels.len() × feature_count` finite values and every label is below `class_count`.
    pub fn from_parts(
        features: Vec<f32>,
        labels: Vec<u32>,
        feature_count: usize,
        class_count: usize,
    ) -> Result<Self, MlError> {
        if feature_count == 0 {
            return Err(MlError::Dataset("feature_count must be positive".into()));
        }
        check_labels(&labels, class_count)?;
        let expected = labels.len().checked_mul(feature_count).ok_or_else(|| {
            MlError::Dataset("samples × features overflows the address space".into())
        })?;
        if features.len() != expected {
            return Err(MlError::Shape(format!(
                "{} samples × {feature_count} features need {expected} values, got {}",
                labels.len(),
                features.len()
            )));
        }
        if let Some(index) = features.iter().position(|value| !value.is_finite()) {
            return Err(MlError::Dataset(format!(
                "feature {} of sample {} is not finite",
                index % feature_count,
                index / feature_count
            )));
        }
        Ok(Self {
            samples: Samples::Tabular {
                features,
                feature_count,
                labels,
                class_count,
            },
        })
    }

    /// An image dataset: `labels.len()` images of `shape` as bytes, at most 256 classes; the
    /// last `holdout` images are its own test set (0: split at random like tabular data).
    pub fn from_images(
        pixels: Vec<u8>,
        shape: ImageShape,
        labels: Vec<u32>,
        class_count: usize,
        holdout: usize,
    ) -> Result<Self, MlError> {
        if shape.channels == 0 || shape.height == 0 || shape.width == 0 {
            return Err(MlError::Dataset("image sides must be positive".into()));
        }
        if !(2..=MAX_IMAGE_CLASSES).contains(&class_count) {
            return Err(MlError::Dataset(format!(
                "an image dataset has 2..={MAX_IMAGE_CLASSES} classes, not {class_count}"
            )));
        }
        check_labels(&labels, class_count)?;
        let expected = labels
            .len()
            .checked_mul(shape.pixels())
            .ok_or_else(|| MlError::Dataset("images × pixels overflows".into()))?;
        if pixels.len() != expected {
            return Err(MlError::Shape(format!(
                "{} images of {} pixels need {expected} bytes, got {}",
                labels.len(),
                shape.pixels(),
                pixels.len()
            )));
        }
        if holdout >= labels.len() && holdout > 0 {
            return Err(MlError::Dataset(format!(
                "a holdout of {holdout} leaves no training image of {}",
                labels.len()
            )));
        }
        Ok(Self {
            samples: Samples::Images {
                pixels,
                shape,
                labels,
                class_count,
                holdout,
            },
        })
    }

    /// A text dataset: the byte sequence a language model trains on.
    pub fn from_text(bytes: Vec<u8>) -> Result<Self, MlError> {
        if bytes.len() < 2 || bytes.len() > u32::MAX as usize {
            return Err(MlError::Dataset(format!(
                "a text dataset has 2..={} bytes, not {}",
                u32::MAX,
                bytes.len()
            )));
        }
        Ok(Self {
            samples: Samples::Text { bytes },
        })
    }

    pub fn kind(&self) -> DatasetKind {
        match self.samples {
            Samples::Tabular { .. } => DatasetKind::Tabular,
            Samples::Images { .. } => DatasetKind::Images,
            Samples::Text { .. } => DatasetKind::Text,
        }
    }

    /// Rows of a tabular or image dataset; bytes of a text.
    pub fn len(&self) -> usize {
        match &self.samples {
            Samples::Tabular { labels, .. } | Samples::Images { labels, .. } => labels.len(),
            Samples::Text { bytes } => bytes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples a job of `model` can draw: rows, or whole windows of a text.
    pub fn sample_count(&self, model: &ModelSpec) -> usize {
        match &self.samples {
            Samples::Text { bytes } => {
                (bytes.len() + 1).saturating_sub(model.window().unwrap_or(1))
            }
            _ => self.len(),
        }
    }

    /// Values per sample seen as a feature vector (pixels for images); 0 for text.
    pub fn feature_count(&self) -> usize {
        match &self.samples {
            Samples::Tabular { feature_count, .. } => *feature_count,
            Samples::Images { shape, .. } => shape.pixels(),
            Samples::Text { .. } => 0,
        }
    }

    /// Classes of a labelled dataset; the 256 byte values of a text.
    pub fn class_count(&self) -> usize {
        match &self.samples {
            Samples::Tabular { class_count, .. } | Samples::Images { class_count, .. } => {
                *class_count
            }
            Samples::Text { .. } => corex_core::model::BYTE_VOCABULARY,
        }
    }

    /// The image shape of an image dataset.
    pub fn image_shape(&self) -> Option<ImageShape> {
        match &self.samples {
            Samples::Images { shape, .. } => Some(*shape),
            _ => None,
        }
    }

    /// The bytes of a text dataset.
    pub fn text(&self) -> Option<&[u8]> {
        match &self.samples {
            Samples::Text { bytes } => Some(bytes),
            _ => None,
        }
    }

    /// The class label of row `index` of a labelled dataset (`None` for text). Panics when
    /// `index >= len()`; check untrusted indices first.
    pub fn label_of(&self, index: usize) -> Option<u32> {
        match &self.samples {
            Samples::Tabular { labels, .. } | Samples::Images { labels, .. } => Some(labels[index]),
            Samples::Text { .. } => None,
        }
    }

    /// Errors with [`MlError::SampleIndex`] on the first index outside the dataset and with
    /// [`MlError::Empty`] when there is none at all. For text, each index must start a whole
    /// window of `window` bytes (pass 1 for any position).
    pub fn check_indices_within(&self, indices: &[u32], window: usize) -> Result<(), MlError> {
        if indices.is_empty() {
            return Err(MlError::Empty("no sample indices".into()));
        }
        let positions = match &self.samples {
            Samples::Text { bytes } => (bytes.len() + 1).saturating_sub(window.max(1)),
            _ => self.len(),
        };
        match indices.iter().find(|&&index| index as usize >= positions) {
            Some(&index) => Err(MlError::SampleIndex {
                index,
                len: positions,
            }),
            None => Ok(()),
        }
    }

    /// [`Dataset::check_indices_within`] for rows (and single text positions).
    pub fn check_indices(&self, indices: &[u32]) -> Result<(), MlError> {
        self.check_indices_within(indices, 1)
    }

    /// The feature rows (row-major; images scaled to `[0, 1]`) of the samples `indices` of a
    /// tabular or image dataset.
    pub fn feature_rows(&self, indices: &[u32]) -> Result<Vec<f32>, MlError> {
        if self.kind() == DatasetKind::Text {
            return Err(MlError::Dataset("a text has no feature rows".into()));
        }
        self.check_indices(indices)?;
        Ok(self.gather(indices).0)
    }

    /// The feature rows (images scaled to `[0, 1]`) and labels of the given samples of a
    /// labelled dataset; indices must have been checked. Text yields nothing.
    pub(crate) fn gather(&self, indices: &[u32]) -> (Vec<f32>, Vec<u32>) {
        match &self.samples {
            Samples::Tabular {
                features,
                feature_count,
                labels,
                ..
            } => {
                let mut rows = Vec::with_capacity(indices.len() * feature_count);
                for &index in indices {
                    let start = index as usize * feature_count;
                    rows.extend_from_slice(&features[start..start + feature_count]);
                }
                (rows, pick(labels, indices))
            }
            Samples::Images {
                pixels,
                shape,
                labels,
                ..
            } => {
                let size = shape.pixels();
                let mut rows = Vec::with_capacity(indices.len() * size);
                for &index in indices {
                    let start = index as usize * size;
                    rows.extend(
                        pixels[start..start + size]
                            .iter()
                            .map(|&pixel| f32::from(pixel) / 255.0),
                    );
                }
                (rows, pick(labels, indices))
            }
            Samples::Text { .. } => (Vec::new(), Vec::new()),
        }
    }

    /// The train/test split a job of `model` uses: text by position (training windows from
    /// the first `1 − test_fraction` of the bytes; the rest cut into consecutive windows that
    /// predict every held-out byte once), an image set with its own test set by that, and
    /// anything else by [`Dataset::split`].
    pub fn split_for(&self, model: &ModelSpec, test_fraction: f64, seed: u64) -> Split {
        match &self.samples {
            Samples::Text { bytes } => {
                let window = model.window().unwrap_or(2).max(2);
                positional_split(bytes.len(), window, test_fraction)
            }
            Samples::Images {
                labels, holdout, ..
            } if *holdout > 0 => {
                let cut = (labels.len() - holdout) as u32;
                Split {
                    train: (0..cut).collect(),
                    test: (cut..labels.len() as u32).collect(),
                }
            }
            _ => self.split(test_fraction, seed),
        }
    }

    /// A seeded random partition of the rows: a ChaCha8 Fisher–Yates permutation of `0..len`,
    /// whose first `round(len × test_fraction)` entries form the test set and the rest the
    /// training set (both in permutation order). With at least two samples and a fraction
    /// strictly inside `(0, 1)`, both sides get at least one sample. A NaN fraction counts as
    /// 0 and the fraction is clamped to `[0, 1]`.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Split {
        let len = self.len();
        let permutation = permutation(len, seed);
        let fraction = clamp_fraction(test_fraction);
        let mut test_len = ((len as f64) * fraction).round() as usize;
        if len >= 2 && fraction > 0.0 && fraction < 1.0 {
            test_len = test_len.clamp(1, len - 1);
        }
        let test_len = test_len.min(len);
        let (test, train) = permutation.split_at(test_len);
        Split {
            train: train.to_vec(),
            test: test.to_vec(),
        }
    }
}

fn clamp_fraction(fraction: f64) -> f64 {
    if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    }
}

fn pick(labels: &[u32], indices: &[u32]) -> Vec<u32> {
    indices
        .iter()
        .map(|&index| labels[index as usize])
        .collect()
}

/// Text split by position: bytes `[0, cut)` train (every window inside them), bytes
/// `[cut, len)` test, as windows starting every `window − 1` bytes so that each held-out byte
/// after the first is predicted exactly once.
fn positional_split(len: usize, window: usize, test_fraction: f64) -> Split {
    let cut = ((len as f64) * (1.0 - clamp_fraction(test_fraction))).round() as usize;
    let cut = cut.min(len);
    let train = (0..(cut + 1).saturating_sub(window) as u32).collect();
    let test = (cut..(len + 1).saturating_sub(window))
        .step_by(window - 1)
        .map(|position| position as u32)
        .collect();
    Split { train, test }
}

/// Fisher–Yates permutation of `0..len` (as `u32`) driven by ChaCha8 seeded with `seed`; the
/// bounded draw is Lemire's multiply-high, so the result is identical on every platform.
fn permutation(len: usize, seed: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut values: Vec<u32> = (0..len as u32).collect();
    for i in (1..len).rev() {
        let bound = (i + 1) as u128;
        let j = ((u128::from(rng.next_u64()) * bound) >> 64) as usize;
        values.swap(i, j);
    }
    values
}
