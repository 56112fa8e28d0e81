//! Robust aggregation, a job policy: how the round's accepted gradients become one update.
//! Every rule is deterministic (fixed order, f64 accumulation) and bounds what one bad
//! contribution can do to the mean.

use serde::{Deserialize, Serialize};

use crate::compare::norm;
use crate::error::VerifyError;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Aggregation {
    /// Sample-weighted mean: exact, no protection.
    Mean,
    /// Per coordinate, drop the `trim` lowest and highest fraction, average the rest.
    TrimmedMean { trim: f64 },
    /// Per coordinate, the median.
    Median,
    /// Start from the coordinate-wise median and move by the mean of each update's difference
    /// from it, each clipped to norm `radius` (× the median difference norm), `iterations` times.
    CenteredClipping { radius: f64, iterations: u32 },
}

fn check(parts: &[&[f32]]) -> Result<usize, VerifyError> {
    let first = parts.first().ok_or(VerifyError::Empty)?;
    let len = first.len();
    for (index, part) in parts.iter().enumerate() {
        if part.len() != len {
            return Err(VerifyError::Shape {
                index,
                expected: len,
                got: part.len(),
            });
        }
    }
    Ok(len)
}

/// Aggregates `parts` (with sample `weights`, used by `Mean`) under `rule`.
pub fn aggregate(
    rule: &Aggregation,
    parts: &[&[f32]],
    weights: &[u32],
) -> Result<Vec<f32>, VerifyError> {
    let len = check(parts)?;
    if weights.len() != parts.len() {
        return Err(VerifyError::Parameter("one weight per part".into()));
    }
    match *rule {
        Aggregation::Mean => {
            let total: f64 = weights.iter().map(|w| f64::from(*w)).sum();
            if total == 0.0 {
                return Err(VerifyError::Parameter("weights sum to zero".into()));
            }
            let mut sum = vec![0.0f64; len];
            for (part, weight) in parts.iter().zip(weights) {
                let weight = f64::from(*weight);
                for (acc, value) in sum.iter_mut().zip(part.iter()) {
                    *acc += weight * f64::from(*value);
                }
            }
            Ok(sum.into_iter().map(|acc| (acc / total) as f32).collect())
        }
        Aggregation::TrimmedMean { trim } => {
            if !(0.0..0.5).contains(&trim) {
                return Err(VerifyError::Parameter(format!(
                    "trim {trim} must be in [0, 0.5)"
                )));
            }
            let drop = (parts.len() as f64 * trim).floor() as usize;
            Ok(per_coordinate(parts, len, |column| {
                let kept = &column[drop..column.len() - drop];
                (kept.iter().map(|v| f64::from(*v)).sum::<f64>() / kept.len() as f64) as f32
            }))
        }
        Aggregation::Median => Ok(per_coordinate(parts, len, median_of_sorted)),
        Aggregation::CenteredClipping { radius, iterations } => {
            if radius <= 0.0 || !radius.is_finite() {
                return Err(VerifyError::Parameter("radius must be positive".into()));
            }
            let mut centre: Vec<f64> = per_coordinate(parts, len, median_of_sorted)
                .into_iter()
                .map(f64::from)
                .collect();
            for _ in 0..iterations.max(1) {
                let distances: Vec<f64> = parts
                    .iter()
                    .map(|part| {
                        part.iter()
                            .zip(&centre)
                            .map(|(v, c)| (f64::from(*v) - c).powi(2))
                            .sum::<f64>()
                            .sqrt()
                    })
                    .collect();
                let mut sorted = distances.clone();
                sorted.sort_by(f64::total_cmp);
                let tau = radius * sorted[sorted.len() / 2].max(f64::MIN_POSITIVE);
                let mut step = vec![0.0f64; len];
                for (part, distance) in parts.iter().zip(&distances) {
                    let scale = if *distance > tau { tau / distance } else { 1.0 };
                    for ((acc, v), c) in step.iter_mut().zip(part.iter()).zip(&centre) {
                        *acc += scale * (f64::from(*v) - c);
                    }
                }
                for (c, s) in centre.iter_mut().zip(step) {
                    *c += s / parts.len() as f64;
                }
            }
            Ok(centre.into_iter().map(|c| c as f32).collect())
        }
    }
}

/// Applies `reduce` to each coordinate's values, sorted ascending (total order). Rounds have
/// a handful of parts, so each column is sorted by insertion in a reused buffer: this runs
/// once per parameter per round and must stay cheap.
fn per_coordinate(parts: &[&[f32]], len: usize, reduce: impl Fn(&[f32]) -> f32) -> Vec<f32> {
    let mut column = vec![0.0f32; parts.len()];
    (0..len)
        .map(|i| {
            for (filled, part) in parts.iter().enumerate() {
                let value = part[i];
                let mut at = filled;
                while at > 0 && column[at - 1].total_cmp(&value).is_gt() {
                    column[at] = column[at - 1];
                    at -= 1;
                }
                column[at] = value;
            }
            reduce(&column)
        })
        .collect()
}

fn median_of_sorted(sorted: &[f32]) -> f32 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        ((f64::from(sorted[n / 2 - 1]) + f64::from(sorted[n / 2])) / 2.0) as f32
    }
}

/// The coordinate-wise median: the robust centre of a round's gradients.
pub(crate) fn robust_centre(parts: &[&[f32]]) -> Result<Vec<f32>, VerifyError> {
    let len = check(parts)?;
    Ok(per_coordinate(parts, len, median_of_sorted))
}

/// Norm of each part, for cohort statistics.
pub(crate) fn norms(parts: &[&[f32]]) -> Vec<f64> {
    parts.iter().map(|part| norm(part)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn honest(n: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|k| {
                (0..50)
                    .map(|i| 1.0 + 0.01 * ((i * 7 + k * 3) % 11) as f32)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn robust_rules_resist_one_huge_outlier_and_the_mean_does_not() {
        let mut parts = honest(7);
        parts.push(vec![1e6; 50]);
        let refs: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
        let weights = vec![1; refs.len()];
        let mean = aggregate(&Aggregation::Mean, &refs, &weights).unwrap();
        assert!(mean[0] > 1e4);
        for rule in [
            Aggregation::TrimmedMean { trim: 0.2 },
            Aggregation::Median,
            Aggregation::CenteredClipping {
                radius: 2.0,
                iterations: 3,
            },
        ] {
            let robust = aggregate(&rule, &refs, &weights).unwrap();
            assert!(
                robust.iter().all(|v| (0.9..1.2).contains(v)),
                "{rule:?}: {:?}",
                &robust[..3]
            );
        }
    }

    #[test]
    fn on_identical_inputs_every_rule_returns_them() {
        let part: Vec<f32> = (0..20).map(|i| i as f32 * 0.5 - 3.0).collect();
        let refs = vec![part.as_slice(); 5];
        for rule in [
            Aggregation::Mean,
            Aggregation::TrimmedMean { trim: 0.2 },
            Aggregation::Median,
            Aggregation::CenteredClipping {
                radius: 1.0,
                iterations: 2,
            },
        ] {
            let out = aggregate(&rule, &refs, &[3; 5]).unwrap();
            for (a, b) in out.iter().zip(&part) {
                assert!((a - b).abs() < 1e-6, "{rule:?}");
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let a = [1.0f32, 2.0];
        let b = [1.0f32];
        assert!(aggregate(&Aggregation::Median, &[&a, &b], &[1, 1]).is_err());
        assert!(aggregate(&Aggregation::Median, &[], &[]).is_err());
        assert!(aggregate(&Aggregation::TrimmedMean { trim: 0.5 }, &[&a], &[1]).is_err());
        assert!(aggregate(&Aggregation::Mean, &[&a], &[0]).is_err());
    }
}
