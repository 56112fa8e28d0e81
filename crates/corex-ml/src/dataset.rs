//! In-memory classification datasets: loading (built-in digits, CSV text), accessors, a canonical
//! content hash and the seeded train/test split.
//!
//! Features are stored row-major (`len × feature_count` `f32`), labels as `u32` class ids in
//! `0..class_count`. Everything here is deterministic across machines: the hash is over a fixed
//! little-endian encoding and the split uses ChaCha8 with a hand-written Fisher–Yates shuffle.

use std::path::Path;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::MlError;

/// Domain separator of [`Dataset::content_hash`]; bump when the encoding changes.
const HASH_DOMAIN: &[u8] = b"corex-ml/dataset/v1";

/// A labelled dataset held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    features: Vec<f32>,
    labels: Vec<u32>,
    feature_count: usize,
    class_count: usize,
}

/// A train/test partition of a dataset's sample indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<u32>,
    pub test: Vec<u32>,
}

impl Dataset {
    /// Builds a dataset from raw parts, checking that they are consistent: `features` holds
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
        if labels.len() > u32::MAX as usize {
            return Err(MlError::Dataset(format!(
                "{} samples exceed the u32 index space",
                labels.len()
            )));
        }
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
        if let Some((sample, label)) = labels
            .iter()
            .enumerate()
            .find(|(_, label)| **label as usize >= class_count)
        {
            return Err(MlError::Dataset(format!(
                "label {label} of sample {sample} is not below the class count {class_count}"
            )));
        }
        Ok(Self {
            features,
            labels,
            feature_count,
            class_count,
        })
    }

    /// The 1,797 8×8 handwritten digits shipped with smartcore, pixels scaled to `[0, 1]`.
    pub fn digits() -> Result<Self, MlError> {
        let raw = smartcore::dataset::digits::load_dataset();
        let features: Vec<f32> = raw.data.iter().map(|pixel| pixel / 16.0).collect();
        let labels = raw
            .target
            .iter()
            .enumerate()
            .map(|(sample, &label)| {
                if label.fract() == 0.0 && (0.0..10.0).contains(&label) {
                    Ok(label as u32)
                } else {
                    Err(MlError::Dataset(format!(
                        "digits sample {sample} has label {label}, not a digit"
                    )))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if raw.num_samples != labels.len() {
            return Err(MlError::Dataset(format!(
                "digits reports {} samples but has {} labels",
                raw.num_samples,
                labels.len()
            )));
        }
        Self::from_parts(features, labels, raw.num_features, 10)
    }

    /// Reads a CSV file with a header row (see [`Dataset::from_csv_reader`]); errors name the
    /// file. For local files a user names on their own machine, never for a path from the
    /// network.
    pub fn from_csv(path: &Path, label_column: Option<&str>) -> Result<Self, MlError> {
        let file = std::fs::File::open(path)
            .map_err(|error| MlError::Csv(format!("{}: {error}", path.display())))?;
        Self::from_csv_reader(file, label_column, &path.display().to_string())
    }

    /// Reads CSV text with a header row: numeric feature columns and one integer label column
    /// (`label_column` by name, the last column when `None`). The class count is the largest
    /// label plus one. Errors start with `source`, name the offending line (1-based, the header
    /// is line 1) and column (1-based), and never repeat the data itself.
    pub fn from_csv_reader(
        reader: impl std::io::Read,
        label_column: Option<&str>,
        source: &str,
    ) -> Result<Self, MlError> {
        let failure = |what: String| MlError::Csv(format!("{source}: {what}"));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let headers = reader
            .headers()
            .map_err(|error| failure(format!("header: {error}")))?
            .clone();
        if headers.len() < 2 {
            return Err(failure(format!(
                "line 1: need at least one feature column and a label column, found {} column(s)",
                headers.len()
            )));
        }
        let label_index = match label_column {
            Some(name) => headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| failure("line 1: no column of the label column's name".into()))?,
            None => headers.len() - 1,
        };
        let feature_count = headers.len() - 1;
        let mut features = Vec::new();
        let mut labels = Vec::new();
        for (row, record) in reader.records().enumerate() {
            // Line numbers: header is line 1, so data row `row` (0-based) is line row + 2,
            // unless the csv crate knows better (quoted newlines).
            let fallback_line = row as u64 + 2;
            let record = record.map_err(|error| {
                let line = error
                    .position()
                    .map_or(fallback_line, |position| position.line());
                failure(format!("line {line}: {error}"))
            })?;
            let line = record
                .position()
                .map_or(fallback_line, |position| position.line());
            if record.len() != headers.len() {
                return Err(failure(format!(
                    "line {line}: expected {} fields, found {}",
                    headers.len(),
                    record.len()
                )));
            }
            for (column, field) in record.iter().enumerate() {
                let at =
                    |what: &str| failure(format!("line {line}: column {}: {what}", column + 1));
                if column == label_index {
                    let label: u32 = field
                        .parse()
                        .map_err(|_| at("the label is not a non-negative integer"))?;
                    labels.push(label);
                } else {
                    let value: f32 = field.parse().map_err(|_| at("not a number"))?;
                    if !value.is_finite() {
                        return Err(at("not finite"));
                    }
                    features.push(value);
                }
            }
        }
        let Some(&max_label) = labels.iter().max() else {
            return Err(failure("no data rows after the header".into()));
        };
        let class_count = (max_label as usize)
            .checked_add(1)
            .ok_or_else(|| failure(format!("label {max_label} is too large")))?;
        Self::from_parts(features, labels, feature_count, class_count)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn feature_count(&self) -> usize {
        self.feature_count
    }

    pub fn class_count(&self) -> usize {
        self.class_count
    }

    /// The feature row of sample `index`. Panics when `index >= len()`; use
    /// [`Dataset::check_indices`] first on untrusted indices.
    pub fn features_of(&self, index: usize) -> &[f32] {
        let start = index * self.feature_count;
        &self.features[start..start + self.feature_count]
    }

    /// The label of sample `index`. Panics when `index >= len()`, like [`Dataset::features_of`].
    pub fn label_of(&self, index: usize) -> u32 {
        self.labels[index]
    }

    /// Errors with [`MlError::SampleIndex`] on the first index outside the dataset and with
    /// [`MlError::Empty`] when there is none at all.
    pub fn check_indices(&self, indices: &[u32]) -> Result<(), MlError> {
        if indices.is_empty() {
            return Err(MlError::Empty("no sample indices".into()));
        }
        match indices.iter().find(|&&index| index as usize >= self.len()) {
            Some(&index) => Err(MlError::SampleIndex {
                index,
                len: self.len(),
            }),
            None => Ok(()),
        }
    }

    /// Gathers the features (row-major, `indices.len() × feature_count`) and the labels of
    /// the given samples. Indices must have been checked.
    pub(crate) fn gather(&self, indices: &[u32]) -> (Vec<f32>, Vec<u32>) {
        let mut features = Vec::with_capacity(indices.len() * self.feature_count);
        let mut labels = Vec::with_capacity(indices.len());
        for &index in indices {
            features.extend_from_slice(self.features_of(index as usize));
            labels.push(self.label_of(index as usize));
        }
        (features, labels)
    }

    /// The canonical encoding that [`Dataset::content_hash`] hashes: how a dataset travels
    /// (as a content-addressed blob, in hash-checked chunks) to nodes that do not hold it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes =
            Vec::with_capacity(HASH_DOMAIN.len() + 24 + 4 * (self.features.len() + self.len()));
        bytes.extend_from_slice(HASH_DOMAIN);
        for dim in [self.len(), self.feature_count, self.class_count] {
            bytes.extend_from_slice(&(dim as u64).to_le_bytes());
        }
        for value in &self.features {
            bytes.extend_from_slice(&value.to_bits().to_le_bytes());
        }
        for label in &self.labels {
            bytes.extend_from_slice(&label.to_le_bytes());
        }
        bytes
    }

    /// Reads [`Dataset::to_bytes`]' encoding back, checking everything
    /// [`Dataset::from_parts`] checks; never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MlError> {
        let malformed = |reason: &str| MlError::Dataset(format!("dataset bytes: {reason}"));
        let rest = bytes
            .strip_prefix(HASH_DOMAIN)
            .ok_or_else(|| malformed("no corex-ml/dataset/v1 tag"))?;
        if rest.len() < 24 {
            return Err(malformed("truncated header"));
        }
        let (header, body) = rest.split_at(24);
        let dim = |index: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&header[index * 8..index * 8 + 8]);
            usize::try_from(u64::from_le_bytes(word)).map_err(|_| malformed("dimension too large"))
        };
        let (len, feature_count, class_count) = (dim(0)?, dim(1)?, dim(2)?);
        let values = len
            .checked_mul(feature_count)
            .and_then(|features| features.checked_add(len))
            .and_then(|words| words.checked_mul(4))
            .ok_or_else(|| malformed("dimensions overflow"))?;
        if body.len() != values {
            return Err(malformed(&format!(
                "{len} samples × {feature_count} features need {values} bytes, got {}",
                body.len()
            )));
        }
        let (features, labels) = body.split_at(len * feature_count * 4);
        let word = |chunk: &[u8]| [chunk[0], chunk[1], chunk[2], chunk[3]];
        Self::from_parts(
            features
                .chunks_exact(4)
                .map(|chunk| f32::from_le_bytes(word(chunk)))
                .collect(),
            labels
                .chunks_exact(4)
                .map(|chunk| u32::from_le_bytes(word(chunk)))
                .collect(),
            feature_count,
            class_count,
        )
    }

    /// BLAKE3 over a canonical encoding ([`Dataset::to_bytes`]): a domain tag, then `len`,
    /// `feature_count` and `class_count` as little-endian `u64`, every feature as
    /// little-endian `f32` bits (row-major), then every label as little-endian `u32`.
    pub fn content_hash(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(HASH_DOMAIN);
        for dim in [self.len(), self.feature_count, self.class_count] {
            hasher.update(&(dim as u64).to_le_bytes());
        }
        let mut buffer = Vec::with_capacity(4096);
        for chunk in self.features.chunks(1024) {
            buffer.clear();
            for value in chunk {
                buffer.extend_from_slice(&value.to_bits().to_le_bytes());
            }
            hasher.update(&buffer);
        }
        for chunk in self.labels.chunks(1024) {
            buffer.clear();
            for label in chunk {
                buffer.extend_from_slice(&label.to_le_bytes());
            }
            hasher.update(&buffer);
        }
        *hasher.finalize().as_bytes()
    }

    /// A seeded random partition: a ChaCha8 Fisher–Yates permutation of `0..len`, whose first
    /// `round(len × test_fraction)` entries form the test set and the rest the training set
    /// (both in permutation order). With at least two samples and a fraction strictly inside
    /// `(0, 1)`, both sides get at least one sample. A NaN fraction counts as 0 and the fraction
    /// is clamped to `[0, 1]`.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Split {
        let len = self.len();
        let permutation = permutation(len, seed);
        let fraction = if test_fraction.is_nan() {
            0.0
        } else {
            test_fraction.clamp(0.0, 1.0)
        };
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
