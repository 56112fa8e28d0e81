//! The virtual nodes: a key, a speed, a behaviour, and the real computation of what they are
//! leased (burn, through `corex_ml::run_fragment`), signed as a node agent signs it.
//!
//! Honest nodes compute every fragment and audit task as given. A liar returns every result of
//! its own scaled by 1.01 (caught by its probation audits, so its lies never reach the model).
//! A lying auditor is honest with its own fragments and returns audit tasks scaled by 0.98
//! (the coordinator arbitrates the disagreement and keeps the honest result). The two lie
//! differently on purpose: a lying auditor that replays a liar's fragment into the liar's
//! very bytes is a colluding pair, which an audit by one proven node cannot tell from two
//! honest ones (seed 18 of the first version of this simulation found exactly that).

use corex_coordinator::job_run::SignedTensor;
use corex_core::hash::Hashed;
use corex_core::messages::{ResultHeader, ResultReport};
use corex_core::tensor::f32s_to_bytes;
use corex_core::{Fragment, Hash, JobSpec, Keypair, NodeId};
use corex_ml::Dataset;

/// How a virtual node behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Every result of its own is wrong.
    Liar,
    /// Honest with its own fragments, wrong in every audit task it takes.
    LyingAuditor,
}

/// What a virtual node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Doing {
    /// Waiting for the answer to its registration.
    Registering,
    /// Waiting for a lease answer, or for a wake-up to ask again.
    Asking,
    /// Waiting for new work (long poll) until woken or its retry time.
    Waiting,
    /// Computing, or waiting for the answer to a result.
    Working,
    /// Crashed; back at a set time.
    Down,
    /// Banned by the coordinator: it stops.
    Stopped,
}

pub(super) struct SimNode {
    pub key: Keypair,
    pub id: NodeId,
    pub behaviour: Behaviour,
    /// Speed in MFLOP/s: how long a fragment takes, in virtual time.
    pub mflops: u64,
    pub doing: Doing,
    /// Raised whenever the node's plans change: a scheduled wake-up of an older generation
    /// is stale.
    pub generation: u64,
}

/// A computed result, as it travels to the coordinator.
pub(super) struct Computed {
    pub header: ResultHeader,
    pub tensor: Vec<u8>,
}

impl SimNode {
    pub(super) fn new(key: Keypair, behaviour: Behaviour, mflops: u64) -> Self {
        Self {
            id: key.id(),
            key,
            behaviour,
            mflops,
            doing: Doing::Registering,
            generation: 0,
        }
    }

    /// Virtual milliseconds `fragment` takes this node.
    pub(super) fn compute_ms(&self, fragment: &Fragment) -> u64 {
        (fragment.cost_flops / 1_000)
            .div_ceil(self.mflops.max(1))
            .max(1)
    }

    /// Computes `fragment` of `spec` at `parameters` as this node would, and signs it.
    pub(super) fn compute(
        &self,
        spec: &JobSpec,
        parameters: &[f32],
        dataset: &Dataset,
        fragment: &Fragment,
    ) -> Result<Computed, corex_ml::MlError> {
        let output = corex_ml::run_fragment(
            &corex_ml::Backend::cpu(),
            &spec.work,
            &spec.model,
            parameters,
            dataset,
            &fragment.indices,
        )?;
        let mut values = output.values;
        if self.lies_about(fragment) {
            let factor = match self.behaviour {
                Behaviour::LyingAuditor => 0.98,
                _ => 1.01,
            };
            values.iter_mut().for_each(|value| *value *= factor);
        }
        let tensor = f32s_to_bytes(&values);
        let report = ResultReport {
            loss: output.loss,
            samples: output.samples,
            compute_ms: self.compute_ms(fragment),
        };
        let header = ResultHeader::signed(
            &self.key,
            fragment.id,
            fragment.model,
            Hash::of(&tensor),
            report,
        );
        Ok(Computed { header, tensor })
    }

    pub(super) fn lies_about(&self, fragment: &Fragment) -> bool {
        let audit_task = fragment.id
            == Fragment::derive_audit_id(&Fragment::derive_id(
                &fragment.job,
                fragment.round,
                fragment.index,
            ));
        match self.behaviour {
            Behaviour::Honest => false,
            Behaviour::Liar => !audit_task,
            Behaviour::LyingAuditor => audit_task,
        }
    }
}

/// What the coordinator's edge checks before the core sees a result: its tensor against its
/// header's hash, and the commitment's signature.
pub(super) fn checked_at_edge(
    node: NodeId,
    computed: &Computed,
) -> Result<SignedTensor, corex_coordinator::CoordinatorError> {
    SignedTensor::verify(
        node,
        &computed.header,
        &Hashed::new(computed.tensor.as_slice()),
    )
}
