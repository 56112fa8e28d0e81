//! Compressed model downloads: a node that holds a job's model version `p_r` applies the
//! round's published update instead of fetching `p_{r+1}` whole, and checks the result by the
//! new version's hash.
//!
//! The coordinator keeps the optimizer's parameters θ apart from the published version p. At
//! each close it publishes `p_{r+1} = p_r + D(C(θ_{r+1} − p_r))` with the job's
//! `download_compression` policy ([`crate::compression`]); what a round did not send stays in
//! `θ − p` and goes out in later rounds (error feedback with no extra state). Both sides add
//! the decoded update in IEEE single precision, value by value, so a node that applies the
//! update gets exactly the coordinator's bytes, which [`Manifest::of`] names as the round's
//! model hash: a wrong or tampered update is caught before anything is computed on it.
//!
//! A lease carries the updates of the last [`MAX_UPDATE_CHAIN`] rounds, oldest first, so a
//! node that missed a round or two applies them in turn from the version it holds.
//!
//! Pure: no I/O.

use serde::{Deserialize, Serialize};

use crate::chunk::Manifest;
use crate::compression::{self, CompressionSpec};
use crate::error::DecodeError;
use crate::hash::Hash;

/// The most rounds' updates a lease carries (and a node accepts).
pub const MAX_UPDATE_CHAIN: usize = 4;

/// How to get a lease's model version from the one before it: the manifest of the encoded
/// update `C(θ_{r+1} − p_r)` (a blob like any other), applied to version `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUpdate {
    pub from: Hash,
    pub delta: Manifest,
}

/// The next published version and the bytes of the update that makes it from `published`:
/// `(C(trained − published), published + D(C(trained − published)))`.
pub fn publish_step(
    trained: &[f32],
    published: &[f32],
    spec: &CompressionSpec,
) -> Result<(Vec<u8>, Vec<f32>), DecodeError> {
    if trained.len() != published.len() {
        return Err(DecodeError::Body(format!(
            "a model of {} values published as one of {}",
            trained.len(),
            published.len()
        )));
    }
    let difference: Vec<f32> = trained
        .iter()
        .zip(published)
        .map(|(theta, p)| theta - p)
        .collect();
    let encoded = compression::encode(&difference, spec)?;
    let next = apply(published, &encoded, spec)?;
    Ok((encoded, next))
}

/// `base + D(update)`, value by value; refuses an update that does not decode under `spec`
/// at `base`'s length (checked before anything is allocated, see [`compression::decode`]).
pub fn apply(base: &[f32], update: &[u8], spec: &CompressionSpec) -> Result<Vec<f32>, DecodeError> {
    let decoded = compression::decode(update, base.len(), spec)?;
    Ok(base.iter().zip(&decoded).map(|(p, d)| p + d).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::f32s_to_bytes;

    const SPEC: CompressionSpec = CompressionSpec::TopK {
        chunk: 64,
        k: 8,
        bits: 4,
        feedback_decay: 1.0,
    };

    fn wave(len: usize, phase: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f32) * 0.37 + phase).sin() * 0.1)
            .collect()
    }

    #[test]
    fn a_node_applying_the_update_gets_the_published_bytes() {
        let published = wave(256, 0.0);
        let trained: Vec<f32> = published
            .iter()
            .zip(wave(256, 1.3))
            .map(|(p, step)| p + step * 0.01)
            .collect();
        let (update, next) = publish_step(&trained, &published, &SPEC).unwrap();
        let applied = apply(&published, &update, &SPEC).unwrap();
        let hash = |values: &[f32]| Manifest::of(&f32s_to_bytes(values), 128).hash;
        assert_eq!(hash(&applied), hash(&next));
        assert!(
            update.len() * 4 < 256 * 4,
            "the update is smaller than the model"
        );
        assert_ne!(next, published, "the update moved the model");
    }

    #[test]
    fn what_a_round_does_not_send_goes_out_later() {
        let trained = wave(256, 0.5);
        let mut published = vec![0.0; 256];
        let gap = |published: &[f32]| -> f32 {
            trained
                .iter()
                .zip(published)
                .map(|(t, p)| (t - p).abs())
                .sum()
        };
        let first_gap = gap(&published);
        for _ in 0..12 {
            published = publish_step(&trained, &published, &SPEC).unwrap().1;
        }
        assert!(
            gap(&published) < first_gap * 0.05,
            "the published model converges on the trained one: {} of {first_gap}",
            gap(&published)
        );
    }

    #[test]
    fn an_update_for_another_length_or_policy_is_refused() {
        let published = wave(256, 0.0);
        let (update, _) = publish_step(&wave(256, 0.2), &published, &SPEC).unwrap();
        assert!(apply(&published[..128], &update, &SPEC).is_err());
        let other = CompressionSpec::TopK {
            chunk: 64,
            k: 8,
            bits: 2,
            feedback_decay: 1.0,
        };
        assert!(apply(&published, &update, &other).is_err());
        assert!(apply(&published, &update[..update.len() - 1], &SPEC).is_err());
        assert!(publish_step(&wave(255, 0.0), &published, &SPEC).is_err());
    }
}
