//! Replay protection: each (signer, nonce) pair is accepted once while its signature is fresh.
//!
//! A signature is fresh while its `created` time is within the allowed clock skew; a nonce is
//! remembered until its signature could no longer be fresh, so memory stays bounded by the
//! request rate times twice the skew.

use std::collections::{BTreeMap, HashSet};

use corex_core::NodeId;
use corex_core::request_signature::VerifiedRequest;

use crate::error::CoordinatorError;

#[derive(Debug, Default)]
pub struct NonceCache {
    seen: HashSet<(NodeId, String)>,
    /// Forget-after time (unix s) → entries to forget then.
    expiry: BTreeMap<u64, Vec<(NodeId, String)>>,
}

impl NonceCache {
    /// Accepts a verified request once; refuses stale signatures and repeated nonces.
    pub fn admit(
        &mut self,
        request: &VerifiedRequest,
        now_s: u64,
        skew_s: u64,
    ) -> Result<(), CoordinatorError> {
        self.forget_before(now_s);
        if request.created.abs_diff(now_s) > skew_s {
            return Err(CoordinatorError::StaleSignature {
                created: request.created,
                skew_s,
            });
        }
        let key = (request.signer, request.nonce.clone());
        if !self.seen.insert(key.clone()) {
            return Err(CoordinatorError::ReplayedNonce {
                nonce: request.nonce.clone(),
            });
        }
        self.expiry
            .entry(request.created + skew_s + 1)
            .or_default()
            .push(key);
        Ok(())
    }

    fn forget_before(&mut self, now_s: u64) {
        let keep = self.expiry.split_off(&now_s);
        for key in std::mem::replace(&mut self.expiry, keep)
            .into_values()
            .flatten()
        {
            self.seen.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(nonce: &str, created: u64) -> VerifiedRequest {
        VerifiedRequest {
            signer: NodeId([1; 32]),
            created,
            nonce: nonce.into(),
        }
    }

    #[test]
    fn a_nonce_is_accepted_once() {
        let mut cache = NonceCache::default();
        assert!(cache.admit(&request("a", 1000), 1000, 300).is_ok());
        assert!(matches!(
            cache.admit(&request("a", 1000), 1001, 300),
            Err(CoordinatorError::ReplayedNonce { .. })
        ));
        assert!(cache.admit(&request("b", 1000), 1001, 300).is_ok());
    }

    #[test]
    fn stale_signatures_are_refused_and_old_nonces_forgotten() {
        let mut cache = NonceCache::default();
        assert!(matches!(
            cache.admit(&request("a", 1000), 2000, 300),
            Err(CoordinatorError::StaleSignature { .. })
        ));
        cache.admit(&request("x", 1000), 1000, 300).expect("fresh");
        cache.admit(&request("y", 1700), 1700, 300).expect("fresh");
        assert_eq!(cache.len(), 1);
    }
}
