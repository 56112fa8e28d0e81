//! Replay comparison: is a submitted result the same computation as the auditor's replay, up
//! to floating-point differences between devices and thread counts?

use serde::{Deserialize, Serialize};

use crate::error::VerifyError;

/// Limits within which a submitted result matches its replay. Both must hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Largest accepted `‖submitted − replay‖ / ‖replay‖`.
    pub max_relative_l2: f64,
    /// Smallest accepted cosine similarity of submitted and replay.
    pub min_cosine: f64,
}

impl Default for Tolerance {
    /// One bound for every model family and device pair, from the calibration in
    /// docs/verification.md ("Calibration of the tolerance"): honest replays on the CPU backend
    /// are bit-identical across thread counts, and across backends (burn's flex CPU kernels
    /// against its wgpu ones) they differ by rounding, at most a few 10⁻⁶ relative L2 for every
    /// family. The bound sits well over an order of magnitude above that spread and an order
    /// below the smallest cheat it must catch, a result off by a relative 10⁻³.
    fn default() -> Self {
        Self {
            max_relative_l2: 1e-4,
            min_cosine: 0.999_99,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub relative_l2: f64,
    pub cosine: f64,
    pub within: bool,
}

/// Compares `submitted` with the auditor's `replay` (accumulated in f64).
pub fn compare(
    submitted: &[f32],
    replay: &[f32],
    tolerance: &Tolerance,
) -> Result<Comparison, VerifyError> {
    if submitted.len() != replay.len() {
        return Err(VerifyError::Shape {
            index: 0,
            expected: replay.len(),
            got: submitted.len(),
        });
    }
    let (mut diff, mut dot, mut norm_s, mut norm_r) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (s, r) in submitted.iter().zip(replay) {
        let (s, r) = (f64::from(*s), f64::from(*r));
        diff += (s - r) * (s - r);
        dot += s * r;
        norm_s += s * s;
        norm_r += r * r;
    }
    let (relative_l2, cosine) = if norm_r == 0.0 {
        // A zero replay matches only a zero submission.
        let exact = norm_s == 0.0;
        (
            if exact { 0.0 } else { f64::INFINITY },
            if exact { 1.0 } else { 0.0 },
        )
    } else if norm_s == 0.0 {
        (1.0, 0.0)
    } else {
        (
            diff.sqrt() / norm_r.sqrt(),
            dot / (norm_s.sqrt() * norm_r.sqrt()),
        )
    };
    let within = relative_l2.is_finite()
        && relative_l2 <= tolerance.max_relative_l2
        && cosine >= tolerance.min_cosine;
    Ok(Comparison {
        relative_l2,
        cosine,
        within,
    })
}

/// Euclidean norm, in f64.
pub fn norm(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|v| f64::from(*v) * f64::from(*v))
        .sum::<f64>()
        .sqrt()
}

/// Cosine similarity in f64; 0 when either vector is zero.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    dot / (na * nb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_noise_passes_and_cheats_do_not() {
        let honest: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.37).sin()).collect();
        let noisy: Vec<f32> = honest.iter().map(|v| v * (1.0 + 1e-6)).collect();
        let t = Tolerance::default();
        assert!(compare(&noisy, &honest, &t).unwrap().within);
        let scaled: Vec<f32> = honest.iter().map(|v| v * 10.0).collect();
        assert!(!compare(&scaled, &honest, &t).unwrap().within);
        let flipped: Vec<f32> = honest.iter().map(|v| -v).collect();
        assert!(!compare(&flipped, &honest, &t).unwrap().within);
        let zeros = vec![0.0; 1000];
        assert!(!compare(&zeros, &honest, &t).unwrap().within);
        assert!(compare(&zeros[..3], &honest, &t).is_err());
    }
}
