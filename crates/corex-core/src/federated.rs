//! Federated jobs: the training data stays on the nodes that hold it. The spec names each
//! data holder and how many local samples it declares; fragments are local steps on the
//! holder's own data, and only updates (with a commitment to the data used) leave the node.
//! Optional differential privacy: per-example clipping and Gaussian noise in every local step.

use serde::{Deserialize, Serialize};

use crate::error::SpecError;
use crate::identity::NodeId;

/// Most data holders one federated job may name.
pub const MAX_HOLDERS: usize = 1024;

/// One node that holds part of a federated job's training data on its own disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataHolder {
    pub node: NodeId,
    /// Samples in the holder's local dataset (the only fact about its data the job states).
    pub samples: u32,
}

/// Differentially private local steps (DP-SGD): each step Poisson-samples the holder's data
/// with rate `local_batch / samples` using the node's secret randomness, clips every
/// per-example gradient to `clip_norm` (L2), sums them, adds Gaussian noise of standard
/// deviation `noise_multiplier × clip_norm` per coordinate, and divides by the expected batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrivacySpec {
    pub clip_norm: f64,
    pub noise_multiplier: f64,
    /// The δ at which the privacy accountant reports ε.
    pub delta: f64,
}

impl PrivacySpec {
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(self.clip_norm.is_finite() && self.clip_norm > 0.0) {
            return Err(SpecError::Invalid(format!(
                "privacy clip_norm {} must be positive",
                self.clip_norm
            )));
        }
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier > 0.0) {
            return Err(SpecError::Invalid(format!(
                "privacy noise_multiplier {} must be positive",
                self.noise_multiplier
            )));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(SpecError::Invalid(format!(
                "privacy delta {} is outside (0, 1)",
                self.delta
            )));
        }
        Ok(())
    }
}

/// Where a federated job's data lives and how each holder trains on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FederatedSpec {
    pub holders: Vec<DataHolder>,
    /// Samples per local step (the expected Poisson batch under differential privacy).
    pub local_batch: u32,
    #[serde(default)]
    pub privacy: Option<PrivacySpec>,
}

impl FederatedSpec {
    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |reason: String| Err(SpecError::Invalid(reason));
        if self.holders.is_empty() || self.holders.len() > MAX_HOLDERS {
            return invalid(format!(
                "a federated job names 1..={MAX_HOLDERS} data holders, not {}",
                self.holders.len()
            ));
        }
        let mut nodes: Vec<&NodeId> = self.holders.iter().map(|h| &h.node).collect();
        nodes.sort_unstable_by_key(|node| node.0);
        if nodes.windows(2).any(|pair| pair[0] == pair[1]) {
            return invalid("a data holder is named twice".into());
        }
        if self.local_batch == 0 {
            return invalid("local_batch must be at least 1".into());
        }
        if let Some(holder) = self.holders.iter().find(|h| h.samples < self.local_batch) {
            return invalid(format!(
                "holder {} declares {} samples, fewer than local_batch {}",
                holder.node.short(),
                holder.samples,
                self.local_batch
            ));
        }
        if let Some(privacy) = &self.privacy {
            privacy.validate()?;
        }
        Ok(())
    }

    pub fn holder(&self, node: &NodeId) -> Option<&DataHolder> {
        self.holders.iter().find(|holder| holder.node == *node)
    }
}
