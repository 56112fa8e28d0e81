//! Content hashes: every model version, chunk, dataset and result is named by its BLAKE3 hash.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DecodeError;

/// A 32-byte BLAKE3 digest, shown and serialized as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Hash of several fields, each length-prefixed so that field boundaries cannot shift.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Self(*hasher.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// First 8 hex digits, for logs and tables.
    pub fn short(&self) -> String {
        hex_encode(&self.0[..4])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

impl FromStr for Hash {
    type Err = DecodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(hex_decode_32(text)?))
    }
}

/// Bytes with their BLAKE3 hash, taken once where the bytes were read or made, so that the
/// rooms they pass through (a request's content digest, a chunk's name, a result's hash) never
/// hash them again.
#[derive(Debug, Clone)]
pub struct Hashed<T> {
    bytes: T,
    hash: Hash,
}

impl<T: AsRef<[u8]>> Hashed<T> {
    pub fn new(bytes: T) -> Self {
        let hash = Hash::of(bytes.as_ref());
        Self { bytes, hash }
    }

    pub fn as_slice(&self) -> &[u8] {
        self.bytes.as_ref()
    }
}

impl<T> Hashed<T> {
    /// For this crate's one-pass hashers only (see `crate::result_frame`).
    pub(crate) fn from_parts(bytes: T, hash: Hash) -> Self {
        Self { bytes, hash }
    }

    pub fn hash(&self) -> Hash {
        self.hash
    }

    pub fn into_bytes(self) -> T {
        self.bytes
    }

    /// The same bytes in another container (a `Vec<u8>` into a shared buffer, say).
    pub fn map_into<U: From<T>>(self) -> Hashed<U> {
        Hashed {
            bytes: self.bytes.into(),
            hash: self.hash,
        }
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

/// Decodes exactly 64 hex digits into 32 bytes.
pub fn hex_decode_32(text: &str) -> Result<[u8; 32], DecodeError> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return Err(DecodeError::Hex(format!(
            "expected 64 hex digits, got {}",
            bytes.len()
        )));
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Result<u8, DecodeError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(DecodeError::Hex(format!(
            "'{}' is not a hex digit",
            digit as char
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hex_round_trips(bytes in proptest::array::uniform32(any::<u8>())) {
            let hash = Hash(bytes);
            prop_assert_eq!(hash.to_hex().parse::<Hash>().ok(), Some(hash));
        }
    }

    #[test]
    fn part_boundaries_matter() {
        assert_ne!(
            Hash::of_parts(&[b"ab", b"c"]),
            Hash::of_parts(&[b"a", b"bc"])
        );
    }

    #[test]
    fn hashed_bytes_carry_their_hash() {
        let hashed = Hashed::new(vec![1u8, 2, 3]);
        assert_eq!(hashed.hash(), Hash::of(&[1, 2, 3]));
        assert_eq!(hashed.as_slice(), &[1, 2, 3]);
    }

    #[test]
    fn bad_hex_is_an_error() {
        assert!("zz".parse::<Hash>().is_err());
        assert!("g".repeat(64).parse::<Hash>().is_err());
    }
}
