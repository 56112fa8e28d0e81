//! Capability challenges: a node is given a seeded matrix product to compute, commits to its
//! answer (the time to the commitment bounds its speed), then sends the answer, which is
//! checked against the commitment and by Freivalds' method. The check is linear in the
//! product's size and runs off the engine lock ([`ChallengeCheck`]): the engine only hands
//! the pending challenge out and records what it showed.

use corex_core::messages::{Capability, ChallengeIssued, ChallengeVector};
use corex_core::{Hash, NodeId};

use super::Coordinator;
use crate::error::CoordinatorError;

pub use corex_verify::CHALLENGE_SIZE;

#[derive(Debug, Clone)]
pub(super) struct PendingChallenge {
    seed: u64,
    n: usize,
    issued_ms: u64,
    /// The commitment, when it arrived, and the check vector's seed.
    committed: Option<(Hash, u64, u64)>,
}

/// A committed challenge taken out of the engine, to check an answer against.
#[derive(Debug, Clone)]
pub struct ChallengeCheck {
    seed: u64,
    n: usize,
    issued_ms: u64,
    commitment: Hash,
    committed_ms: u64,
    vector_seed: u64,
    claimed_gflops: Option<u64>,
}

impl ChallengeCheck {
    /// What `product` shows: the speed the commitment's timing proves when the product is
    /// right (0 otherwise), and whether the node's claimed speed is believed. Pure; heavy
    /// (the challenge matrices are generated again): run it off the lock.
    pub fn verify(&self, product: &[f32]) -> Capability {
        let (a, b) = corex_verify::challenge_matrices(self.seed, self.n);
        let vector = corex_verify::check_vector(self.vector_seed, self.n);
        let correct = corex_verify::commit_product(product) == self.commitment
            && corex_verify::freivalds(&a, &b, product, &vector, self.n).unwrap_or(false);
        let seconds = (self.committed_ms.saturating_sub(self.issued_ms)).max(1) as f64 / 1_000.0;
        let demonstrated_mflops = if correct {
            (corex_verify::demonstrated_gflops(self.n, seconds) * 1_000.0) as u64
        } else {
            0
        };
        let believed = correct
            && self
                .claimed_gflops
                .is_none_or(|claim| claim.saturating_mul(1_000) <= 4 * demonstrated_mflops);
        Capability {
            n: self.n as u32,
            demonstrated_mflops,
            claimed_gflops: self.claimed_gflops,
            believed,
        }
    }
}

impl Coordinator {
    /// Issues a capability challenge to `node` (`seed` comes from the OS at the edge).
    pub fn issue_challenge(
        &mut self,
        node: NodeId,
        seed: u64,
        now_ms: u64,
    ) -> Result<ChallengeIssued, CoordinatorError> {
        self.registered(&node, now_ms)?;
        self.challenges.insert(
            node,
            PendingChallenge {
                seed,
                n: CHALLENGE_SIZE,
                issued_ms: now_ms,
                committed: None,
            },
        );
        Ok(ChallengeIssued {
            seed,
            n: CHALLENGE_SIZE as u32,
        })
    }

    /// Takes the node's commitment; the time since the challenge bounds its speed.
    pub fn commit_challenge(
        &mut self,
        node: NodeId,
        commitment: Hash,
        vector_seed: u64,
        now_ms: u64,
    ) -> Result<ChallengeVector, CoordinatorError> {
        self.registered(&node, now_ms)?;
        let pending = self
            .challenges
            .get_mut(&node)
            .ok_or(CoordinatorError::NoChallenge)?;
        if pending.committed.is_some() {
            return Err(CoordinatorError::NoChallenge);
        }
        pending.committed = Some((commitment, now_ms, vector_seed));
        Ok(ChallengeVector { vector_seed })
    }

    /// Takes `node`'s committed challenge out, once, to check its answer against (a second
    /// answer finds none).
    pub fn take_challenge(
        &mut self,
        node: NodeId,
        now_ms: u64,
    ) -> Result<ChallengeCheck, CoordinatorError> {
        self.registered(&node, now_ms)?;
        let Some(PendingChallenge {
            seed,
            n,
            issued_ms,
            committed: Some((commitment, committed_ms, vector_seed)),
        }) = self.challenges.get(&node).cloned()
        else {
            return Err(CoordinatorError::NoChallenge);
        };
        self.challenges.remove(&node);
        Ok(ChallengeCheck {
            seed,
            n,
            issued_ms,
            commitment,
            committed_ms,
            vector_seed,
            claimed_gflops: self.node(&node).and_then(|info| info.device.claimed_gflops),
        })
    }

    /// Records what `node`'s answer showed (see [`ChallengeCheck::verify`]).
    pub fn record_capability(&mut self, node: &NodeId, capability: Capability) {
        if let Some(registered) = self.nodes.get_mut(node) {
            registered.info.capability = Some(capability);
        }
    }
}
