//! Result intake: a fragment result or an audit replay is checked completely (lease, model
//! version, sample count, hash, signed commitment, shape, finiteness, a federated result's
//! data commitment) before anything is recorded; on any error nothing has changed.

use corex_core::compression::feedback_commitment;
use corex_core::trace::{segment_bounds, traced_commitment};

use super::*;

/// What taking a result did.
pub struct Submitted {
    pub progress: Progress,
    /// A fragment result's timing, for the behaviour analysis.
    pub timing: Option<FragmentTiming>,
    /// An accepted fragment result, to keep on disk before the node hears it was taken.
    pub kept: Option<KeptResult>,
}

impl Submitted {
    fn only(progress: Progress) -> Self {
        Self {
            progress,
            timing: None,
            kept: None,
        }
    }
}

impl JobRun {
    /// Checks a result completely, then records it; on any error nothing has changed.
    pub fn submit(
        &mut self,
        node: NodeId,
        header: &ResultHeader,
        tensor: SignedTensor,
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Result<Submitted, CoordinatorError> {
        if let Some(task) = self.reveal_task(&header.fragment) {
            let progress = self.submit_reveal(task, node, header, tensor, now_ms, engine)?;
            return Ok(Submitted::only(progress));
        }
        if header.state_paths.is_some() {
            return Err(CoordinatorError::WrongShape(
                "only a reveal carries feedback-state paths".into(),
            ));
        }
        if let Some(task) = self.audit_task(&header.fragment) {
            let progress = self.submit_audit(task, node, header, tensor, now_ms, engine)?;
            return Ok(Submitted::only(progress));
        }
        let (index, mut accepted) = self.check_result(node, header, tensor)?;
        let round = self
            .round
            .as_mut()
            .ok_or(CoordinatorError::FragmentClosed(header.fragment))?;
        if round.auditing.is_some() {
            return Err(CoordinatorError::FragmentClosed(header.fragment));
        }
        let leased_since = round.leases.leased_since(index as u32, &node);
        round.leases.complete(index as u32, node)?;
        accepted.elapsed_ms = now_ms.saturating_sub(leased_since.unwrap_or(now_ms));
        let timing = FragmentTiming {
            cost_flops: round.fragments[index].cost_flops,
            elapsed_ms: accepted.elapsed_ms,
        };
        tracing::debug!(
            round = round.fragments[index].round,
            index,
            node = %node.short(),
            samples = header.samples,
            leased_at_ms = leased_since.unwrap_or(now_ms).saturating_sub(round.opened_ms),
            elapsed_ms = accepted.elapsed_ms,
            "result accepted"
        );
        if let Some(data) = &accepted.data_commitment {
            self.shards.entry(node).or_insert(data.shard);
        }
        if let (Some(chains), Some(sent)) = (self.feedback.as_mut(), &accepted.compressed) {
            chains.advance(node, &sent.feedback);
        }
        round.results[index] = Some(accepted);
        let complete = round.leases.is_complete();
        let kept = self.kept_result(index);
        let progress = match complete {
            true => self.begin_audits(now_ms, engine)?,
            false => Progress::Accepted,
        };
        Ok(Submitted {
            progress,
            timing: Some(timing),
            kept,
        })
    }

    pub(super) fn check_result(
        &self,
        node: NodeId,
        header: &ResultHeader,
        tensor: SignedTensor,
    ) -> Result<(usize, Accepted), CoordinatorError> {
        if self.closed_fragments.contains(&header.fragment) {
            return Err(CoordinatorError::FragmentClosed(header.fragment));
        }
        let index = self
            .fragment_index(&header.fragment)
            .ok_or(CoordinatorError::UnknownFragment(header.fragment))?;
        let round = self
            .round
            .as_ref()
            .ok_or(CoordinatorError::FragmentClosed(header.fragment))?;
        round.leases.check_submission(index as u32, &node)?;
        let fragment = &round.fragments[index];
        if fragment.holder.is_some() {
            let data = header
                .data_commitment
                .ok_or(CoordinatorError::MissingDataCommitment)?;
            if let Some(&shard) = self.shards.get(&node)
                && shard != data.shard
            {
                return Err(CoordinatorError::ShardChanged {
                    committed: shard,
                    got: data.shard,
                });
            }
        }
        let (values, commitment, compressed) = self.result_values(&node, header, tensor)?;
        let gradient = self.check_tensor_result(fragment, header, values)?;
        Ok((
            index,
            Accepted {
                node,
                gradient: Arc::new(gradient),
                compressed,
                loss: header.loss,
                samples: header.samples,
                commitment,
                result_hash: header.result_hash,
                elapsed_ms: 0,
                data_commitment: header.data_commitment,
                trace: header.trace.clone(),
            },
        ))
    }

    /// The checks every result and audit replay passes besides its signed tensor's (see
    /// [`SignedTensor::verify`], which the shell ran): the fragment the sender signed for,
    /// model version, sample count, a step trace's shape and loss, shape (the parameter count for training, `samples × width` for
    /// output work) and finiteness.
    pub(super) fn check_tensor_result(
        &self,
        fragment: &Fragment,
        header: &ResultHeader,
        gradient: Vec<f32>,
    ) -> Result<Vec<f32>, CoordinatorError> {
        // The sender signed the header's fragment id: it must be this one's.
        if header.fragment != fragment.id {
            return Err(CoordinatorError::UnknownFragment(header.fragment));
        }
        // A segment audit task starts from a revealed checkpoint instead of the version.
        if header.model != fragment.model {
            return Err(CoordinatorError::StaleModel {
                got: header.model,
                current: fragment.model,
            });
        }
        let expected = fragment.indices.len() as u32;
        if header.samples != expected {
            return Err(CoordinatorError::WrongSampleCount {
                expected,
                got: header.samples,
            });
        }
        if let Some(trace) = &header.trace {
            if fragment.steps.is_some() {
                return Err(CoordinatorError::BadTrace(
                    "a segment audit's replay carries no trace".into(),
                ));
            }
            self.check_trace(fragment, header, trace)?;
        }
        corex_ml::check_result(
            &self.spec.work,
            &self.spec.model,
            fragment.indices.len(),
            &gradient,
        )
        .map_err(|error| match error {
            corex_ml::MlError::NonFinite { index } => CoordinatorError::NonFinite { index },
            corex_ml::MlError::ParameterCount { expected, got } => CoordinatorError::WrongShape(
                format!("gradient has {got} values, the model has {expected} parameters"),
            ),
            corex_ml::MlError::OutputLength {
                expected,
                got,
                samples,
            } => CoordinatorError::WrongShape(format!(
                "result has {got} values, {samples} samples of {:?} work need {expected}",
                self.spec.work.fragment_kind()
            )),
            other => CoordinatorError::WrongShape(other.to_string()),
        })?;
        if !header.loss.is_finite() {
            return Err(CoordinatorError::NonFiniteLoss(header.loss));
        }
        Ok(gradient)
    }

    /// A step trace must be one this work and fragment size call for (a checkpoint per
    /// interior segment boundary, a finite loss per step) and agree with the reported loss.
    fn check_trace(
        &self,
        fragment: &Fragment,
        header: &ResultHeader,
        trace: &StepTrace,
    ) -> Result<(), CoordinatorError> {
        let WorkSpec::LocalSteps { steps, .. } = &self.spec.work else {
            return Err(CoordinatorError::BadTrace(
                "only local-steps results carry a step trace".into(),
            ));
        };
        let bounds = segment_bounds(
            &self.spec.work,
            &self.spec.compression,
            fragment.indices.len(),
        )
        .ok_or_else(|| {
            CoordinatorError::BadTrace(
                "this job's fragments of this size are not traced (see corex_core::trace)".into(),
            )
        })?;
        if trace.checkpoints.len() + 2 != bounds.len() || trace.losses.len() != *steps as usize {
            return Err(CoordinatorError::BadTrace(format!(
                "{} checkpoints and {} losses; this fragment's trace has {} and {steps}",
                trace.checkpoints.len(),
                trace.losses.len(),
                bounds.len() - 2
            )));
        }
        if let Some(step) = trace.losses.iter().position(|loss| !loss.is_finite()) {
            return Err(CoordinatorError::BadTrace(format!(
                "the loss of step {step} is not finite"
            )));
        }
        if trace.mean_loss().to_bits() != header.loss.to_bits() {
            return Err(CoordinatorError::BadTrace(format!(
                "reported loss {} is not the mean {} of the step losses",
                header.loss,
                trace.mean_loss()
            )));
        }
        Ok(())
    }
}

/// A result's tensor as its sender signed it, checked: its bytes hash to the header's
/// `result_hash`, the node signed the commitment over node, the header's fragment, model and
/// that hash (bound to the header's step trace and feedback states when it has them), and
/// they decode as f32 (a compressed result's bytes are decoded at intake, under its job's
/// policy).
#[derive(Debug, Clone)]
pub struct SignedTensor {
    /// The f32 values (empty for a compressed tensor).
    pub values: Vec<f32>,
    /// A compressed result's bytes, decoded under its job's policy at intake.
    pub compressed: Option<Vec<u8>>,
    pub commitment: Hash,
}

impl SignedTensor {
    /// Checks `tensor` against `header` for `node`. Pure and linear in the tensor's size (a
    /// hash comparison, a signature, a decode): the shell runs it before it takes the engine
    /// lock.
    pub fn verify(
        node: NodeId,
        header: &ResultHeader,
        tensor: &Hashed<&[u8]>,
    ) -> Result<Self, CoordinatorError> {
        if tensor.hash() != header.result_hash {
            return Err(CoordinatorError::ResultHashMismatch);
        }
        let mut commitment =
            result_commitment(&node, &header.fragment, &header.model, &header.result_hash);
        if let Some(trace) = &header.trace {
            commitment = traced_commitment(&commitment, trace);
        }
        if let Some(feedback) = &header.feedback {
            commitment = feedback_commitment(&commitment, feedback);
        }
        node.verify(commitment.as_bytes(), &header.commitment_signature)
            .map_err(|_| CoordinatorError::BadCommitment)?;
        if header.feedback.is_some() {
            return Ok(Self {
                values: Vec::new(),
                compressed: Some(tensor.as_slice().to_vec()),
                commitment,
            });
        }
        let values = bytes_to_f32s(tensor.as_slice())
            .map_err(|error| CoordinatorError::WrongShape(error.to_string()))?;
        Ok(Self {
            values,
            compressed: None,
            commitment,
        })
    }
}
