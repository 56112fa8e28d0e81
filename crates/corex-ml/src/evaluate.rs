//! Evaluation of a model on a set of samples: mean cross-entropy and accuracy, forward only
//! (plain flex device, no autodiff), in fixed-size batches so large test sets stay cheap.

use burn::tensor::Device;
use corex_core::ModelSpec;

use crate::dataset::Dataset;
use crate::error::MlError;
use crate::model::{Mlp, batch_tensors, read_floats};
use crate::params::check_inputs;

/// Samples per forward pass.
const EVAL_BATCH: usize = 1024;

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
    check_inputs(spec, params, data, indices)?;
    let samples = u32::try_from(indices.len())
        .map_err(|_| MlError::Shape(format!("{} indices do not fit u32", indices.len())))?;
    let device = Device::flex();
    let model = Mlp::from_flat(spec, params, &device);
    let classes = spec.classes;
    let mut loss_sum = 0.0f64;
    let mut correct = 0u64;
    for chunk in indices.chunks(EVAL_BATCH) {
        let (features, labels) = data.gather(chunk);
        let (x, _) = batch_tensors(features, &labels, spec.input, &device);
        let logits = read_floats(model.forward(x))?;
        if logits.len() != chunk.len() * classes {
            return Err(MlError::Shape(format!(
                "forward returned {} logits for {} samples × {classes} classes",
                logits.len(),
                chunk.len()
            )));
        }
        for (row, &label) in logits.chunks(classes).zip(&labels) {
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
            loss_sum += log_sum_exp - f64::from(row[label as usize]);
            if best == label as usize {
                correct += 1;
            }
        }
    }
    let n = f64::from(samples);
    Ok(Evaluation {
        loss: (loss_sum / n) as f32,
        accuracy: (correct as f64 / n) as f32,
        samples,
    })
}
