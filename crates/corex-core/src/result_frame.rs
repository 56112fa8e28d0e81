//! A fragment result on the wire, and the hashes taken over it in one pass.
//!
//! An inline result is one frame: `tensor bytes ‖ header JSON ‖ u32 LE header length ‖ "CXR2"`.
//! The header trails the tensor so that the frame grows in place from the tensor buffer, and so
//! that one BLAKE3 pass over the tensor serves twice: the hash state after the tensor is the
//! tensor's hash (the header's `result_hash`, which the node signs), and the same state carried
//! on over the trailer is the body's content digest (which the request signature covers).
//! A BLAKE3 hasher can be finalized and then fed more input.

use crate::error::DecodeError;
use crate::hash::{Hash, Hashed};
use crate::messages::ResultHeader;

const RESULT_MAGIC: &[u8; 4] = b"CXR2";
/// Largest header accepted, far above any honest header.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Room a tensor buffer keeps for its trailer, so that framing it does not reallocate.
const TRAILER_ROOM: usize = 4 * 1024;

/// A result tensor's wire bytes (f32 little-endian, or any bytes a test sends) and the BLAKE3
/// state over them.
pub struct ResultTensor {
    bytes: Vec<u8>,
    hasher: blake3::Hasher,
}

impl ResultTensor {
    pub fn from_values(values: &[f32]) -> Self {
        let mut bytes = Vec::with_capacity(values.len() * 4 + TRAILER_ROOM);
        if cfg!(target_endian = "little") {
            bytes.extend_from_slice(bytemuck::cast_slice::<f32, u8>(values));
        } else {
            bytes.extend(values.iter().flat_map(|value| value.to_le_bytes()));
        }
        Self::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&bytes);
        Self { bytes, hasher }
    }

    /// BLAKE3 of the tensor bytes: what a header's `result_hash` must be.
    pub fn hash(&self) -> Hash {
        Hash(*self.hasher.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The inline frame of this tensor under `header`, with its content digest.
    pub fn into_frame(self, header: &ResultHeader) -> Hashed<Vec<u8>> {
        let Self {
            mut bytes,
            mut hasher,
        } = self;
        let tensor_len = bytes.len();
        append_trailer(&mut bytes, header);
        hasher.update(&bytes[tensor_len..]);
        Hashed::from_parts(bytes, Hash(*hasher.finalize().as_bytes()))
    }
}

/// Frames a result (see the module header).
pub fn encode_result(header: &ResultHeader, tensor_bytes: Vec<u8>) -> Vec<u8> {
    let mut body = tensor_bytes;
    append_trailer(&mut body, header);
    body
}

fn append_trailer(body: &mut Vec<u8>, header: &ResultHeader) {
    let json = serde_json::to_vec(header).unwrap_or_default();
    body.reserve_exact(json.len() + 8);
    body.extend_from_slice(&json);
    body.extend_from_slice(&(json.len() as u32).to_le_bytes());
    body.extend_from_slice(RESULT_MAGIC);
}

/// Splits a result body into its header and tensor bytes; never panics on any input.
pub fn decode_result(body: &[u8]) -> Result<(ResultHeader, &[u8]), DecodeError> {
    let tensor_len = tensor_len(body)?;
    Ok((parse_header(body, tensor_len)?, &body[..tensor_len]))
}

/// Where a frame's tensor ends, from its last 8 bytes; the header JSON is not read.
fn tensor_len(body: &[u8]) -> Result<usize, DecodeError> {
    let bad = |reason: &str| DecodeError::Body(format!("result body: {reason}"));
    let Some((rest, magic)) = body.split_last_chunk::<4>() else {
        return Err(bad("expected the CXR2 frame"));
    };
    if magic != RESULT_MAGIC {
        return Err(bad("expected the CXR2 frame"));
    }
    let Some((rest, length)) = rest.split_last_chunk::<4>() else {
        return Err(bad("header length is missing"));
    };
    let header_len = u32::from_le_bytes(*length) as usize;
    if header_len > MAX_HEADER_BYTES || header_len > rest.len() {
        return Err(bad("header length is out of range"));
    }
    Ok(rest.len() - header_len)
}

/// The header of a frame whose tensor is `tensor_len` bytes (as [`tensor_len`] found).
fn parse_header(body: &[u8], tensor_len: usize) -> Result<ResultHeader, DecodeError> {
    let json = body
        .get(tensor_len..body.len().saturating_sub(8))
        .ok_or_else(|| DecodeError::Body("result body: header out of range".into()))?;
    serde_json::from_slice(json)
        .map_err(|error| DecodeError::Body(format!("result header: {error}")))
}

/// A received result body, hashed in one pass: its content digest and, when it is framed
/// right, its tensor's hash.
pub struct DigestedResult<B> {
    body: B,
    digest: Hash,
    /// The tensor's length and hash, or why the body is not a frame.
    tensor: Result<(usize, Hash), DecodeError>,
}

impl<B: AsRef<[u8]>> DigestedResult<B> {
    pub fn new(body: B) -> Self {
        let bytes = body.as_ref();
        let (digest, tensor) = match tensor_len(bytes) {
            Ok(tensor_len) => {
                let mut hasher = blake3::Hasher::new();
                hasher.update(&bytes[..tensor_len]);
                let tensor_hash = Hash(*hasher.finalize().as_bytes());
                hasher.update(&bytes[tensor_len..]);
                let digest = Hash(*hasher.finalize().as_bytes());
                (digest, Ok((tensor_len, tensor_hash)))
            }
            Err(error) => (Hash::of(bytes), Err(error)),
        };
        Self {
            body,
            digest,
            tensor,
        }
    }

    /// The body's length in bytes.
    pub fn len(&self) -> usize {
        self.body.as_ref().len()
    }

    pub fn is_empty(&self) -> bool {
        self.body.as_ref().is_empty()
    }

    /// BLAKE3 of the whole body: what its content-digest header must say.
    pub fn digest(&self) -> Hash {
        self.digest
    }

    /// The header, and the tensor bytes with their hash; refuses what [`decode_result`] does.
    pub fn decode(&self) -> Result<(ResultHeader, Hashed<&[u8]>), DecodeError> {
        let (tensor_len, tensor_hash) = self.tensor.clone()?;
        let body = self.body.as_ref();
        let header = parse_header(body, tensor_len)?;
        Ok((header, Hashed::from_parts(&body[..tensor_len], tensor_hash)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Signature;

    fn header() -> ResultHeader {
        ResultHeader {
            feedback: None,
            state_paths: None,
            checkpoint_paths: None,
            fragment: Hash::of(b"f"),
            model: Hash::of(b"m"),
            loss: 0.5,
            samples: 3,
            compute_ms: 1,
            result_hash: Hash::of(b"r"),
            commitment_signature: Signature([9; 64]),
            data_commitment: None,
            trace: None,
        }
    }

    #[test]
    fn results_round_trip() {
        let body = encode_result(&header(), vec![1, 2, 3, 4]);
        let (decoded, tensor) = decode_result(&body).expect("valid frame");
        assert_eq!(decoded, header());
        assert_eq!(tensor, &[1, 2, 3, 4]);
    }

    #[test]
    fn every_truncation_of_a_result_is_an_error_not_a_panic() {
        let body = encode_result(&header(), Vec::new());
        for cut in 0..body.len() {
            assert!(decode_result(&body[..cut]).is_err(), "cut at {cut}");
            assert!(DigestedResult::new(&body[..cut]).decode().is_err());
        }
        assert!(decode_result(b"\xff\xff\xff\xffCXR2").is_err());
    }

    #[test]
    fn one_pass_hashes_equal_hashing_each_part_on_its_own() {
        // Over 1 KiB: BLAKE3's tree has several chunks, and the tensor ends mid-chunk.
        let values: Vec<f32> = (0..1_000).map(|i| i as f32 * 0.25).collect();
        let tensor = ResultTensor::from_values(&values);
        let wire = tensor.as_bytes().to_vec();
        assert_eq!(wire, crate::tensor::f32s_to_bytes(&values));
        assert_eq!(tensor.hash(), Hash::of(&wire));

        let frame = tensor.into_frame(&header());
        assert_eq!(frame.as_slice(), encode_result(&header(), wire.clone()));
        assert_eq!(frame.hash(), Hash::of(frame.as_slice()));

        let received = DigestedResult::new(frame.as_slice());
        assert_eq!(received.digest(), frame.hash());
        let (decoded, tensor) = received.decode().expect("valid frame");
        assert_eq!(decoded, header());
        assert_eq!(tensor.as_slice(), wire);
        assert_eq!(tensor.hash(), Hash::of(&wire));
    }

    #[test]
    fn a_body_that_is_no_frame_still_gets_its_digest() {
        let received = DigestedResult::new(b"not a frame".as_slice());
        assert_eq!(received.digest(), Hash::of(b"not a frame"));
        assert!(received.decode().is_err());
    }
}
