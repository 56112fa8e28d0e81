//! How a job's quality reads for its family: held-out loss in nats and bits per byte and the
//! perplexity for a language model, accuracy for a classifier; and a short generated sample of
//! a trained language model.

use std::path::Path;

use corex_core::messages::RoundRecord;
use corex_core::{JobSpec, ModelSpec};

/// Bytes of text a summary generates.
const SAMPLE_BYTES: usize = 160;

/// The held-out quality: `val loss 1.62 nats (2.34 bits/byte, perplexity 5.1)` or
/// `test accuracy 91.20%`.
pub fn describe(model: &ModelSpec, loss: Option<f32>, accuracy: Option<f32>) -> String {
    match model {
        ModelSpec::Transformer(_) => loss.map_or("val loss -".into(), |loss| {
            let nats = f64::from(loss);
            format!(
                "val loss {nats:.3} nats ({:.3} bits/byte, perplexity {:.2})",
                nats / std::f64::consts::LN_2,
                nats.exp()
            )
        }),
        _ => accuracy.map_or("test accuracy -".into(), |accuracy| {
            format!("test accuracy {:.2}%", accuracy * 100.0)
        }),
    }
}

/// One line per evaluated round: the round, its training loss and the held-out quality.
pub fn evaluated_rounds(model: &ModelSpec, rounds: &[RoundRecord]) -> Vec<String> {
    rounds
        .iter()
        .filter(|record| record.test_loss.is_some() || record.test_accuracy.is_some())
        .map(|record| {
            format!(
                "round {:>6}  train loss {:.4}  {}",
                record.round + 1,
                record.train_loss,
                describe(model, record.test_loss, record.test_accuracy)
            )
        })
        .collect()
}

/// A seeded continuation of `prompt` by the language model saved at `weights`, as text (bytes
/// that are not UTF-8 shown as U+FFFD); `None` for other families.
pub fn generated_sample(weights: &Path, prompt: &str, seed: u64) -> anyhow::Result<Option<String>> {
    let (spec, params) = corex_ml::from_safetensors(&std::fs::read(weights)?)?;
    if !matches!(spec, ModelSpec::Transformer(_)) {
        return Ok(None);
    }
    let text = corex_ml::generate_text(&spec, &params, prompt.as_bytes(), SAMPLE_BYTES, 0.8, seed)?;
    Ok(Some(String::from_utf8_lossy(&text).into_owned()))
}

/// The bigram baseline of a language-model job on a built-in or packaged text, fitted here on
/// the job's training split (nats per held-out byte); `None` for other jobs.
pub fn bigram_baseline(spec: &JobSpec) -> Option<f64> {
    spec.model.window()?;
    let dataset = crate::bench_single::bench_dataset(spec).ok()?;
    let split = dataset.split_for(
        &spec.model,
        spec.dataset.test_fraction,
        spec.dataset.split_seed,
    );
    corex_ml::bigram_loss(&spec.model, &dataset, &split).ok()
}
