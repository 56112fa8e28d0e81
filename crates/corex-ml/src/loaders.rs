//! Loading datasets: the built-in digits, CSV text, IDX image files and plain text, and the
//! packaged public datasets a distribution package installs at a fixed path (read only from
//! those paths: never from a path a job or a peer names).

use std::io::Read;
use std::path::Path;

use corex_core::PackagedDataset;
use flate2::read::GzDecoder;

use crate::dataset::{Dataset, ImageShape};
use crate::error::MlError;

/// Where Debian's `dataset-fashion-mnist` installs its IDX files.
const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Where Debian's `jargon-text` installs the Jargon File as text.
const JARGON_FILE: &str = "/usr/share/doc/jargon-text/jargon.txt.gz";
/// Largest decompressed file a packaged loader reads (a gzip bomb stops here).
const MAX_PACKAGED_BYTES: u64 = 256 * 1024 * 1024;

impl Dataset {
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

    /// A packaged public dataset from its package's fixed install path; the error names the
    /// package to install when it is missing.
    pub fn packaged(name: PackagedDataset) -> Result<Self, MlError> {
        let missing = |path: &str, error: std::io::Error| {
            MlError::Dataset(format!(
                "{path}: {error} (install it with `apt-get install {}`)",
                name.package()
            ))
        };
        match name {
            PackagedDataset::FashionMnist => {
                let read = |file: &str| {
                    let path = format!("{FASHION_MNIST_DIR}/{file}");
                    read_gzip(Path::new(&path)).map_err(|error| missing(&path, error))
                };
                let train_images = read("train-images-idx3-ubyte.gz")?;
                let train_labels = read("train-labels-idx1-ubyte.gz")?;
                let test_images = read("t10k-images-idx3-ubyte.gz")?;
                let test_labels = read("t10k-labels-idx1-ubyte.gz")?;
                Self::from_idx(
                    &[(&train_images, &train_labels), (&test_images, &test_labels)],
                    10,
                )
            }
            PackagedDataset::JargonFile => {
                let bytes = read_gzip(Path::new(JARGON_FILE))
                    .map_err(|error| missing(JARGON_FILE, error))?;
                Self::from_text(bytes)
            }
        }
    }

    /// An image dataset from pairs of IDX files (`idx3` unsigned-byte images, `idx1` labels),
    /// concatenated in order; the last pair is the held-out test set when there are several.
    pub fn from_idx(parts: &[(&[u8], &[u8])], class_count: usize) -> Result<Self, MlError> {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        let mut shape = None;
        let mut holdout = 0;
        for (images, part_labels) in parts {
            let (dims, data) = idx_body(images, 3)?;
            let (label_dims, label_data) = idx_body(part_labels, 1)?;
            let part_shape = ImageShape {
                channels: 1,
                height: dims[1],
                width: dims[2],
            };
            if *shape.get_or_insert(part_shape) != part_shape {
                return Err(MlError::Dataset(
                    "IDX parts have different image sizes".into(),
                ));
            }
            if label_dims[0] != dims[0] {
                return Err(MlError::Dataset(format!(
                    "IDX part has {} images but {} labels",
                    dims[0], label_dims[0]
                )));
            }
            pixels.extend_from_slice(data);
            labels.extend(label_data.iter().map(|&label| u32::from(label)));
            holdout = dims[0];
        }
        let shape = shape.ok_or_else(|| MlError::Dataset("no IDX parts".into()))?;
        let holdout = if parts.len() > 1 { holdout } else { 0 };
        Self::from_images(pixels, shape, labels, class_count, holdout)
    }
}

/// Reads a gzip file, at most [`MAX_PACKAGED_BYTES`] decompressed.
fn read_gzip(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    GzDecoder::new(file)
        .take(MAX_PACKAGED_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PACKAGED_BYTES {
        return Err(std::io::Error::other(format!(
            "more than {MAX_PACKAGED_BYTES} bytes decompressed"
        )));
    }
    Ok(bytes)
}

/// The dimensions and data of an unsigned-byte IDX file of `rank` dimensions, checked.
fn idx_body(bytes: &[u8], rank: usize) -> Result<(Vec<usize>, &[u8]), MlError> {
    let bad = |what: &str| MlError::Dataset(format!("IDX file: {what}"));
    let header = 4 + 4 * rank;
    if bytes.len() < header || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("no IDX header"));
    }
    if bytes[2] != 0x08 || usize::from(bytes[3]) != rank {
        return Err(bad(&format!(
            "type {:#04x} of rank {}, expected unsigned bytes of rank {rank}",
            bytes[2], bytes[3]
        )));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|word| u32::from_be_bytes([word[0], word[1], word[2], word[3]]) as usize)
        .collect();
    let len = dims
        .iter()
        .try_fold(1usize, |total, dim| total.checked_mul(*dim))
        .ok_or_else(|| bad("dimensions overflow"))?;
    let data = &bytes[header..];
    if data.len() != len {
        return Err(bad(&format!(
            "{len} values declared, {} present",
            data.len()
        )));
    }
    Ok((dims, data))
}
