//! Generated datasets for tests and benchmarks that must not depend on an installed package:
//! a word-salad English text and small images of three stripe patterns. Deterministic in their
//! seed (ChaCha8), so every machine generates the same bytes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dataset::{Dataset, ImageShape};
use crate::error::MlError;

const WORDS: [&str; 24] = [
    "the",
    "node",
    "trains",
    "a",
    "model",
    "on",
    "data",
    "and",
    "sends",
    "its",
    "gradient",
    "to",
    "coordinator",
    "which",
    "checks",
    "every",
    "result",
    "by",
    "replay",
    "before",
    "it",
    "pays",
    "for",
    "work",
];

impl Dataset {
    /// About `bytes` bytes of sentences drawn from a small vocabulary (lower-case words,
    /// spaces, full stops and newlines): text with structure a small model can learn.
    pub fn synthetic_text(bytes: usize, seed: u64) -> Result<Self, MlError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut text = Vec::with_capacity(bytes + 16);
        while text.len() < bytes {
            let words = rng.random_range(3..9);
            for word in 0..words {
                if word > 0 {
                    text.push(b' ');
                }
                text.extend_from_slice(WORDS[rng.random_range(0..WORDS.len())].as_bytes());
            }
            text.extend_from_slice(if rng.random_bool(0.2) { b".\n" } else { b". " });
        }
        text.truncate(bytes.max(2));
        Self::from_text(text)
    }

    /// `count` grey `side × side` images in three classes (horizontal stripes, vertical
    /// stripes, a centred square) with seeded noise; no held-out part.
    pub fn synthetic_images(count: usize, side: usize, seed: u64) -> Result<Self, MlError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pixels = Vec::with_capacity(count * side * side);
        let mut labels = Vec::with_capacity(count);
        for _ in 0..count {
            let label = rng.random_range(0..3u32);
            for row in 0..side {
                for column in 0..side {
                    let lit = match label {
                        0 => row % 2 == 0,
                        1 => column % 2 == 0,
                        _ => {
                            (side / 4..side - side / 4).contains(&row)
                                && (side / 4..side - side / 4).contains(&column)
                        }
                    };
                    let base: u8 = if lit { 200 } else { 40 };
                    pixels.push(base.saturating_add(rng.random_range(0..50)));
                }
            }
            labels.push(label);
        }
        let shape = ImageShape {
            channels: 1,
            height: side,
            width: side,
        };
        Self::from_images(pixels, shape, labels, 3, 0)
    }
}
