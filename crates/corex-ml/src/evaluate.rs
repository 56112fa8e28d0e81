//! Evaluation of a model on a set of samples: mean cross-entropy and accuracy, from the
//! logits of a forward pass, scored on the host in `f64`. For a language model every position
//! of every window is scored (a validation loss per byte, in nats).

use burn::tensor::Device;
use corex_core::ModelSpec;

use crate::dataset::Dataset;
use crate::error::MlError;
use crate::inference::{chunk_samples, forward_rows};
use crate::model::{Network, host_targets};
use crate::params::check_inputs;

/// Quality of a model on a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy (natural log): per sample, or per predicted byte.
    pub loss: f32,
    /// Fraction of rows whose highest logit is the true class (ties go to the lower class).
    pub accuracy: f32,
    /// Rows scored: samples, or predicted bytes for a language model.
    pub samples: u32,
}

impl Evaluation {
    /// `exp(loss)`: the perplexity of a language model (per byte).
    pub fn perplexity(&self) -> f64 {
        f64::from(self.loss).exp()
    }

    /// The loss in bits per byte (for a language model).
    pub fn bits_per_byte(&self) -> f64 {
        f64::from(self.loss) / std::f64::consts::LN_2
    }
}

/// Running sums of a score.
#[derive(Default)]
struct Tally {
    loss: f64,
    correct: u64,
    rows: u64,
}

impl Tally {
    fn add(&mut self, logits: &[f32], labels: &[u32], classes: usize) -> Result<(), MlError> {
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
        for (row, &label) in logits.chunks(classes).zip(labels) {
            let (best, max) = row.iter().enumerate().fold(
                (0, f64::NEG_INFINITY),
                |(best, max), (class, &value)| {
                    if f64::from(value) > max {
                        (class, f64::from(value))
                    } else {
                        (best, max)
                    }
                },
            );
            let log_sum_exp = max
                + row
                    .iter()
                    .map(|&v| (f64::from(v) - max).exp())
                    .sum::<f64>()
                    .ln();
            self.loss += log_sum_exp - f64::from(row[label as usize]);
            self.correct += u64::from(best == label as usize);
        }
        self.rows += labels.len() as u64;
        Ok(())
    }

    fn finish(self) -> Result<Evaluation, MlError> {
        if self.rows == 0 {
            return Err(MlError::Empty("no predictions to score".into()));
        }
        let samples = u32::try_from(self.rows)
            .map_err(|_| MlError::Shape(format!("{} rows do not fit u32", self.rows)))?;
        let n = self.rows as f64;
        Ok(Evaluation {
            loss: (self.loss / n) as f32,
            accuracy: (self.correct as f64 / n) as f32,
            samples,
        })
    }
}

/// Evaluates the model `params` on the samples `indices` of `data`. Log-softmax and argmax are
/// computed on the host in `f64` from burn's logits, so the result is deterministic.
pub fn evaluate(
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
) -> Result<Evaluation, MlError> {
    check_inputs(spec, params, data, indices)?;
    let device = Device::flex();
    let model = Network::from_flat(spec, params, &device)?;
    let mut tally = Tally::default();
    for chunk in indices.chunks(chunk_samples(spec)) {
        let logits = forward_rows(spec, &model, data, chunk, &device)?;
        tally.add(&logits, &host_targets(spec, data, chunk), spec.classes())?;
    }
    tally.finish()
}

/// Scores logits (`labels.len() × classes`, row-major) against the true labels: mean
/// cross-entropy and the accuracy of the highest logit, accumulated in `f64` in row order.
pub fn score_predictions(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
) -> Result<Evaluation, MlError> {
    let mut tally = Tally::default();
    tally.add(logits, labels, classes)?;
    tally.finish()
}
