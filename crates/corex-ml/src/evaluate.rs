//! Evaluation of a model on a set of samples: mean cross-entropy and accuracy, from the
//! logits of a forward pass ([`predict`]), scored on the host in `f64`.

use corex_core::ModelSpec;

use crate::dataset::Dataset;
use crate::error::MlError;
use crate::inference::predict;

/// Quality of a model on a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy (natural log).
    pub loss: f32,
    /// Fraction of samples whose highest logit is the true class (ties go to the lower class).
    pub accuracy: f32,
    pub samples: u32,
}

/// Evaluates the model `params` on the samples `indices` of `data`. Log-softmax and argmax are
/// computed on the host in `f64` from burn's logits, so the result is deterministic.
pub fn evaluate(
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
) -> Result<Evaluation, MlError> {
    let logits = predict(spec, params, data, indices)?;
    let labels: Vec<u32> = indices
        .iter()
        .map(|&index| data.label_of(index as usize))
        .collect();
    score_predictions(&logits, &labels, spec.classes)
}

/// Scores logits (`labels.len() × classes`, row-major) against the true labels: mean
/// cross-entropy and the accuracy of the highest logit, accumulated in `f64` in row order.
pub fn score_predictions(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
) -> Result<Evaluation, MlError> {
    if labels.is_empty() {
        return Err(MlError::Empty("no predictions to score".into()));
    }
    let samples = u32::try_from(labels.len())
        .map_err(|_| MlError::Shape(format!("{} labels do not fit u32", labels.len())))?;
    if classes == 0 || logits.len() != labels.len().saturating_mul(classes) {
        return Err(MlError::Shape(format!(
            "{} logits for {} samples × {classes} classes",
            logits.len(),
            labels.len()
        )));
    }
    if let Some(&label) = labels.iter().find(|&&label| label as usize >= classes) {
        return Err(MlError::Dataset(format!(
            "label {label} is not below the class count {classes}"
        )));
    }
    let mut loss_sum = 0.0f64;
    let mut correct = 0u64;
    for (row, &label) in logits.chunks(classes).zip(labels) {
        let (best, max) =
            row.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |(best, max), (class, &value)| {
                    if f64::from(value) > max {
                        (class, f64::from(value))
                    } else {
                        (best, max)
                    }
                });
        let log_sum_exp = max
            + row
                .iter()
                .map(|&v| (f64::from(v) - max).exp())
                .sum::<f64>()
                .ln();
        loss_sum += log_sum_exp - f64::from(row[label as usize]);
        if best == label as usize {
            correct += 1;
        }
    }
    let n = f64::from(samples);
    Ok(Evaluation {
        loss: (loss_sum / n) as f32,
        accuracy: (correct as f64 / n) as f32,
        samples,
    })
}
