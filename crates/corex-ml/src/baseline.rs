//! The bigram baseline of a language-model job: next-byte probabilities from the byte-pair
//! counts of the training text (add-½ smoothing), scored on exactly the held-out bytes the
//! model's evaluation scores. What a model must beat to have learned more than pair counts.

use corex_core::ModelSpec;

use crate::dataset::{Dataset, Split};
use crate::error::MlError;

/// Mean cross-entropy in nats of the bigram model fitted on the bytes under `split.train`'s
/// windows, over every byte the evaluation of `split.test` predicts.
pub fn bigram_loss(spec: &ModelSpec, data: &Dataset, split: &Split) -> Result<f64, MlError> {
    let (Some(window), Some(bytes)) = (spec.window(), data.text()) else {
        return Err(MlError::Spec(
            "the bigram baseline needs a language model on a text".into(),
        ));
    };
    data.check_indices_within(&split.train, window)?;
    data.check_indices_within(&split.test, window)?;
    // The training windows cover one contiguous span of bytes.
    let first = split.train.iter().min().copied().unwrap_or(0) as usize;
    let last = split.train.iter().max().copied().unwrap_or(0) as usize + window;
    let mut counts = vec![0u32; 256 * 256];
    let mut totals = vec![0u32; 256];
    for pair in bytes[first..last].windows(2) {
        counts[usize::from(pair[0]) * 256 + usize::from(pair[1])] += 1;
        totals[usize::from(pair[0])] += 1;
    }
    let (mut loss, mut scored) = (0.0f64, 0u64);
    for &start in &split.test {
        for pair in bytes[start as usize..start as usize + window].windows(2) {
            let count = f64::from(counts[usize::from(pair[0]) * 256 + usize::from(pair[1])]);
            let total = f64::from(totals[usize::from(pair[0])]);
            loss -= ((count + 0.5) / (total + 128.0)).ln();
            scored += 1;
        }
    }
    Ok(loss / scored.max(1) as f64)
}
