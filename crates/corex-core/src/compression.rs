//! Compressed pseudo-gradients: chunked top-k with low-bit quantization and error feedback, as
//! SparseLoCo and DeMo send them, encoded so that a replay reproduces a node's bytes.
//!
//! A flat vector is cut into chunks of `chunk` values. In each chunk the `k` values of largest
//! magnitude are kept (ties: the lower index), each as its index within the chunk
//! (`⌈log₂ chunk⌉` bits) and a code of `bits` bits: one sign bit and `bits − 1` bits of
//! magnitude, uniform between the chunk's smallest and largest kept magnitudes (`lo`, `hi`,
//! two f32 per chunk). Everything else decodes to zero.
//!
//! Encoding, in bytes: `"CXC1" ‖ len u64 ‖ chunk u32 ‖ k u32 ‖ bits u8`, then per chunk
//! `lo f32 ‖ hi f32` and its entries in increasing index order, bit-packed least significant
//! bit first, each chunk's entries padded with zero bits to a whole byte. The encoding of a
//! vector is deterministic, and [`decode`] refuses any form [`encode`] never writes (indices
//! out of order or range, scales not `0 ≤ lo ≤ hi` finite, a negative zero, padding bits set,
//! a header not the job's, a wrong length) before it allocates anything.
//!
//! Every step is IEEE single-precision arithmetic in a fixed order (no fused multiply-add), so
//! the same input gives the same bytes on every machine. Error feedback keeps what a round did
//! not send: `v = Δ + β·e`, send `C(v)`, keep `e' = v − D(C(v))` (see docs/verification.md for how
//! a node commits `e` and how an audit checks it).

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::hash::Hash;

const MAGIC: &[u8; 4] = b"CXC1";
const HEADER_BYTES: usize = 4 + 8 + 4 + 4 + 1;
/// Bytes of a chunk's `lo` and `hi`.
const CHUNK_SCALE_BYTES: usize = 8;
/// Largest chunk: indices fit in 16 bits.
pub const MAX_CHUNK: u32 = 1 << 16;
/// Smallest chunk worth its 8 bytes of scales.
pub const MIN_CHUNK: u32 = 64;

/// How a job's pseudo-gradients travel from node to coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CompressionSpec {
    /// Whole f32 vectors (the default).
    #[default]
    None,
    /// Chunked top-k with `bits`-bit codes (2 to 8) and error feedback on the node, which
    /// keeps `feedback_decay` (`0 < β ≤ 1`, default 1) of what it held back before adding the
    /// next update: `v = Δ + β·e` (SparseLoCo's decayed accumulator).
    TopK {
        chunk: u32,
        k: u32,
        bits: u8,
        #[serde(default = "no_decay", skip_serializing_if = "is_no_decay")]
        feedback_decay: f32,
    },
}

/// Error feedback kept whole from one result to the next.
pub const NO_DECAY: f32 = 1.0;

fn no_decay() -> f32 {
    NO_DECAY
}

fn is_no_decay(decay: &f32) -> bool {
    *decay == NO_DECAY
}

impl CompressionSpec {
    pub fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    /// Values per chunk (`None`: no compression).
    pub fn chunk_len(&self) -> Option<usize> {
        match *self {
            Self::None => None,
            Self::TopK { chunk, .. } => Some(chunk as usize),
        }
    }

    /// The share of its held-back error a node keeps from one result to the next (1 without
    /// compression).
    pub fn feedback_decay(&self) -> f32 {
        match *self {
            Self::None => NO_DECAY,
            Self::TopK { feedback_decay, .. } => feedback_decay,
        }
    }

    /// Checks the policy's numbers: `MIN_CHUNK ≤ chunk ≤ MAX_CHUNK`, `1 ≤ k ≤ chunk`,
    /// `2 ≤ bits ≤ 8`, `0 < feedback_decay ≤ 1`.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Self::None => Ok(()),
            Self::TopK {
                chunk,
                k,
                bits,
                feedback_decay,
            } => {
                if !(feedback_decay > 0.0 && feedback_decay <= NO_DECAY) {
                    return Err(format!(
                        "compression feedback_decay {feedback_decay} outside (0, 1]"
                    ));
                }
                if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk) {
                    return Err(format!(
                        "compression chunk {chunk} outside {MIN_CHUNK}..={MAX_CHUNK}"
                    ));
                }
                if k == 0 || k > chunk {
                    return Err(format!("compression k {k} outside 1..={chunk}"));
                }
                if !(2..=8).contains(&bits) {
                    return Err(format!("compression bits {bits} outside 2..=8"));
                }
                Ok(())
            }
        }
    }

    /// Bytes of a compressed vector of `len` values (`None`: 4 per value).
    pub fn encoded_len(&self, len: usize) -> usize {
        match *self {
            Self::None => len * 4,
            Self::TopK { chunk, k, bits, .. } => {
                let layout = Layout { chunk, k, bits };
                HEADER_BYTES
                    + chunk_ranges(len, chunk as usize)
                        .map(|range| layout.chunk_bytes(range.len()))
                        .sum::<usize>()
            }
        }
    }
}

/// A top-k policy's numbers, validated.
#[derive(Debug, Clone, Copy)]
struct Layout {
    chunk: u32,
    k: u32,
    bits: u8,
}

impl Layout {
    fn of(spec: &CompressionSpec) -> Result<Self, DecodeError> {
        spec.validate().map_err(DecodeError::Body)?;
        match *spec {
            CompressionSpec::TopK { chunk, k, bits, .. } => Ok(Self { chunk, k, bits }),
            CompressionSpec::None => Err(DecodeError::Body("no compression policy".into())),
        }
    }

    /// The encoding's header for a vector of `len` values.
    fn header(&self, len: usize) -> [u8; HEADER_BYTES] {
        let mut header = [0u8; HEADER_BYTES];
        header[..4].copy_from_slice(MAGIC);
        header[4..12].copy_from_slice(&(len as u64).to_le_bytes());
        header[12..16].copy_from_slice(&self.chunk.to_le_bytes());
        header[16..20].copy_from_slice(&self.k.to_le_bytes());
        header[20] = self.bits;
        header
    }

    fn index_bits(&self) -> u32 {
        u32::BITS - (self.chunk - 1).leading_zeros()
    }

    /// Entries kept in a chunk of `values` values.
    fn kept(&self, values: usize) -> usize {
        (self.k as usize).min(values)
    }

    fn entry_bits(&self) -> usize {
        (self.index_bits() + u32::from(self.bits)) as usize
    }

    fn chunk_bytes(&self, values: usize) -> usize {
        CHUNK_SCALE_BYTES + (self.kept(values) * self.entry_bits()).div_ceil(8)
    }

    /// Magnitude levels: `2^(bits − 1)`, at least 2.
    fn levels(&self) -> u32 {
        1 << (self.bits - 1)
    }
}

fn chunk_ranges(len: usize, chunk: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..len.div_ceil(chunk)).map(move |i| i * chunk..((i + 1) * chunk).min(len))
}

/// The magnitude of level `level` of `levels` between `lo` and `hi`; the top level is `hi`
/// itself (`lo + (hi − lo)` may round away from it).
fn magnitude(lo: f32, hi: f32, level: u32, levels: u32) -> f32 {
    if level + 1 >= levels {
        hi
    } else {
        lo + (hi - lo) * (level as f32 / (levels - 1) as f32)
    }
}

/// A chunk value's rank for top-k as one integer, larger first: its magnitude's bits (which
/// order finite non-negative f32 as their values do), then the lower index. A total order, so
/// the kept set is unique.
fn selection_key(value: f32, index: u32) -> u64 {
    (u64::from(value.abs().to_bits()) << 32) | u64::from(u32::MAX - index)
}

/// The chunk index a [`selection_key`] was made from.
fn index_of_key(key: u64) -> u32 {
    u32::MAX - key as u32
}

/// Compresses `values` under `spec` (a top-k policy). Errors on a non-finite value.
pub fn encode(values: &[f32], spec: &CompressionSpec) -> Result<Vec<u8>, DecodeError> {
    let layout = Layout::of(spec)?;
    if let Some(at) = values.iter().position(|value| !value.is_finite()) {
        return Err(DecodeError::Body(format!("value {at} is not finite")));
    }
    let mut out = Vec::with_capacity(spec.encoded_len(values.len()));
    out.extend_from_slice(&layout.header(values.len()));
    let mut order: Vec<u64> = Vec::with_capacity(layout.chunk as usize);
    let mut selected: Vec<u32> = Vec::with_capacity(layout.chunk as usize);
    for range in chunk_ranges(values.len(), layout.chunk as usize) {
        let chunk = &values[range];
        let kept = layout.kept(chunk.len());
        order.clear();
        order.extend(
            chunk
                .iter()
                .enumerate()
                .map(|(index, value)| selection_key(*value, index as u32)),
        );
        if kept < order.len() {
            order.select_nth_unstable_by(kept - 1, |a, b| b.cmp(a));
        }
        selected.clear();
        selected.extend(order[..kept].iter().map(|key| index_of_key(*key)));
        selected.sort_unstable();
        let (lo, hi) = selected
            .iter()
            .map(|&i| chunk[i as usize].abs())
            .fold((f32::INFINITY, 0.0_f32), |(lo, hi), m| {
                (lo.min(m), hi.max(m))
            });
        out.extend_from_slice(&lo.to_le_bytes());
        out.extend_from_slice(&hi.to_le_bytes());
        let levels = layout.levels();
        let mut bits = BitWriter::new(&mut out);
        for &index in selected.iter() {
            let value = chunk[index as usize];
            let (level, sent) = if hi > lo {
                let position = (value.abs() - lo) / (hi - lo) * (levels - 1) as f32;
                let level = (position.round_ties_even() as u32).min(levels - 1);
                (level, magnitude(lo, hi, level, levels))
            } else {
                (0, lo)
            };
            // A value sent as zero is sent as +0: one encoding per decoded vector.
            let code = (level << 1) | u32::from(value < 0.0 && sent != 0.0);
            bits.push(index, layout.index_bits());
            bits.push(code, u32::from(layout.bits));
        }
        bits.finish();
    }
    Ok(out)
}

/// One chunk of a compressed vector as sent: where it starts, how many values it covers, its
/// scales and its kept entries in increasing index order.
#[derive(Debug, Clone, PartialEq)]
pub struct SentChunk {
    pub start: usize,
    pub len: usize,
    pub lo: f32,
    pub hi: f32,
    pub entries: Vec<SentEntry>,
}

/// One kept value: its index within the chunk, its magnitude level and sign, and the value it
/// decodes to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SentEntry {
    pub index: u32,
    pub level: u32,
    pub value: f32,
}

/// Magnitude levels of a top-k policy (`2^(bits − 1)`); `None` for no compression.
pub fn levels(spec: &CompressionSpec) -> Option<u32> {
    Layout::of(spec).ok().map(|layout| layout.levels())
}

/// Parses a compressed vector that must hold exactly `len` values under `spec`, checking every
/// byte: any form [`encode`] would not write is an error.
pub fn parse(
    bytes: &[u8],
    len: usize,
    spec: &CompressionSpec,
) -> Result<Vec<SentChunk>, DecodeError> {
    let layout = Layout::of(spec)?;
    let expected = spec.encoded_len(len);
    if bytes.len() != expected {
        return Err(DecodeError::Body(format!(
            "compressed tensor of {} bytes, expected {expected}",
            bytes.len()
        )));
    }
    if bytes[..HEADER_BYTES] != layout.header(len) {
        return Err(DecodeError::Body(
            "compressed tensor header does not match the job's policy and model".into(),
        ));
    }
    let mut chunks = Vec::with_capacity(len.div_ceil(layout.chunk as usize));
    let mut at = HEADER_BYTES;
    let levels = layout.levels();
    for range in chunk_ranges(len, layout.chunk as usize) {
        let values_in_chunk = range.len();
        let bytes = &bytes[at..at + layout.chunk_bytes(values_in_chunk)];
        at += bytes.len();
        let refuse =
            |what: String| DecodeError::Body(format!("chunk at value {}: {what}", range.start));
        let lo = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let hi = f32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let signed = lo.is_sign_negative() || hi.is_sign_negative();
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi) || signed {
            return Err(refuse(format!("scales {lo}, {hi}")));
        }
        let mut reader = BitReader::new(&bytes[CHUNK_SCALE_BYTES..]);
        let kept = layout.kept(values_in_chunk);
        let mut entries: Vec<SentEntry> = Vec::with_capacity(kept);
        for _ in 0..kept {
            let index = reader.take(layout.index_bits());
            let code = reader.take(u32::from(layout.bits));
            let in_order = entries.last().is_none_or(|last| index > last.index);
            if index as usize >= values_in_chunk || !in_order {
                return Err(refuse(format!("index {index} out of order or range")));
            }
            let level = code >> 1;
            let magnitude = if hi > lo {
                magnitude(lo, hi, level, levels)
            } else if level == 0 {
                lo
            } else {
                return Err(refuse(format!("level {level} of a flat chunk")));
            };
            let negative = code & 1 == 1;
            if negative && magnitude == 0.0 {
                return Err(refuse("negative zero".into()));
            }
            let value = if negative { -magnitude } else { magnitude };
            entries.push(SentEntry {
                index,
                level,
                value,
            });
        }
        if !reader.rest_is_zero() {
            return Err(refuse("padding bits set".into()));
        }
        chunks.push(SentChunk {
            start: range.start,
            len: values_in_chunk,
            lo,
            hi,
            entries,
        });
    }
    Ok(chunks)
}

/// Decodes a compressed vector that must hold exactly `len` values under `spec` (see
/// [`parse`]): the kept values in place, zeros elsewhere.
pub fn decode(bytes: &[u8], len: usize, spec: &CompressionSpec) -> Result<Vec<f32>, DecodeError> {
    let chunks = parse(bytes, len, spec)?;
    let mut values = vec![0.0_f32; len];
    for chunk in &chunks {
        for entry in &chunk.entries {
            values[chunk.start + entry.index as usize] = entry.value;
        }
    }
    Ok(values)
}

/// One round of error feedback: `v = Δ + β·e` (elementwise, f32, `β` the policy's
/// `feedback_decay`), its encoding, and the residual `e' = v − D(C(v))` the node keeps for its
/// next result. `feedback` is empty for a node's first result of a job (all zeros).
pub fn compress_with_feedback(
    update: &[f32],
    feedback: &[f32],
    spec: &CompressionSpec,
) -> Result<(Vec<u8>, Vec<f32>), DecodeError> {
    if !feedback.is_empty() && feedback.len() != update.len() {
        return Err(DecodeError::Body(format!(
            "error feedback of {} values for an update of {}",
            feedback.len(),
            update.len()
        )));
    }
    let decay = spec.feedback_decay();
    let corrected: Vec<f32> = if feedback.is_empty() {
        update.to_vec()
    } else {
        update
            .iter()
            .zip(feedback)
            .map(|(u, e)| u + decay * e)
            .collect()
    };
    let encoded = encode(&corrected, spec)?;
    let sent = decode(&encoded, corrected.len(), spec)?;
    let residual = corrected.iter().zip(&sent).map(|(v, s)| v - s).collect();
    Ok((encoded, residual))
}

/// What a compressed result commits to about its node's error feedback: the state it started
/// from and the state it kept, each as [`crate::feedback_state::state_root`] over leaves of
/// [`crate::feedback_state::LEAF_VALUES`] values. The first result of a node in a job,
/// and any result after the node lost its state, starts from zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackCommitment {
    pub before: Hash,
    pub after: Hash,
}

/// The commitment a compressed result's node signs: its result commitment bound to its
/// feedback states.
pub fn feedback_commitment(result_commitment: &Hash, feedback: &FeedbackCommitment) -> Hash {
    Hash::of_parts(&[
        b"corex-compressed-result",
        result_commitment.as_bytes(),
        feedback.before.as_bytes(),
        feedback.after.as_bytes(),
    ])
}

/// Appends bits least significant first.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    word: u64,
    filled: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            word: 0,
            filled: 0,
        }
    }

    fn push(&mut self, value: u32, bits: u32) {
        self.word |= u64::from(value) << self.filled;
        self.filled += bits;
        while self.filled >= 8 {
            self.out.push(self.word as u8);
            self.word >>= 8;
            self.filled -= 8;
        }
    }

    /// Writes the last partial byte, zero-padded.
    fn finish(self) {
        if self.filled > 0 {
            self.out.push(self.word as u8);
        }
    }
}

/// Reads bits least significant first from a slice whose length the caller has checked.
struct BitReader<'a> {
    bytes: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, bit: 0 }
    }

    fn take(&mut self, bits: u32) -> u32 {
        let mut value = 0u32;
        for i in 0..bits {
            let byte = self.bytes[(self.bit) / 8];
            value |= u32::from((byte >> (self.bit % 8)) & 1) << i;
            self.bit += 1;
        }
        value
    }

    fn rest_is_zero(&self) -> bool {
        let whole = self.bit.div_ceil(8);
        let partial_clean =
            self.bit.is_multiple_of(8) || self.bytes[self.bit / 8] >> (self.bit % 8) == 0;
        partial_clean && self.bytes[whole..].iter().all(|&byte| byte == 0)
    }
}

#[cfg(test)]
#[path = "compression_tests.rs"]
mod tests;
