//! Fragments: the smallest unit of work a node leases, computes and is paid for.

use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::identity::NodeId;

/// What a fragment asks a node to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FragmentKind {
    /// The gradient of the mean loss over the fragment's samples at model version `model`.
    Gradient,
    /// The pseudo-gradient `w_start − w_end` of the job's local optimizer steps over the
    /// fragment's samples (see [`WorkSpec::LocalSteps`](crate::WorkSpec::LocalSteps)).
    LocalSteps,
    /// The logits of model version `model` for each of the fragment's samples (see
    /// [`WorkSpec::Inference`](crate::WorkSpec::Inference)).
    Inference,
    /// The job's transform of each of the fragment's samples (see
    /// [`WorkSpec::Transform`](crate::WorkSpec::Transform)).
    Transform,
}

impl FragmentKind {
    /// The kind's name in snake case, as it is serialized (a metric's label, a page's text).
    pub fn name(self) -> &'static str {
        match self {
            Self::Gradient => "gradient",
            Self::LocalSteps => "local_steps",
            Self::Inference => "inference",
            Self::Transform => "transform",
        }
    }
}

/// A leased unit of work. Everything a node needs to compute it, and nothing it could choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    pub id: Hash,
    pub job: Hash,
    pub round: u32,
    /// Position of this fragment within its round; fixes the aggregation order.
    pub index: u32,
    /// Hash of the model version `w_round` the work must start from.
    pub model: Hash,
    pub kind: FragmentKind,
    /// Sample indices, recomputable from the job spec by anyone.
    pub indices: Vec<u32>,
    /// Cost in FLOPs derived by the coordinator from the spec, never from a node's claim.
    pub cost_flops: u64,
    /// In a federated job, the data holder whose local data the fragment trains on: only it
    /// may lease the fragment, and `indices` are positions in its local dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<NodeId>,
    /// A segment audit task (see [`crate::trace`]): only local steps `[first, end)` of the
    /// fragment, from `model`, which is then the submitter's checkpoint before step `first`.
    /// The result is that segment's update `w_first − w_end` and its steps' mean loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<[u32; 2]>,
}

impl Fragment {
    pub fn derive_id(job: &Hash, round: u32, index: u32) -> Hash {
        Hash::of_parts(&[
            b"corex-fragment",
            job.as_bytes(),
            &round.to_le_bytes(),
            &index.to_le_bytes(),
        ])
    }

    /// The id of the audit task that replays fragment `fragment` on another node: distinct
    /// from the fragment's, so the auditor's commitment and result cannot be confused with
    /// (or replayed as) the audited node's.
    pub fn derive_audit_id(fragment: &Hash) -> Hash {
        Hash::of_parts(&[b"corex-audit", fragment.as_bytes()])
    }

    /// The id under which a node reveals the checkpoints an audit asked of its traced result
    /// for fragment `fragment` (see [`crate::trace`]): distinct from the fragment's and its
    /// audit task's, so a reveal can never pass for a result.
    pub fn derive_reveal_id(fragment: &Hash) -> Hash {
        Hash::of_parts(&[b"corex-reveal", fragment.as_bytes()])
    }
}

/// The commitment a node signs for a result: `H(node ‖ fragment ‖ H(w_r) ‖ H(result))`.
pub fn result_commitment(node: &NodeId, fragment: &Hash, model: &Hash, result: &Hash) -> Hash {
    Hash::of_parts(&[
        b"corex-result",
        &node.0,
        fragment.as_bytes(),
        model.as_bytes(),
        result.as_bytes(),
    ])
}
