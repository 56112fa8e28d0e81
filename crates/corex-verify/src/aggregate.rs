//! Aggregation, a job policy (`corex_core::AggregationSpec`): how the round's accepted
//! gradients become one update. Every rule is deterministic (fixed order, f64 accumulation):
//!
//! - `Mean`: the sample-weighted mean, exact, no protection (the one `corex_ml::weighted_mean`
//!   and so single-process training use);
//! - `ContributorMean`: per coordinate, the sample-weighted mean over the parts whose value
//!   there is nonzero (0 where none is): a compressed update's unsent values are zeros, not
//!   votes for zero;
//! - `TrimmedMean { trim }`: per coordinate, drop the `trim` lowest and highest fraction and
//!   average the rest;
//! - `Median`: per coordinate, the median;
//! - `CenteredClipping { radius, iterations }`: start from the coordinate-wise median and move
//!   by the mean of each update's difference from it, each clipped to norm `radius` × the
//!   median difference norm, `iterations` times.
//!
//! The robust rules bound what one bad contribution can do to the update.

use corex_core::AggregationSpec;

use crate::compare::norm;
use crate::error::VerifyError;

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

/// Aggregates `(gradient, samples)` parts under `rule` (the sample counts weigh the mean).
pub fn aggregate(
    rule: &AggregationSpec,
    weighted: &[(&[f32], u32)],
) -> Result<Vec<f32>, VerifyError> {
    rule.validate()
        .map_err(|error| VerifyError::Parameter(error.to_string()))?;
    let gradients: Vec<&[f32]> = weighted.iter().map(|(gradient, _)| *gradient).collect();
    let parts = gradients.as_slice();
    let len = check(parts)?;
    match *rule {
        AggregationSpec::Mean => {
            let total: f64 = weighted.iter().map(|(_, w)| f64::from(*w)).sum();
            if total == 0.0 {
                return Err(VerifyError::Parameter("weights sum to zero".into()));
            }
            let mut sum = vec![0.0f64; len];
            for (part, weight) in weighted {
                let weight = f64::from(*weight);
                for (acc, value) in sum.iter_mut().zip(part.iter()) {
                    *acc += weight * f64::from(*value);
                }
            }
            Ok(sum.into_iter().map(|acc| (acc / total) as f32).collect())
        }
        AggregationSpec::ContributorMean => {
            if weighted.iter().all(|(_, weight)| *weight == 0) {
                return Err(VerifyError::Parameter("weights sum to zero".into()));
            }
            let mut sum = vec![0.0f64; len];
            let mut weight_sum = vec![0.0f64; len];
            for (part, weight) in weighted {
                let weight = f64::from(*weight);
                for ((acc, total), value) in sum.iter_mut().zip(&mut weight_sum).zip(part.iter()) {
                    if *value != 0.0 {
                        *acc += weight * f64::from(*value);
                        *total += weight;
                    }
                }
            }
            Ok(sum
                .into_iter()
                .zip(weight_sum)
                .map(|(acc, total)| match total > 0.0 {
                    true => (acc / total) as f32,
                    false => 0.0,
                })
                .collect())
        }
        AggregationSpec::TrimmedMean { trim } => {
            let drop = (parts.len() as f64 * trim).floor() as usize;
            Ok(per_coordinate(parts, len, |column| {
                let kept = &column[drop..column.len() - drop];
                (kept.iter().map(|v| f64::from(*v)).sum::<f64>() / kept.len() as f64) as f32
            }))
        }
        AggregationSpec::Median => Ok(per_coordinate(parts, len, median_of_sorted)),
        AggregationSpec::CenteredClipping { radius, iterations } => {
            let mut centre: Vec<f64> = per_coordinate(parts, len, median_of_sorted)
                .into_iter()
                .map(f64::from)
                .collect();
            for _ in 0..iterations {
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
    fn the_contributor_mean_averages_only_the_values_sent() {
        // Three sparse updates: coordinate 0 sent by all, 1 by one node (weight 2), 2 by two,
        // 3 by none.
        let a = [3.0, 0.0, 1.0, 0.0];
        let b = [6.0, 4.0, 0.0, 0.0];
        let c = [9.0, 0.0, 4.0, 0.0];
        let parts: Vec<(&[f32], u32)> = vec![(&a, 1), (&b, 2), (&c, 1)];
        let mean = aggregate(&AggregationSpec::ContributorMean, &parts).unwrap();
        assert_eq!(mean, vec![6.0, 4.0, 2.5, 0.0]);
        // Dense parts: exactly the mean.
        let dense = honest(5);
        let refs: Vec<(&[f32], u32)> = dense.iter().map(|p| (p.as_slice(), 3)).collect();
        assert_eq!(
            aggregate(&AggregationSpec::ContributorMean, &refs).unwrap(),
            aggregate(&AggregationSpec::Mean, &refs).unwrap()
        );
        assert!(aggregate(&AggregationSpec::ContributorMean, &[(&a[..], 0)]).is_err());
    }

    #[test]
    fn robust_rules_resist_one_huge_outlier_and_the_mean_does_not() {
        let mut parts = honest(7);
        parts.push(vec![1e6; 50]);
        let refs: Vec<(&[f32], u32)> = parts.iter().map(|p| (p.as_slice(), 1)).collect();
        let mean = aggregate(&AggregationSpec::Mean, &refs).unwrap();
        assert!(mean[0] > 1e4);
        for rule in [
            AggregationSpec::TrimmedMean { trim: 0.2 },
            AggregationSpec::Median,
            AggregationSpec::CenteredClipping {
                radius: 2.0,
                iterations: 3,
            },
        ] {
            let robust = aggregate(&rule, &refs).unwrap();
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
        let refs = vec![(part.as_slice(), 3); 5];
        for rule in [
            AggregationSpec::Mean,
            AggregationSpec::TrimmedMean { trim: 0.2 },
            AggregationSpec::Median,
            AggregationSpec::CenteredClipping {
                radius: 1.0,
                iterations: 2,
            },
        ] {
            let out = aggregate(&rule, &refs).unwrap();
            for (a, b) in out.iter().zip(&part) {
                assert!((a - b).abs() < 1e-6, "{rule:?}");
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let a = [1.0f32, 2.0];
        let b = [1.0f32];
        assert!(aggregate(&AggregationSpec::Median, &[(&a, 1), (&b, 1)]).is_err());
        assert!(aggregate(&AggregationSpec::Median, &[]).is_err());
        assert!(aggregate(&AggregationSpec::TrimmedMean { trim: 0.5 }, &[(&a, 1)]).is_err());
        assert!(aggregate(&AggregationSpec::Mean, &[(&a, 0)]).is_err());
    }
}
