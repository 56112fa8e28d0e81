//! Text generation from a trained byte-level language model: each next byte is drawn from the
//! softmax of the model's logits at temperature `temperature` (0: always the most likely
//! byte), with a ChaCha8 stream seeded by `seed`, so the same weights, prompt and seed give
//! the same text on every machine.

use burn::tensor::{Device, Int, Tensor, TensorData};
use corex_core::ModelSpec;
use corex_core::model::BYTE_VOCABULARY;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::MlError;
use crate::model::{BatchInput, Network, read_floats};
use crate::params::{check_spec, check_tensor};

/// Most bytes one call generates.
pub const MAX_GENERATED_BYTES: usize = 4096;

/// `length` bytes continuing `prompt` (the prompt itself not included). The model reads at most
/// its last `context` bytes; an empty prompt starts from a newline.
pub fn generate_text(
    spec: &ModelSpec,
    params: &[f32],
    prompt: &[u8],
    length: usize,
    temperature: f64,
    seed: u64,
) -> Result<Vec<u8>, MlError> {
    check_spec(spec)?;
    check_tensor(spec, params)?;
    let ModelSpec::Transformer(lm) = spec else {
        return Err(MlError::Spec(format!(
            "text generation needs a transformer, not an {}",
            spec.family()
        )));
    };
    if length > MAX_GENERATED_BYTES {
        return Err(MlError::Spec(format!(
            "at most {MAX_GENERATED_BYTES} bytes per generation, not {length}"
        )));
    }
    if !(temperature.is_finite() && (0.0..=10.0).contains(&temperature)) {
        return Err(MlError::Spec(format!(
            "temperature {temperature} is outside [0, 10]"
        )));
    }
    let device = Device::flex();
    let model = Network::from_flat(spec, params, &device)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut text: Vec<u8> = if prompt.is_empty() {
        vec![b'\n']
    } else {
        prompt.to_vec()
    };
    let start = text.len();
    for _ in 0..length {
        let window = &text[text.len().saturating_sub(lm.context)..];
        let tokens: Vec<i64> = window.iter().map(|&byte| i64::from(byte)).collect();
        let input =
            Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, window.len()]), &device);
        let logits = read_floats(model.forward(BatchInput::Tokens(input))?)?;
        let last = logits
            .get(logits.len().saturating_sub(BYTE_VOCABULARY)..)
            .filter(|row| row.len() == BYTE_VOCABULARY)
            .ok_or_else(|| MlError::Shape("no logits for the last position".into()))?;
        text.push(sample(last, temperature, rng.next_u64()));
    }
    Ok(text.split_off(start))
}

/// Draws a byte from `softmax(logits / temperature)` with the 53 high bits of `draw`
/// (the arg max at temperature 0; ties to the lower byte).
fn sample(logits: &[f32], temperature: f64, draw: u64) -> u8 {
    let (best, max) = logits.iter().enumerate().fold(
        (0usize, f64::NEG_INFINITY),
        |(best, max), (byte, &value)| {
            if f64::from(value) > max {
                (byte, f64::from(value))
            } else {
                (best, max)
            }
        },
    );
    if temperature == 0.0 {
        return best as u8;
    }
    let weights: Vec<f64> = logits
        .iter()
        .map(|&value| ((f64::from(value) - max) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut target = (draw >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * total;
    for (byte, weight) in weights.iter().enumerate() {
        if target < *weight {
            return byte as u8;
        }
        target -= weight;
    }
    best as u8
}
