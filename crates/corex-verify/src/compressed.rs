//! Auditing a compressed pseudo-gradient (see `corex_core::compression`): what a node's result
//! claims once it reveals its error-feedback states, and whether its bytes really are the
//! compression of what it claims.
//!
//! A node with error feedback `e` (before) sends `C(v)` for `v = Δ + β·e` (`β` the policy's
//! `feedback_decay`, 1 by default) and keeps `e' = v − D(C(v))` (after). Revealing `e` and `e'`
//! (each bound by the hash its result committed to) turns the sent bytes back into a dense
//! claim, `Δ = D(C) + e' − β·e`, which the
//! audit compares with its own replay of the fragment like any update. Only if the bytes are a
//! faithful compression of `v = D(C) + e'` (the kept values are the chunk's largest, the
//! scales are the kept magnitudes' extremes, each code the nearest level with the right sign)
//! does the claim bind what was sent: otherwise a node could send any values and book the
//! difference in `e'`.

use corex_core::compression::{CompressionSpec, SentChunk, levels, parse};

/// Leaves of a compressed result's feedback states an audit opens (drawn from the audit's
/// seed, `corex_core::feedback_state::sample_leaves`): every kind of the adversary kit
/// misstates every leaf; a node that poisons a fraction `f` of the leaves escapes one audit
/// with probability about `(1 − f)²`.
pub const OPENED_LEAVES: usize = 2;

/// Relative slack, in units of a chunk's largest magnitude, for the rounding between the
/// node's `v` and the audit's `D(C) + e'` (one f32 subtraction and one addition).
const SLACK_EPSILONS: f32 = 8.0;

/// The dense update a compressed result claims: `sent + after − decay·before`, elementwise in
/// f32. `before` is empty for a node's first result of a job (all zeros).
pub fn claimed_update(
    sent: &[f32],
    before: &[f32],
    after: &[f32],
    decay: f32,
) -> Result<Vec<f32>, String> {
    if after.len() != sent.len() || !(before.is_empty() || before.len() == sent.len()) {
        return Err(format!(
            "feedback states of {} and {} values for an update of {}",
            before.len(),
            after.len(),
            sent.len()
        ));
    }
    Ok(sent
        .iter()
        .zip(after)
        .enumerate()
        .map(|(i, (s, a))| s + a - decay * before.get(i).copied().unwrap_or(0.0))
        .collect())
}

/// How far rounding may take [`claimed_update`] from the update the node computed, as an L2
/// norm: `SLACK_EPSILONS` f32 epsilons of `|sent| + |after| + |decay·before|` per value. Where a
/// replay is exactly zero (a chunk no sample touched: Adam leaves such values exactly
/// unchanged), the claim `sent + after − before` of an honest node is zero only up to this
/// rounding, so a claim within it matches.
pub fn claim_rounding(sent: &[f32], before: &[f32], after: &[f32], decay: f32) -> f64 {
    sent.iter()
        .zip(after)
        .enumerate()
        .map(|(i, (s, a))| {
            let b = decay * before.get(i).copied().unwrap_or(0.0);
            let bound = f64::from(SLACK_EPSILONS * f32::EPSILON)
                * (f64::from(s.abs()) + f64::from(a.abs()) + f64::from(b.abs()));
            bound * bound
        })
        .sum::<f64>()
        .sqrt()
}

/// Checks that `bytes` (a compressed vector of `len` values) is, on each `opened` run of
/// values, a faithful compression under `spec` of the node's `v = D(C) + e'` there, up to the
/// rounding of forming it. `opened` pairs a run's first value with its values of `v`; a run may
/// lie inside a chunk or span several. Each opened value is checked against its chunk: a kept
/// one has the right sign, the level nearest its magnitude and a magnitude within the chunk's
/// scales, an unsent one is no larger than the smallest kept. Where a run holds a whole chunk,
/// its scales must also be exactly the kept magnitudes' extremes. The reason names the first
/// chunk and value that disagree.
pub fn check_compression(
    bytes: &[u8],
    len: usize,
    opened: &[(usize, Vec<f32>)],
    spec: &CompressionSpec,
) -> Result<(), String> {
    let chunks = parse(bytes, len, spec).map_err(|error| error.to_string())?;
    let levels = levels(spec).ok_or("no compression policy")?;
    let chunk_len = spec.chunk_len().ok_or("no compression policy")?;
    for (start, values) in opened {
        let end = start
            .checked_add(values.len())
            .filter(|end| *end <= len && !values.is_empty())
            .ok_or_else(|| format!("{} values opened at {start} of {len}", values.len()))?;
        let mut position = *start;
        while position < end {
            let chunk = &chunks[position / chunk_len];
            let stop = (chunk.start + chunk.len).min(end);
            let part = &values[position - start..stop - start];
            check_part(chunk, position - chunk.start, part, levels)?;
            position = stop;
        }
    }
    Ok(())
}

/// [`check_compression`] on the values of `chunk` from its value `offset` on.
fn check_part(chunk: &SentChunk, offset: usize, values: &[f32], levels: u32) -> Result<(), String> {
    let largest = values.iter().fold(chunk.hi, |max, v| max.max(v.abs()));
    let slack = SLACK_EPSILONS * f32::EPSILON * largest;
    let at = |what: String| format!("chunk at value {}: {what}", chunk.start);
    let inside = offset..offset + values.len();
    let mut kept = vec![false; values.len()];
    let (mut lo, mut hi) = (f32::INFINITY, 0.0_f32);
    let range = chunk.hi - chunk.lo;
    for entry in chunk
        .entries
        .iter()
        .filter(|entry| inside.contains(&(entry.index as usize)))
    {
        let value = values[entry.index as usize - offset];
        kept[entry.index as usize - offset] = true;
        let magnitude = value.abs();
        lo = lo.min(magnitude);
        hi = hi.max(magnitude);
        if magnitude < chunk.lo - slack || magnitude > chunk.hi + slack {
            return Err(at(format!(
                "value {} ({value}) kept outside the scales {}, {}",
                entry.index, chunk.lo, chunk.hi
            )));
        }
        let sign_wrong =
            (value > slack && entry.value < 0.0) || (value < -slack && entry.value > 0.0);
        if sign_wrong {
            return Err(at(format!(
                "value {} ({value}) sent as {}",
                entry.index, entry.value
            )));
        }
        if range > slack {
            let position = (magnitude - chunk.lo) / range * (levels - 1) as f32;
            let level_slack = slack / range * (levels - 1) as f32 + 1e-3;
            if (entry.level as f32 - position).abs() > 0.5 + level_slack {
                return Err(at(format!(
                    "value {} ({value}) sent at level {}, nearest {}",
                    entry.index,
                    entry.level,
                    position.round()
                )));
            }
        }
    }
    let whole = offset == 0 && values.len() == chunk.len;
    if whole && ((lo - chunk.lo).abs() > slack || (hi - chunk.hi).abs() > slack) {
        return Err(at(format!(
            "scales {}, {} but the kept magnitudes span {lo}, {hi}",
            chunk.lo, chunk.hi
        )));
    }
    if let Some((index, value)) = values
        .iter()
        .enumerate()
        .find(|(index, value)| !kept[*index] && value.abs() > chunk.lo + slack)
    {
        return Err(at(format!(
            "value {} ({value}) is larger than a kept one ({}) and was not sent",
            offset + index,
            chunk.lo
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use corex_core::compression::{compress_with_feedback, decode, encode};

    use super::*;

    /// [`check_compression`] with every chunk of `corrected` opened.
    fn check_whole(bytes: &[u8], corrected: &[f32], spec: &CompressionSpec) -> Result<(), String> {
        let chunk = spec.chunk_len().unwrap();
        let opened: Vec<(usize, Vec<f32>)> = corrected
            .chunks(chunk)
            .enumerate()
            .map(|(index, values)| (index * chunk, values.to_vec()))
            .collect();
        check_compression(bytes, corrected.len(), &opened, spec)
    }

    const POLICY: CompressionSpec = CompressionSpec::TopK {
        chunk: 256,
        k: 8,
        bits: 3,
        feedback_decay: 1.0,
    };

    fn update(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.01
            })
            .collect()
    }

    /// An honest node's results over rounds (200 seeded runs of 4, with whole and with decayed
    /// feedback): the revealed states give back each round's update, and every result is a
    /// faithful compression of `D(C) + e'`.
    #[test]
    fn an_honest_nodes_claims_are_its_updates_and_its_bytes_are_faithful() {
        let CompressionSpec::TopK { chunk, k, bits, .. } = POLICY else {
            unreachable!("a top-k policy")
        };
        let decayed = CompressionSpec::TopK {
            chunk,
            k,
            bits,
            feedback_decay: 0.95,
        };
        for run in 0..200 {
            honest_rounds(run, &POLICY);
            honest_rounds(run, &decayed);
        }
    }

    fn honest_rounds(run: u64, policy: &CompressionSpec) {
        let mut before: Vec<f32> = Vec::new();
        for round in 0..4 {
            let delta = update(1000, run * 16 + round + 1);
            let (bytes, after) = compress_with_feedback(&delta, &before, policy).unwrap();
            let sent = decode(&bytes, delta.len(), policy).unwrap();
            let decay = policy.feedback_decay();
            let claimed = claimed_update(&sent, &before, &after, decay).unwrap();
            let worst = claimed
                .iter()
                .zip(&delta)
                .map(|(c, d)| (c - d).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-8, "run {run} round {round}: {worst}");
            let corrected: Vec<f32> = sent.iter().zip(&after).map(|(s, a)| s + a).collect();
            check_whole(&bytes, &corrected, policy).unwrap();
            before = after;
        }
    }

    /// Sending other values and booking the difference in `e'` keeps the claim right but is
    /// caught: the bytes are not the compression of `D(C) + e'`.
    #[test]
    fn bytes_that_are_not_the_compression_of_the_claim_are_caught() {
        let delta = update(1000, 7);
        let honest = encode(&delta, &POLICY).unwrap();
        // A poisoner sends ten times the values and keeps the difference as feedback.
        let poisoned: Vec<f32> = decode(&honest, delta.len(), &POLICY)
            .unwrap()
            .iter()
            .map(|v| v * 10.0)
            .collect();
        let bytes = encode(&poisoned, &POLICY).unwrap();
        let sent = decode(&bytes, delta.len(), &POLICY).unwrap();
        let after: Vec<f32> = delta.iter().zip(&sent).map(|(d, s)| d - s).collect();
        let corrected: Vec<f32> = sent.iter().zip(&after).map(|(s, a)| s + a).collect();
        let claimed = claimed_update(&sent, &[], &after, 1.0).unwrap();
        assert!(
            claimed
                .iter()
                .zip(&delta)
                .all(|(c, d)| (c - d).abs() < 1e-6)
        );
        let why = check_whole(&bytes, &corrected, &POLICY).unwrap_err();
        assert!(why.contains("scales"), "{why}");
        // Sending nothing of a chunk's largest values: the kept set is wrong.
        let mut shifted = delta.clone();
        for value in shifted.iter_mut().take(256) {
            *value = if value.abs() > 0.004 { 0.0 } else { *value };
        }
        let bytes = encode(&shifted, &POLICY).unwrap();
        let sent = decode(&bytes, delta.len(), &POLICY).unwrap();
        let after: Vec<f32> = delta.iter().zip(&sent).map(|(d, s)| d - s).collect();
        let corrected: Vec<f32> = sent.iter().zip(&after).map(|(s, a)| s + a).collect();
        let why = check_whole(&bytes, &corrected, &POLICY).unwrap_err();
        assert!(why.contains("not sent"), "{why}");
    }

    /// Where the node's update is exactly zero (values no sample touched), the claim
    /// `D(C) + e' − e` is zero only up to rounding, and never beyond `claim_rounding`.
    #[test]
    fn a_zero_update_claims_zero_within_its_rounding() {
        // Nearly all of each chunk kept at 2 bits: kept values far above their level's magnitude,
        // where `e' = e − D(C)` and `D(C) + e'` round.
        let wide = CompressionSpec::TopK {
            chunk: 256,
            k: 250,
            bits: 2,
            feedback_decay: 1.0,
        };
        let mut nonzero = 0;
        for run in 0..200 {
            let before = update(1000, run + 1);
            let zero = vec![0.0; 1000];
            let (bytes, after) = compress_with_feedback(&zero, &before, &wide).unwrap();
            let sent = decode(&bytes, 1000, &wide).unwrap();
            let claimed = claimed_update(&sent, &before, &after, 1.0).unwrap();
            let norm = crate::compare::norm(&claimed);
            nonzero += usize::from(norm > 0.0);
            assert!(
                norm <= claim_rounding(&sent, &before, &after, 1.0),
                "run {run}: {norm}"
            );
        }
        assert!(
            nonzero > 0,
            "no zero update claimed a rounding: the case is not exercised"
        );
    }

    /// Opening some runs of values judges those alone: a poisoned chunk is caught when a run
    /// in it is opened and only then, whether the run is the whole chunk, a part of it, or
    /// spans a chunk boundary; a run past the end is refused.
    #[test]
    fn opened_runs_are_judged_alone() {
        let delta = update(1000, 11);
        let mut poisoned = delta.clone();
        let chunk = POLICY.chunk_len().unwrap();
        // Chunk 2 sends values it does not hold: the kept values claim ten times the truth.
        let bytes = encode(&delta, &POLICY).unwrap();
        for value in &mut poisoned[2 * chunk..3 * chunk] {
            *value *= 10.0;
        }
        let open = |start: usize, end: usize| (start, poisoned[start..end].to_vec());
        let honest = [open(0, chunk), open(3 * chunk, 1000), open(100, 300)];
        assert!(check_compression(&bytes, 1000, &honest, &POLICY).is_ok());
        for caught in [
            open(2 * chunk, 3 * chunk),
            open(2 * chunk + 64, 2 * chunk + 192),
            open(2 * chunk - 32, 2 * chunk + 96),
        ] {
            let why = check_compression(&bytes, 1000, &[open(0, 64), caught], &POLICY);
            assert!(why.is_err());
        }
        assert!(check_compression(&bytes, 1000, &[(900, vec![0.0; 200])], &POLICY).is_err());
        assert!(check_compression(&bytes, 1000, &[(10, Vec::new())], &POLICY).is_err());
    }

    /// A part of a chunk cannot tell whether the scales are the kept magnitudes' extremes, but
    /// its kept values must lie within them: scales moved past the values opened are caught.
    #[test]
    fn kept_values_outside_their_chunks_scales_are_caught() {
        let delta = update(256, 5);
        let mut bytes = encode(&delta, &POLICY).unwrap();
        // Raise the chunk's `lo` (bytes 21..25, after the header) above every kept magnitude.
        let chunk = &parse(&bytes, 256, &POLICY).unwrap()[0];
        bytes[21..25].copy_from_slice(&(chunk.hi * 0.999).to_le_bytes());
        let kept = chunk
            .entries
            .iter()
            .map(|entry| entry.index as usize)
            .min_by(|a, b| delta[*a].abs().total_cmp(&delta[*b].abs()))
            .unwrap();
        let run = (kept, delta[kept..kept + 1].to_vec());
        let why = check_compression(&bytes, 256, &[run], &POLICY).unwrap_err();
        assert!(why.contains("outside the scales"), "{why}");
    }

    #[test]
    fn a_flipped_sign_or_a_wrong_level_is_caught() {
        let delta = update(256, 9);
        let bytes = encode(&delta, &POLICY).unwrap();
        let chunks = parse(&bytes, 256, &POLICY).unwrap();
        let entry = chunks[0].entries[0];
        let mut flipped = delta.clone();
        flipped[entry.index as usize] = -flipped[entry.index as usize];
        assert!(check_whole(&bytes, &flipped, &POLICY).is_err());
        // The corrected values claim a magnitude two levels away from the one sent.
        let mut moved = delta.clone();
        let range = chunks[0].hi - chunks[0].lo;
        let target = if entry.level >= 2 {
            entry.level - 2
        } else {
            entry.level + 2
        };
        let magnitude = chunks[0].lo + range * target as f32 / 3.0;
        moved[entry.index as usize] = magnitude.copysign(delta[entry.index as usize]);
        assert!(check_whole(&bytes, &moved, &POLICY).is_err());
        assert!(check_whole(&bytes, &delta, &POLICY).is_ok());
    }
}
