//! The compact, canonical encoding of a dataset: how it travels (a content-addressed blob in
//! hash-checked chunks) and what its content hash is over.
//!
//! `corex-ml/dataset/v2`, one kind byte, then little-endian `u64` dimensions and the data:
//! - `0` tabular: `len`, `feature_count`, `class_count`; features as `f32` bits (row-major);
//!   labels as one byte each when `class_count ≤ 256`, else as `u32`;
//! - `1` images: `len`, `channels`, `height`, `width`, `class_count`, `holdout`; the pixels
//!   (one byte each, row-major); one label byte per image;
//! - `2` text: `len`; the bytes.
//!
//! Decoding checks everything the constructors check and never panics, whatever the bytes.

use crate::dataset::{Dataset, ImageShape, Samples};
use crate::error::MlError;

/// Domain tag of the encoding; bump when it changes.
const DOMAIN: &[u8] = b"corex-ml/dataset/v2";
const TABULAR: u8 = 0;
const IMAGES: u8 = 1;
const TEXT: u8 = 2;

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
                let wide = *class_count > 256;
                bytes.reserve(25 + 4 * features.len() + labels.len() * if wide { 4 } else { 1 });
                bytes.push(TABULAR);
                push_dims(&mut bytes, &[labels.len(), *feature_count, *class_count]);
                for value in features {
                    bytes.extend_from_slice(&value.to_bits().to_le_bytes());
                }
                for &label in labels {
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
                push_dims(
                    &mut bytes,
                    &[
                        labels.len(),
                        shape.channels,
                        shape.height,
                        shape.width,
                        *class_count,
                        *holdout,
                    ],
                );
                bytes.extend_from_slice(pixels);
                bytes.extend(labels.iter().map(|&label| label as u8));
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
        let mut reader = Reader {
            rest: bytes
                .strip_prefix(DOMAIN)
                .ok_or_else(|| malformed("no corex-ml/dataset/v2 tag"))?,
        };
        match reader.take(1)?[0] {
            TABULAR => {
                let [len, feature_count, class_count] = reader.dims()?;
                let values = len
                    .checked_mul(feature_count)
                    .ok_or_else(|| malformed("dimensions overflow"))?;
                let label_width = if class_count > 256 { 4 } else { 1 };
                reader.expect_exactly(
                    values
                        .checked_mul(4)
                        .and_then(|n| n.checked_add(len.checked_mul(label_width)?)),
                )?;
                let features = reader
                    .take(values * 4)?
                    .chunks_exact(4)
                    .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
                    .collect();
                let labels = reader.rest.chunks_exact(label_width);
                let labels = labels
                    .map(|chunk| match chunk {
                        [byte] => u32::from(*byte),
                        _ => u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                    })
                    .collect();
                Self::from_parts(features, labels, feature_count, class_count)
            }
            IMAGES => {
                let [len, channels, height, width, class_count, holdout] = reader.dims()?;
                let shape = ImageShape {
                    channels,
                    height,
                    width,
                };
                let pixels = channels
                    .checked_mul(height)
                    .and_then(|n| n.checked_mul(width))
                    .and_then(|n| n.checked_mul(len))
                    .ok_or_else(|| malformed("dimensions overflow"))?;
                reader.expect_exactly(pixels.checked_add(len))?;
                let data = reader.take(pixels)?.to_vec();
                let labels = reader.rest.iter().map(|&label| u32::from(label)).collect();
                Self::from_images(data, shape, labels, class_count, holdout)
            }
            TEXT => {
                let [len] = reader.dims()?;
                reader.expect_exactly(Some(len))?;
                Self::from_text(reader.rest.to_vec())
            }
            kind => Err(malformed(&format!("unknown kind {kind}"))),
        }
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
            let mut word = [0u8; 8];
            word.copy_from_slice(self.take(8)?);
            *dim = usize::try_from(u64::from_le_bytes(word))
                .map_err(|_| malformed("dimension too large"))?;
        }
        Ok(dims)
    }

    /// The rest must be exactly `expected` bytes (`None`: the dimensions overflowed).
    fn expect_exactly(&self, expected: Option<usize>) -> Result<(), MlError> {
        match expected {
            Some(expected) if expected == self.rest.len() => Ok(()),
            Some(expected) => Err(malformed(&format!(
                "the dimensions need {expected} bytes, got {}",
                self.rest.len()
            ))),
            None => Err(malformed("dimensions overflow")),
        }
    }
}
