//! Identities and signatures: every node, job owner and coordinator is an ed25519 key.
//!
//! Key generation needs randomness, so it lives at the edge (`corex-net`); this room only
//! turns secret bytes into keys, signs and verifies.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DecodeError;
use crate::hash::{hex_decode_32, hex_encode};

/// A node's (or any signer's) public identity: its ed25519 verifying key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    pub fn short(&self) -> String {
        hex_encode(&self.0[..4])
    }

    /// This key as an ed25519 verifying key, refused when it is not a curve point or is a
    /// weak (small-order) one: under a weak key, signatures can be made without any secret
    /// (the identity point accepts `01 00…00` for every message).
    pub fn verifying_key(&self) -> Result<ed25519_dalek::VerifyingKey, DecodeError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|_| DecodeError::Key("not a valid ed25519 public key".into()))?;
        if key.is_weak() {
            return Err(DecodeError::Key(
                "a small-order ed25519 key, for which anyone can sign".into(),
            ));
        }
        Ok(key)
    }

    /// Checks `signature` over `message` under this key, strictly: weak keys and signatures
    /// with a small-order or non-canonical commitment are refused (RFC 8032 leaves room for
    /// both; accepting them lets some signatures be made or altered without the secret key).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), DecodeError> {
        let key = self.verifying_key()?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &signature)
            .map_err(|_| DecodeError::BadSignature)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = DecodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(hex_decode_32(text)?))
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A 64-byte ed25519 signature, serialized as base64.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Result<Self, DecodeError> {
        let bytes = BASE64
            .decode(text)
            .map_err(|error| DecodeError::Base64(error.to_string()))?;
        let array: [u8; 64] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            DecodeError::Key(format!("signature has {} bytes, expected 64", bytes.len()))
        })?;
        Ok(Self(array))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex_encode(&self.0[..4]))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::from_base64(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// A secret signing key. Its bytes never leave the owner's key file.
#[derive(Clone)]
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
}

impl Keypair {
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            signing: ed25519_dalek::SigningKey::from_bytes(&secret),
        }
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn id(&self) -> NodeId {
        NodeId(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.id().short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_forgeries_do_not() {
        let alice = Keypair::from_secret([1; 32]);
        let mallory = Keypair::from_secret([2; 32]);
        let signature = alice.sign(b"message");
        assert!(alice.id().verify(b"message", &signature).is_ok());
        assert!(alice.id().verify(b"other", &signature).is_err());
        assert!(
            alice
                .id()
                .verify(b"message", &mallory.sign(b"message"))
                .is_err()
        );
    }

    #[test]
    fn nobody_signs_as_a_small_order_key() {
        // The identity point: the signature (R = identity, s = 0) verifies for every message
        // under the lenient RFC 8032 check.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let weak = NodeId(identity);
        assert!(weak.verify(b"any message", &Signature(forged)).is_err());
        assert!(weak.verifying_key().is_err());
    }

    #[test]
    fn encodings_round_trip() {
        let key = Keypair::from_secret([7; 32]);
        let signature = key.sign(b"x");
        assert_eq!(
            Signature::from_base64(&signature.to_base64()).ok(),
            Some(signature)
        );
        assert_eq!(key.id().to_hex().parse::<NodeId>().ok(), Some(key.id()));
        assert!(Signature::from_base64("AAAA").is_err());
    }
}
