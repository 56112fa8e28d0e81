//! A small seeded mutator for the short run: libFuzzer's kinds of edits (bit flips, interesting
//! values, truncation, deletion, insertion, duplication, splices, random bytes), without its
//! coverage feedback. Same seed, same inputs, on every machine.

/// Bytes that matter to the decoders: JSON and CSV punctuation, digits, signs, the bounds of
/// signed and unsigned bytes.
const INTERESTING_BYTES: &[u8] = b"\x00\x01\x7f\x80\xff\"{}[],:;=\n\r-+.e0129aAzZ\\ ";

/// Integers at the edges of what length and count fields hold.
const INTERESTING_WORDS: &[u64] = &[
    0,
    1,
    2,
    4,
    0x7f,
    0xff,
    1024,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX / 2,
    u64::MAX,
];

/// SplitMix64: tiny, fast and good enough to pick edits.
pub struct Mutator {
    state: u64,
}

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`0` when `bound` is 0).
    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next_u64() % bound as u64) as usize
        }
    }

    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// `input` after one to four random edits; `others` feed the splices.
    pub fn mutate(&mut self, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.below(4) {
            self.edit(&mut out, others);
        }
        out
    }

    fn edit(&mut self, out: &mut Vec<u8>, others: &[Vec<u8>]) {
        let len = out.len();
        match self.below(10) {
            0 if len > 0 => {
                let at = self.below(len);
                out[at] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let at = self.below(len);
                out[at] = INTERESTING_BYTES[self.below(INTERESTING_BYTES.len())];
            }
            2 => out.truncate(self.below(len + 1)),
            3 if len > 0 => {
                let start = self.below(len);
                let end = start + 1 + self.below((len - start).min(64));
                out.drain(start..end);
            }
            4 => {
                let at = self.below(len + 1);
                let count = 1 + self.below(16);
                let bytes = self.random_bytes(count);
                out.splice(at..at, bytes);
            }
            5 if len > 0 => {
                let start = self.below(len);
                let end = start + 1 + self.below((len - start).min(256));
                let copy = out[start..end].to_vec();
                let at = self.below(len + 1);
                out.splice(at..at, copy);
            }
            6 if !others.is_empty() => {
                let other = &others[self.below(others.len())];
                let cut = self.below(len + 1);
                let from = self.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            7 if len >= 8 => {
                let word = INTERESTING_WORDS[self.below(INTERESTING_WORDS.len())];
                let width = [1, 2, 4, 8][self.below(4)];
                let at = self.below(len - width + 1);
                out[at..at + width].copy_from_slice(&word.to_le_bytes()[..width]);
            }
            8 => {
                // A decimal number where a digit was: JSON and CSV numbers at their edges.
                if let Some(at) = (0..len)
                    .map(|_| self.below(len))
                    .find(|&at| out[at].is_ascii_digit())
                {
                    let word = INTERESTING_WORDS[self.below(INTERESTING_WORDS.len())];
                    out.splice(at..at + 1, word.to_string().into_bytes());
                }
            }
            _ => {
                let count = self.below(128);
                *out = self.random_bytes(count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutants() {
        let seed = b"{\"a\": [1, 2, 3]}".to_vec();
        let run = |rng_seed| {
            let mut mutator = Mutator::new(rng_seed);
            (0..100)
                .map(|_| mutator.mutate(&seed, std::slice::from_ref(&seed)))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).iter().any(|mutant| *mutant != seed));
    }
}
