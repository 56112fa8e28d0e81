use proptest::prelude::*;

use super::*;

const POLICY: CompressionSpec = CompressionSpec::TopK {
    chunk: 4096,
    k: 64,
    bits: 2,
    feedback_decay: 1.0,
};

/// A deterministic spread of values over several orders of magnitude, both signs.
fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let unit = (state >> 8) as f32 / (1u32 << 24) as f32;
            (unit - 0.5) * 10f32.powi((state % 5) as i32 - 3)
        })
        .collect()
}

fn top_k_set(chunk: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..chunk.len()).collect();
    order.sort_by(|&a, &b| chunk[b].abs().total_cmp(&chunk[a].abs()).then(a.cmp(&b)));
    let mut kept = order[..k.min(chunk.len())].to_vec();
    kept.sort_unstable();
    kept
}

#[test]
fn keeps_each_chunks_largest_values_with_their_signs_and_nothing_else() {
    let input = values(10_000, 1);
    let bytes = encode(&input, &POLICY).unwrap();
    assert_eq!(bytes.len(), POLICY.encoded_len(input.len()));
    let output = decode(&bytes, input.len(), &POLICY).unwrap();
    for (start, chunk) in (0..).step_by(4096).zip(input.chunks(4096)) {
        let kept = top_k_set(chunk, 64);
        let sent = &output[start..start + chunk.len()];
        let nonzero: Vec<usize> = (0..chunk.len()).filter(|&i| sent[i] != 0.0).collect();
        assert_eq!(nonzero, kept, "chunk at {start}");
        let lo = kept
            .iter()
            .map(|&i| chunk[i].abs())
            .fold(f32::INFINITY, f32::min);
        let hi = kept.iter().map(|&i| chunk[i].abs()).fold(0.0, f32::max);
        for &i in &kept {
            assert_eq!(sent[i].signum(), chunk[i].signum());
            // Two magnitude levels: lo and hi; each value goes to the nearer.
            let expected = if chunk[i].abs() - lo <= hi - chunk[i].abs() {
                lo
            } else {
                hi
            };
            assert!((sent[i].abs() - expected).abs() <= expected * 1e-6, "{i}");
        }
    }
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let input = values(9_000, 2);
    assert_eq!(
        encode(&input, &POLICY).unwrap(),
        encode(&input, &POLICY).unwrap()
    );
}

#[test]
fn sends_over_a_hundred_times_fewer_bytes_than_f32_at_the_sparseloco_point() {
    let len = 1_000_000;
    let ratio = CompressionSpec::None.encoded_len(len) as f64 / POLICY.encoded_len(len) as f64;
    assert!(ratio > 130.0, "{ratio}");
}

#[test]
fn a_short_last_chunk_keeps_all_it_has_when_under_k() {
    let policy = CompressionSpec::TopK {
        chunk: 64,
        k: 16,
        bits: 4,
        feedback_decay: 1.0,
    };
    let input = values(64 + 10, 3);
    let output = decode(&encode(&input, &policy).unwrap(), input.len(), &policy).unwrap();
    assert!(output[64..].iter().all(|&value| value != 0.0));
    assert_eq!(
        output[..64].iter().filter(|&&value| value != 0.0).count(),
        16
    );
}

/// With `feedback_decay = β`, each round sends and keeps `Δ + β·e` between them, and the
/// undecayed policy is the same arithmetic as before decay existed (`1·e = e` exactly).
#[test]
fn decayed_feedback_keeps_beta_of_what_was_held_back() {
    let decayed = CompressionSpec::TopK {
        chunk: 4096,
        k: 64,
        bits: 2,
        feedback_decay: 0.9,
    };
    let mut feedback: Vec<f32> = Vec::new();
    for round in 0..5 {
        let update = values(8192, round + 1);
        let (bytes, residual) = compress_with_feedback(&update, &feedback, &decayed).unwrap();
        let sent = decode(&bytes, update.len(), &decayed).unwrap();
        for (i, value) in update.iter().enumerate() {
            let held = feedback.get(i).map_or(0.0, |e| 0.9 * e);
            let kept = sent[i] + residual[i];
            assert!((kept - (value + held)).abs() <= 1e-6 * (value + held).abs().max(1e-3));
        }
        let (undecayed, _) = compress_with_feedback(&update, &feedback, &POLICY).unwrap();
        let plain: Vec<f32> = match feedback.is_empty() {
            true => update.clone(),
            false => update.iter().zip(&feedback).map(|(u, e)| u + e).collect(),
        };
        assert_eq!(undecayed, encode(&plain, &POLICY).unwrap());
        feedback = residual;
    }
}

#[test]
fn error_feedback_keeps_what_rounds_did_not_send() {
    // Sent over T rounds plus what is kept equals the sum of the updates: nothing is lost.
    let update = values(8192, 4);
    let mut feedback = Vec::new();
    let mut sent_total = vec![0.0f64; update.len()];
    let rounds = 200;
    for _ in 0..rounds {
        let (bytes, residual) = compress_with_feedback(&update, &feedback, &POLICY).unwrap();
        let sent = decode(&bytes, update.len(), &POLICY).unwrap();
        for (total, value) in sent_total.iter_mut().zip(&sent) {
            *total += f64::from(*value);
        }
        feedback = residual;
    }
    let mut error = 0.0;
    let mut norm = 0.0;
    for ((total, kept), value) in sent_total.iter().zip(&feedback).zip(&update) {
        let expected = f64::from(*value) * f64::from(rounds);
        error += (total + f64::from(*kept) - expected).powi(2);
        norm += expected.powi(2);
    }
    assert!((error / norm).sqrt() < 1e-5, "{}", (error / norm).sqrt());
    // And what was sent alone approaches the updates as the rounds add up.
    let sent_error: f64 = sent_total
        .iter()
        .zip(&update)
        .map(|(total, value)| (total - f64::from(*value) * f64::from(rounds)).powi(2))
        .sum();
    assert!(
        (sent_error / norm).sqrt() < 0.2,
        "{}",
        (sent_error / norm).sqrt()
    );
}

#[test]
fn refuses_non_finite_values_and_bad_policies() {
    assert!(encode(&[1.0, f32::NAN], &POLICY).is_err());
    assert!(encode(&[f32::INFINITY], &POLICY).is_err());
    for policy in [
        CompressionSpec::TopK {
            chunk: 32,
            k: 4,
            bits: 2,
            feedback_decay: 1.0,
        },
        CompressionSpec::TopK {
            chunk: 4096,
            k: 0,
            bits: 2,
            feedback_decay: 1.0,
        },
        CompressionSpec::TopK {
            chunk: 4096,
            k: 4097,
            bits: 2,
            feedback_decay: 1.0,
        },
        CompressionSpec::TopK {
            chunk: 4096,
            k: 64,
            bits: 1,
            feedback_decay: 1.0,
        },
        CompressionSpec::TopK {
            chunk: 1 << 17,
            k: 64,
            bits: 2,
            feedback_decay: 1.0,
        },
        CompressionSpec::TopK {
            chunk: 4096,
            k: 64,
            bits: 2,
            feedback_decay: 0.0,
        },
        CompressionSpec::TopK {
            chunk: 4096,
            k: 64,
            bits: 2,
            feedback_decay: 1.01,
        },
        CompressionSpec::TopK {
            chunk: 4096,
            k: 64,
            bits: 2,
            feedback_decay: f32::NAN,
        },
    ] {
        assert!(policy.validate().is_err(), "{policy:?}");
        assert!(encode(&[1.0; 64], &policy).is_err());
    }
}

#[test]
fn decode_refuses_every_form_encode_never_writes() {
    let input = values(5000, 5);
    let good = encode(&input, &POLICY).unwrap();
    let refused = |bytes: &[u8], why: &str| {
        assert!(decode(bytes, input.len(), &POLICY).is_err(), "{why}");
    };
    refused(&good[..good.len() - 1], "short");
    refused(&[good.clone(), vec![0]].concat(), "long");
    assert!(
        decode(&good, input.len() + 1, &POLICY).is_err(),
        "other length"
    );
    let other = CompressionSpec::TopK {
        chunk: 4096,
        k: 64,
        bits: 3,
        feedback_decay: 1.0,
    };
    assert!(decode(&good, input.len(), &other).is_err(), "other policy");
    let mut magic = good.clone();
    magic[0] ^= 1;
    refused(&magic, "magic");
    let first_chunk = HEADER_BYTES;
    let mut negative_scale = good.clone();
    negative_scale[first_chunk..first_chunk + 4].copy_from_slice(&(-1.0f32).to_le_bytes());
    refused(&negative_scale, "negative lo");
    let mut nan_scale = good.clone();
    nan_scale[first_chunk + 4..first_chunk + 8].copy_from_slice(&f32::NAN.to_le_bytes());
    refused(&nan_scale, "NaN hi");
    let mut inverted = good.clone();
    inverted[first_chunk..first_chunk + 4].copy_from_slice(&1e9f32.to_le_bytes());
    refused(&inverted, "lo above hi");
    // 64 entries of 14 bits fill whole bytes: padding is checked under a policy that pads
    // (3 entries of 6 + 3 bits: 27 bits, 5 of padding).
    let padded = CompressionSpec::TopK {
        chunk: 64,
        k: 3,
        bits: 3,
        feedback_decay: 1.0,
    };
    let small = values(64, 6);
    let mut bytes = encode(&small, &padded).unwrap();
    let last = bytes.len() - 1;
    bytes[last] |= 0x80;
    assert!(decode(&bytes, 64, &padded).is_err(), "padding bit");
    // The first entry's index set to 63: no longer below the second's.
    let mut out_of_order = encode(&small, &padded).unwrap();
    out_of_order[HEADER_BYTES + 8] |= 0x3f;
    assert!(decode(&out_of_order, 64, &padded).is_err(), "order");
}

proptest! {
    #[test]
    fn decoding_any_bytes_errs_or_yields_finite_values(
        mutations in proptest::collection::vec((0usize..2000, any::<u8>()), 1..8),
        seed in 0u32..1000,
    ) {
        let policy = CompressionSpec::TopK { chunk: 256, k: 16, bits: 4, feedback_decay: 1.0 };
        let input = values(1000, seed);
        let mut bytes = encode(&input, &policy).unwrap();
        for (at, byte) in mutations {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        if let Ok(decoded) = decode(&bytes, input.len(), &policy) {
            prop_assert!(decoded.iter().all(|value| value.is_finite()));
            prop_assert_eq!(decoded.len(), input.len());
        }
    }

    #[test]
    fn decode_inverts_encode_on_its_own_output(seed in 0u32..1000, len in 1usize..3000) {
        let policy = CompressionSpec::TopK { chunk: 128, k: 8, bits: 8, feedback_decay: 1.0 };
        let input = values(len, seed);
        let bytes = encode(&input, &policy).unwrap();
        let decoded = decode(&bytes, len, &policy).unwrap();
        // Re-encoding the decoded vector is a fixed point: the kept set and levels survive.
        prop_assert_eq!(encode(&decoded, &policy).unwrap(), bytes);
    }
}

#[test]
fn ties_and_signed_zeros_keep_the_lower_indices() {
    // Magnitudes 0..=6 repeat, with both signs and -0.0: many ties at every magnitude.
    let chunk: Vec<f32> = (0..4096)
        .map(|i| {
            let magnitude = (i % 7) as f32;
            if i % 2 == 0 { magnitude } else { -magnitude }
        })
        .collect();
    let output = decode(&encode(&chunk, &POLICY).unwrap(), chunk.len(), &POLICY).unwrap();
    let nonzero: Vec<usize> = (0..chunk.len()).filter(|&i| output[i] != 0.0).collect();
    assert_eq!(nonzero, top_k_set(&chunk, 64));
    let mut keys: Vec<u64> = chunk
        .iter()
        .enumerate()
        .map(|(index, value)| selection_key(*value, index as u32))
        .collect();
    keys.sort_unstable_by(|a, b| b.cmp(a));
    let by_key: Vec<usize> = keys.iter().map(|key| index_of_key(*key) as usize).collect();
    let mut reference: Vec<usize> = (0..chunk.len()).collect();
    reference.sort_by(|&a, &b| chunk[b].abs().total_cmp(&chunk[a].abs()).then(a.cmp(&b)));
    assert_eq!(by_key, reference);
}
