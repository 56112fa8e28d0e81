//! Model-PoT, gradient consistency: does each contribution of a round look like the others?
//! Its norm must be within a factor of the cohort's median norm, and it must point the same
//! way as the robust centre (coordinate-wise median). Statistics alone lose to small
//! coordinated shifts, so this flags and weighs; replay audits stay the primary defence.

use corex_core::Hash;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::aggregate::{norms, robust_centre};
use crate::compare::cosine;
use crate::error::VerifyError;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyPolicy {
    /// A norm more than this many times the median (or less than its inverse) is flagged.
    pub max_norm_ratio: f64,
    /// A cosine with the robust centre below this is flagged.
    pub min_cosine: f64,
    /// Cohorts smaller than this are not judged (a median of two says little).
    pub min_cohort: usize,
}

impl Default for ConsistencyPolicy {
    fn default() -> Self {
        Self {
            max_norm_ratio: 5.0,
            min_cosine: 0.0,
            min_cohort: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inconsistency {
    NormTooLarge,
    NormTooSmall,
    AgainstTheCohort,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Consistency {
    /// Norm over the cohort's median norm.
    pub norm_ratio: f64,
    pub cosine_to_centre: f64,
    pub flag: Option<Inconsistency>,
}

/// Judges every part of one round against the others.
pub fn round_consistency(
    parts: &[&[f32]],
    policy: &ConsistencyPolicy,
) -> Result<Vec<Consistency>, VerifyError> {
    let centre = robust_centre(parts)?;
    let part_norms = norms(parts);
    let mut sorted = part_norms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let judged = parts.len() >= policy.min_cohort && median > 0.0;
    Ok(parts
        .iter()
        .zip(&part_norms)
        .map(|(part, norm)| {
            let norm_ratio = if median > 0.0 { norm / median } else { 1.0 };
            let cosine_to_centre = cosine(part, &centre);
            let flag = if !judged {
                None
            } else if norm_ratio > policy.max_norm_ratio {
                Some(Inconsistency::NormTooLarge)
            } else if norm_ratio < 1.0 / policy.max_norm_ratio {
                Some(Inconsistency::NormTooSmall)
            } else if cosine_to_centre < policy.min_cosine {
                Some(Inconsistency::AgainstTheCohort)
            } else {
                None
            };
            Consistency {
                norm_ratio,
                cosine_to_centre,
                flag,
            }
        })
        .collect())
}

/// `count` distinct coordinates out of `len`, drawn from `seed` (sorted). Consistency
/// statistics on a few thousand coordinates estimate norms and cosines well and cost a tiny
/// fraction of the full vectors; drawn from the seed revealed after the results were
/// committed, the sample cannot be predicted and dodged.
pub fn sample_coordinates(seed: &Hash, len: usize, count: usize) -> Vec<usize> {
    if count >= len {
        return (0..len).collect();
    }
    let mut rng = ChaCha8Rng::from_seed(seed.0);
    let mut picked = rand::seq::index::sample(&mut rng, len, count).into_vec();
    picked.sort_unstable();
    picked
}

/// The values of `parts` at `coordinates`.
pub fn gather(parts: &[&[f32]], coordinates: &[usize]) -> Vec<Vec<f32>> {
    parts
        .iter()
        .map(|part| {
            coordinates
                .iter()
                .map(|&i| part.get(i).copied().unwrap_or(0.0))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_zeroed_and_flipped_gradients_are_flagged_honest_ones_are_not() {
        let base: Vec<f32> = (0..200).map(|i| ((i as f32) * 0.1).sin()).collect();
        let mut parts: Vec<Vec<f32>> = (0..5)
            .map(|k| {
                base.iter()
                    .enumerate()
                    .map(|(i, v)| v + 0.2 * (((i * 13 + k * 7) % 17) as f32 / 17.0 - 0.5))
                    .collect()
            })
            .collect();
        parts.push(base.iter().map(|v| v * 10.0).collect());
        parts.push(vec![0.0; 200]);
        parts.push(base.iter().map(|v| -v).collect());
        let refs: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
        let judged = round_consistency(&refs, &ConsistencyPolicy::default()).unwrap();
        for honest in &judged[..5] {
            assert_eq!(honest.flag, None, "{honest:?}");
        }
        assert_eq!(judged[5].flag, Some(Inconsistency::NormTooLarge));
        assert_eq!(judged[6].flag, Some(Inconsistency::NormTooSmall));
        assert_eq!(judged[7].flag, Some(Inconsistency::AgainstTheCohort));
    }
}
