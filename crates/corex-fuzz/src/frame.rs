//! Result frames (`tensor ‖ header JSON ‖ u32 LE length ‖ "CXR2"`) and the f32 tensors inside.
//!
//! Oracles beyond "no panic": the one-pass hashes of a received frame ([`DigestedResult`])
//! equal hashing each part on its own and agree with [`decode_result`]; a decoded frame framed
//! again decodes to the same header and tensor; tensor bytes decode exactly when their length
//! is a multiple of 4, whatever their alignment, and encode back to the same bits.

use corex_core::hash::Hash;
use corex_core::identity::Signature;
use corex_core::messages::{LocalDataCommitment, ResultHeader};
use corex_core::result_frame::{DigestedResult, ResultTensor, decode_result, encode_result};
use corex_core::tensor::{bytes_to_f32s, f32s_to_bytes, hash_f32s};
use corex_core::trace::StepTrace;

pub fn result_frame(data: &[u8]) {
    let received = DigestedResult::new(data);
    assert_eq!(received.digest(), Hash::of(data));
    let decoded = decode_result(data);
    let (header, tensor) = match (decoded, received.decode()) {
        (Ok((header, tensor)), Ok((same_header, hashed))) => {
            assert_eq!(header, same_header);
            assert_eq!(tensor, hashed.as_slice());
            assert_eq!(hashed.hash(), Hash::of(tensor));
            (header, tensor)
        }
        (Err(_), Err(_)) => return,
        (one, other) => panic!(
            "decode_result and DigestedResult disagree: {:?} vs {:?}",
            one.is_ok(),
            other.is_ok()
        ),
    };
    let wire = ResultTensor::from_bytes(tensor.to_vec());
    assert_eq!(wire.hash(), Hash::of(tensor));
    let frame = wire.into_frame(&header);
    assert_eq!(frame.hash(), Hash::of(frame.as_slice()));
    assert_eq!(frame.as_slice(), encode_result(&header, tensor.to_vec()));
    match decode_result(frame.as_slice()) {
        Ok((again, again_tensor)) => {
            assert_eq!(again, header);
            assert_eq!(again_tensor, tensor);
        }
        // JSON has no infinities: a number too large for f32 decodes to one and is written
        // back as null, which no longer decodes. Anything else must round-trip.
        Err(error) => assert!(!finite_floats(&header), "re-framed header: {error}"),
    }
}

fn finite_floats(header: &ResultHeader) -> bool {
    header.loss.is_finite()
        && header
            .trace
            .as_ref()
            .is_none_or(|trace| trace.losses.iter().all(|loss| loss.is_finite()))
}

pub fn tensor(data: &[u8]) {
    let decoded = bytes_to_f32s(data);
    assert_eq!(decoded.is_ok(), data.len().is_multiple_of(4));
    // The same bytes one byte off alignment decode to the same bits.
    let mut shifted = Vec::with_capacity(data.len() + 1);
    shifted.push(0);
    shifted.extend_from_slice(data);
    let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let shifted = bytes_to_f32s(&shifted[1..]);
    let (Ok(values), Ok(shifted)) = (decoded, shifted) else {
        return;
    };
    assert_eq!(bits(&values), bits(&shifted));
    assert_eq!(f32s_to_bytes(&values), data);
    assert_eq!(hash_f32s(&values), Hash::of(data));
    let wire = ResultTensor::from_values(&values);
    assert_eq!(wire.as_bytes(), data);
    assert_eq!(wire.hash(), Hash::of(data));
}

pub(crate) fn header(samples: u32, loss: f32) -> ResultHeader {
    ResultHeader {
        fragment: Hash::of(b"fragment"),
        model: Hash::of(b"model"),
        loss,
        samples,
        compute_ms: 12,
        result_hash: Hash::of(b"result"),
        commitment_signature: Signature([5; 64]),
        data_commitment: None,
        trace: None,
        feedback: None,
        state_paths: None,
        checkpoint_paths: None,
    }
}

/// Frames as nodes send them: empty and non-empty tensors, plain, federated and traced headers.
pub(crate) fn frame_seeds() -> Vec<Vec<u8>> {
    let plain = header(3, 0.5);
    let federated = ResultHeader {
        data_commitment: Some(LocalDataCommitment {
            shard: Hash::of(b"shard"),
            samples: Hash::of(b"samples"),
        }),
        ..header(64, 2.25)
    };
    let traced = ResultHeader {
        trace: Some(StepTrace {
            checkpoints: vec![Hash::of(b"c1"), Hash::of(b"c2")],
            losses: vec![1.5, 1.25, 1.0],
        }),
        ..header(512, 1.25)
    };
    let tensors: [Vec<f32>; 3] = [
        Vec::new(),
        vec![1.0, -2.5, 0.0, f32::MIN_POSITIVE],
        (0..300).map(|i| i as f32 * 0.125).collect(),
    ];
    let mut seeds = Vec::new();
    for (header, values) in [plain, federated, traced].iter().zip(&tensors) {
        seeds.push(
            ResultTensor::from_values(values)
                .into_frame(header)
                .into_bytes(),
        );
    }
    seeds.push(encode_result(&header(0, 0.0), b"\x01\x02\x03".to_vec()));
    let policy = corex_core::compression::CompressionSpec::TopK {
        chunk: 64,
        k: 4,
        bits: 2,
        feedback_decay: 1.0,
    };
    let compressed = ResultHeader {
        feedback: Some(corex_core::compression::FeedbackCommitment {
            before: Hash::of(b"before"),
            after: Hash::of(b"after"),
        }),
        ..header(128, 0.5)
    };
    let values: Vec<f32> = (0..200).map(|i| (i as f32 - 90.0) * 0.01).collect();
    if let Ok(bytes) = corex_core::compression::encode(&values, &policy) {
        seeds.push(encode_result(&compressed, bytes));
    }
    seeds
}

/// Tensors with the values that matter: zeros, signs, subnormals, infinities, NaN payloads.
pub(crate) fn tensor_seeds() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        f32s_to_bytes(&[0.0, -0.0, 1.0, -1.0]),
        f32s_to_bytes(&[f32::MIN_POSITIVE / 2.0, f32::INFINITY, f32::NEG_INFINITY]),
        f32s_to_bytes(&[f32::from_bits(0x7fc0_0001), f32::MAX, f32::MIN]),
        vec![1, 2, 3, 4, 5],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_seed_decodes() {
        for seed in frame_seeds() {
            decode_result(&seed).expect("a seed frame decodes");
            result_frame(&seed);
        }
        for seed in tensor_seeds() {
            tensor(&seed);
        }
    }
}
