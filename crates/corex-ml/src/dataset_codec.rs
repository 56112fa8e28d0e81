//! The compact, canonical encoding of a dataset: how it travels (a content-addressed blob in
//! hash-checked chunks, of which a node fetches only those its fragments touch) and what its
//! content hash is over.
//!
//! `corex-ml/dataset/v3`: the tag, one kind byte, little-endian `u64` dimensions, then one
//! fixed-width record per sample, so that sample `i` lies at `header + i × record width`:
//! - `0` tabular: `len`, `feature_count`, `class_count`; a record is the features as `f32`
//!   bits, then the label as one byte when `class_count ≤ 256`, else as `u32`;
//! - `1` images: `len`, `channels`, `height`, `width`, `class_count`, `holdout`; a record is
//!   the pixels (one byte each, row-major), then the label byte;
//! - `2` text: `len`; a record is one byte, and the window of `w` bytes at position `i` is
//!   records `i .. i + w`.
//!
//! Decoding checks everything the constructors check and never panics, whatever the bytes.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::dataset::{Dataset, ImageShape, Samples};
use crate::error::MlError;

/// Domain tag of the encoding; bump when it changes.
const DOMAIN: &[u8] = b"corex-ml/dataset/v3";
const TABULAR: u8 = 0;
const IMAGES: u8 = 1;
const TEXT: u8 = 2;
const DIMENSION_BYTES: usize = 8;

/// What one record of an encoded dataset holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordShape {
    Tabular {
        feature_count: usize,
        class_count: usize,
    },
    Images {
        shape: ImageShape,
        class_count: usize,
        holdout: usize,
    },
    Text,
}

impl RecordShape {
    fn wide_labels(class_count: usize) -> bool {
        class_count > 256
    }

    /// Bytes of one record (the dimensions were checked not to overflow it).
    fn width(&self) -> usize {
        match self {
            Self::Tabular {
                feature_count,
                class_count,
            } => {
                4 * feature_count
                    + if Self::wide_labels(*class_count) {
                        4
                    } else {
                        1
                    }
            }
            Self::Images { shape, .. } => shape.pixels() + 1,
            Self::Text => 1,
        }
    }

    fn dimension_count(&self) -> usize {
        match self {
            Self::Tabular { .. } => 3,
            Self::Images { .. } => 6,
            Self::Text => 1,
        }
    }
}

/// The header of an encoded dataset: enough to find any sample's bytes without the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedLayout {
    shape: RecordShape,
    len: usize,
}

impl EncodedLayout {
    /// The longest header of any kind: read this many bytes (or the whole blob, if shorter)
    /// to parse one.
    pub const MAX_HEADER_BYTES: usize = DOMAIN.len() + 1 + 6 * DIMENSION_BYTES;

    /// Parses the header at the start of `prefix` (which may go on past it), checking that the
    /// dimensions describe an encoding whose size fits a `u64` and the address space.
    pub fn parse(prefix: &[u8]) -> Result<Self, MlError> {
        let mut reader = Reader {
            rest: prefix
                .strip_prefix(DOMAIN)
                .ok_or_else(|| malformed("no corex-ml/dataset/v3 tag"))?,
        };
        let (shape, len) = match reader.take(1)?[0] {
            TABULAR => {
                let [len, feature_count, class_count] = reader.dims()?;
                if feature_count == 0 || feature_count > usize::MAX / 8 {
                    return Err(malformed("bad feature count"));
                }
                let shape = RecordShape::Tabular {
                    feature_count,
                    class_count,
                };
                (shape, len)
            }
            IMAGES => {
                let [len, channels, height, width, class_count, holdout] = reader.dims()?;
                let shape = ImageShape {
                    channels,
                    height,
                    width,
                };
                channels
                    .checked_mul(height)
                    .and_then(|n| n.checked_mul(width))
                    .and_then(|n| n.checked_add(1))
                    .ok_or_else(|| malformed("dimensions overflow"))?;
                let shape = RecordShape::Images {
                    shape,
                    class_count,
                    holdout,
                };
                (shape, len)
            }
            TEXT => {
                let [len] = reader.dims()?;
                (RecordShape::Text, len)
            }
            kind => return Err(malformed(&format!("unknown kind {kind}"))),
        };
        if len > u32::MAX as usize {
            return Err(malformed("more samples than the u32 index space"));
        }
        let layout = Self { shape, len };
        layout.checked_encoded_bytes()?;
        Ok(layout)
    }

    fn header_bytes(&self) -> usize {
        DOMAIN.len() + 1 + self.shape.dimension_count() * DIMENSION_BYTES
    }

    fn checked_encoded_bytes(&self) -> Result<u64, MlError> {
        self.len
            .checked_mul(self.shape.width())
            .and_then(|records| records.checked_add(self.header_bytes()))
            .map(|bytes| bytes as u64)
            .ok_or_else(|| malformed("dimensions overflow"))
    }

    /// Size of the whole encoding.
    pub fn encoded_bytes(&self) -> u64 {
        self.checked_encoded_bytes().unwrap_or(u64::MAX)
    }

    /// The bytes of the encoding that the sample at `index` reads: its record, or for text
    /// the `window` records of the window starting there (pass 1 for one position). Errors
    /// with [`MlError::SampleIndex`] for a sample outside the dataset.
    pub fn sample_range(&self, index: u32, window: usize) -> Result<Range<u64>, MlError> {
        let (width, positions) = match self.shape {
            RecordShape::Text => (window.max(1), (self.len + 1).saturating_sub(window.max(1))),
            shape => (shape.width(), self.len),
        };
        if index as usize >= positions {
            return Err(MlError::SampleIndex {
                index,
                len: positions,
            });
        }
        let step = if self.shape == RecordShape::Text {
            1
        } else {
            width
        };
        let start = (self.header_bytes() + index as usize * step) as u64;
        Ok(start..start + width as u64)
    }

    /// A dataset of just the samples `indices` (each distinct one once, their bytes given by
    /// `read` for the ranges [`EncodedLayout::sample_range`] names) and the fragment's indices
    /// into it, in order: computing on the two gives what computing on the whole dataset with
    /// `indices` gives. Text windows become consecutive windows of a shorter text.
    pub fn subset(
        &self,
        indices: &[u32],
        window: usize,
        mut read: impl FnMut(Range<u64>) -> Result<Vec<u8>, MlError>,
    ) -> Result<(Dataset, Vec<u32>), MlError> {
        let mut local: BTreeMap<u32, u32> = BTreeMap::new();
        for &index in indices {
            self.sample_range(index, window)?;
            local.insert(index, 0);
        }
        let step = if self.shape == RecordShape::Text {
            window.max(1)
        } else {
            1
        };
        let mut records = Vec::new();
        for (position, (&index, slot)) in local.iter_mut().enumerate() {
            let range = self.sample_range(index, window)?;
            let bytes = read(range.clone())?;
            if bytes.len() as u64 != range.end - range.start {
                return Err(malformed("a sample's bytes have the wrong length"));
            }
            records.extend_from_slice(&bytes);
            *slot = (position * step) as u32;
        }
        let count = records.len() / self.shape.width();
        let subset = decode_records(self.shape, records, count, 0)?;
        let remapped = indices.iter().map(|index| local[index]).collect();
        Ok((subset, remapped))
    }
}

/// A dataset of `count` records of `shape` from their bytes (exactly `count` records).
fn decode_records(
    shape: RecordShape,
    records: Vec<u8>,
    count: usize,
    holdout: usize,
) -> Result<Dataset, MlError> {
    let width = shape.width();
    if count.checked_mul(width) != Some(records.len()) {
        return Err(malformed(&format!(
            "{count} records of {width} bytes do not make {} bytes",
            records.len()
        )));
    }
    match shape {
        RecordShape::Tabular {
            feature_count,
            class_count,
        } => {
            let mut features = Vec::with_capacity(count * feature_count);
            let mut labels = Vec::with_capacity(count);
            for record in records.chunks_exact(width) {
                let (values, label) = record.split_at(4 * feature_count);
                features.extend(
                    values
                        .chunks_exact(4)
                        .map(|bits| f32::from_le_bytes([bits[0], bits[1], bits[2], bits[3]])),
                );
                labels.push(match label {
                    [byte] => u32::from(*byte),
                    _ => u32::from_le_bytes([label[0], label[1], label[2], label[3]]),
                });
            }
            Dataset::from_parts(features, labels, feature_count, class_count)
        }
        RecordShape::Images {
            shape, class_count, ..
        } => {
            let mut pixels = Vec::with_capacity(count * shape.pixels());
            let mut labels = Vec::with_capacity(count);
            for record in records.chunks_exact(width) {
                let (image, label) = record.split_at(shape.pixels());
                pixels.extend_from_slice(image);
                labels.push(u32::from(label[0]));
            }
            Dataset::from_images(pixels, shape, labels, class_count, holdout)
        }
        RecordShape::Text => Dataset::from_text(records),
    }
}

fn push_dims(bytes: &mut Vec<u8>, dims: &[usize]) {
    for dim in dims {
        bytes.extend_from_slice(&(*dim as u64).to_le_bytes());
    }
}

impl Dataset {
    /// The canonical encoding (see the module header).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = DOMAIN.to_vec();
        match &self.samples {
            Samples::Tabular {
                features,
                feature_count,
                labels,
                class_count,
            } => {
                let wide = RecordShape::wide_labels(*class_count);
                bytes.reserve(25 + 4 * features.len() + labels.len() * if wide { 4 } else { 1 });
                bytes.push(TABULAR);
                push_dims(&mut bytes, &[labels.len(), *feature_count, *class_count]);
                for (row, &label) in features.chunks_exact(*feature_count).zip(labels) {
                    for value in row {
                        bytes.extend_from_slice(&value.to_bits().to_le_bytes());
                    }
                    if wide {
                        bytes.extend_from_slice(&label.to_le_bytes());
                    } else {
                        bytes.push(label as u8);
                    }
                }
            }
            Samples::Images {
                pixels,
                shape,
                labels,
                class_count,
                holdout,
            } => {
                bytes.reserve(49 + pixels.len() + labels.len());
                bytes.push(IMAGES);
                let dims = [
                    labels.len(),
                    shape.channels,
                    shape.height,
                    shape.width,
                    *class_count,
                    *holdout,
                ];
                push_dims(&mut bytes, &dims);
                for (image, &label) in pixels.chunks_exact(shape.pixels()).zip(labels) {
                    bytes.extend_from_slice(image);
                    bytes.push(label as u8);
                }
            }
            Samples::Text { bytes: text } => {
                bytes.reserve(9 + text.len());
                bytes.push(TEXT);
                push_dims(&mut bytes, &[text.len()]);
                bytes.extend_from_slice(text);
            }
        }
        bytes
    }

    /// Reads [`Dataset::to_bytes`]' encoding back, checking everything the constructors
    /// check; never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MlError> {
        let layout = EncodedLayout::parse(bytes)?;
        let expected = layout.encoded_bytes();
        if expected != bytes.len() as u64 {
            return Err(malformed(&format!(
                "the dimensions need {expected} bytes, got {}",
                bytes.len()
            )));
        }
        let holdout = match layout.shape {
            RecordShape::Images { holdout, .. } => holdout,
            _ => 0,
        };
        let records = bytes[layout.header_bytes()..].to_vec();
        decode_records(layout.shape, records, layout.len, holdout)
    }

    /// BLAKE3 over the canonical encoding ([`Dataset::to_bytes`]).
    pub fn content_hash(&self) -> [u8; 32] {
        *blake3::hash(&self.to_bytes()).as_bytes()
    }
}

fn malformed(reason: &str) -> MlError {
    MlError::Dataset(format!("dataset bytes: {reason}"))
}

/// A cursor over untrusted bytes.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], MlError> {
        if self.rest.len() < count {
            return Err(malformed("truncated"));
        }
        let (head, tail) = self.rest.split_at(count);
        self.rest = tail;
        Ok(head)
    }

    fn dims<const N: usize>(&mut self) -> Result<[usize; N], MlError> {
        let mut dims = [0usize; N];
        for dim in &mut dims {
            let mut word = [0u8; DIMENSION_BYTES];
            word.copy_from_slice(self.take(DIMENSION_BYTES)?);
            *dim = usize::try_from(u64::from_le_bytes(word))
                .map_err(|_| malformed("dimension too large"))?;
        }
        Ok(dims)
    }
}
