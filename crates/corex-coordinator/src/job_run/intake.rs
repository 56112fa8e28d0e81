//! Result intake: a fragment result or an audit replay is checked completely (lease, model
//! version, sample count, hash, signed commitment, shape, finiteness, a federated result's
//! data commitment) before anything is recorded; on any error nothing has changed.

use super::*;

impl JobRun {
    /// Checks a result completely, then records it; on any error nothing has changed.
    pub fn submit(
        &mut self,
        node: NodeId,
        header: &ResultHeader,
        tensor_bytes: &[u8],
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Result<(Progress, Option<FragmentTiming>), CoordinatorError> {
        if let Some(task) = self.audit_task(&header.fragment) {
            let progress = self.submit_audit(task, node, header, tensor_bytes, now_ms, engine)?;
            return Ok((progress, None));
        }
        let (index, mut accepted) = self.check_result(node, header, tensor_bytes)?;
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
        if let Some(data) = &accepted.data_commitment {
            self.shards.entry(node).or_insert(data.shard);
        }
        round.results[index] = Some(accepted);
        if !round.leases.is_complete() {
            return Ok((Progress::Accepted, Some(timing)));
        }
        Ok((self.begin_audits(now_ms, engine)?, Some(timing)))
    }

    pub(super) fn check_result(
        &self,
        node: NodeId,
        header: &ResultHeader,
        tensor_bytes: &[u8],
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
        let (gradient, commitment) =
            self.check_tensor_result(node, fragment, header, tensor_bytes)?;
        Ok((
            index,
            Accepted {
                node,
                gradient,
                loss: header.loss,
                samples: header.samples,
                commitment,
                result_hash: header.result_hash,
                elapsed_ms: 0,
                data_commitment: header.data_commitment,
            },
        ))
    }

    /// The checks every result and audit replay passes: model version, sample count, the
    /// tensor's hash and the signed commitment over `fragment`'s id, shape (the parameter
    /// count for training, `samples × width` for output work) and finiteness.
    pub(super) fn check_tensor_result(
        &self,
        node: NodeId,
        fragment: &Fragment,
        header: &ResultHeader,
        tensor_bytes: &[u8],
    ) -> Result<(Vec<f32>, Hash), CoordinatorError> {
        if header.model != self.model {
            return Err(CoordinatorError::StaleModel {
                got: header.model,
                current: self.model,
            });
        }
        let expected = fragment.indices.len() as u32;
        if header.samples != expected {
            return Err(CoordinatorError::WrongSampleCount {
                expected,
                got: header.samples,
            });
        }
        if Hash::of(tensor_bytes) != header.result_hash {
            return Err(CoordinatorError::ResultHashMismatch);
        }
        let commitment = result_commitment(&node, &fragment.id, &header.model, &header.result_hash);
        node.verify(commitment.as_bytes(), &header.commitment_signature)
            .map_err(|_| CoordinatorError::BadCommitment)?;
        let gradient = bytes_to_f32s(tensor_bytes)
            .map_err(|error| CoordinatorError::WrongShape(error.to_string()))?;
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
        Ok((gradient, commitment))
    }
}
