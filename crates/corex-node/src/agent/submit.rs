//! Sending a computed fragment's result, compressed with error feedback where the job asks
//! for it (see `feedback`), and answering an audit's reveal request.

use std::sync::Arc;

use corex_core::compression::{CompressionSpec, feedback_commitment};

use crate::feedback::compress_from;

use super::*;

/// A computed fragment, ready to send.
pub(super) struct Outcome {
    /// The result's values (shared with the blocking thread that compresses them).
    pub(super) values: Arc<Vec<f32>>,
    pub(super) report: ResultReport,
    pub(super) data_commitment: Option<LocalDataCommitment>,
    pub(super) trace: Option<StepTrace>,
}

impl NodeAgent {
    /// Signs and submits `outcome` for `fragment`; under a compression policy, sends the
    /// compressed update and moves this node's error feedback on once the coordinator took it.
    /// A broken feedback chain (the coordinator restarted) is sent again from zeros, once.
    pub(super) async fn submit(
        &mut self,
        fragment: &Fragment,
        compression: &CompressionSpec,
        outcome: Outcome,
    ) -> Result<(), NodeError> {
        let claim_empty = self.config.adversary == Some(Adversary::FalseFeedback);
        let mut restarted = false;
        loop {
            let compressed = match compression.is_none() {
                true => None,
                false => {
                    let before = self
                        .feedback
                        .starting_state(&fragment.job, outcome.values.len());
                    let (values, spec) = (outcome.values.clone(), *compression);
                    let compressed = tokio::task::spawn_blocking(move || {
                        corex_ml::lower_current_thread_priority();
                        compress_from(before, &values, &spec, claim_empty)
                    })
                    .await
                    .map_err(|error| NodeError::Compute(error.to_string()))??;
                    Some(compressed)
                }
            };
            let tensor = match &compressed {
                Some(update) => ResultTensor::from_bytes(update.bytes.clone()),
                None => ResultTensor::from_values(&outcome.values),
            };
            let result_hash = tensor.hash();
            let mut commitment =
                result_commitment(&self.key.id(), &fragment.id, &fragment.model, &result_hash);
            if let Some(trace) = &outcome.trace {
                commitment = traced_commitment(&commitment, trace);
            }
            if let Some(update) = &compressed {
                commitment = feedback_commitment(&commitment, &update.feedback);
            }
            let header = ResultHeader {
                fragment: fragment.id,
                model: fragment.model,
                loss: outcome.report.loss,
                samples: outcome.report.samples,
                compute_ms: outcome.report.compute_ms,
                result_hash,
                commitment_signature: self.key.sign(commitment.as_bytes()),
                data_commitment: outcome.data_commitment,
                trace: outcome.trace.clone(),
                feedback: compressed.as_ref().map(|update| update.feedback),
                state_paths: None,
                checkpoint_paths: None,
            };
            let submitted = Instant::now();
            let upload = match self.client.submit_result(&header, tensor).await {
                Ok(upload) => upload,
                Err(error) if !restarted && error.api_code() == Some("feedback_chain_broken") => {
                    tracing::info!(job = %fragment.job.short(), "the coordinator knows no feedback state of this node; starting again from zeros");
                    self.feedback.restart(&fragment.job);
                    restarted = true;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if let Some(update) = &compressed {
                self.feedback
                    .taken(fragment.job, fragment.round, fragment.id, update);
            }
            self.result_latency.record(submitted.elapsed());
            self.config.telemetry.result_submitted();
            self.fragments_done += 1;
            tracing::debug!(fragment = %fragment.id.short(), round = fragment.round, compute_ms = outcome.report.compute_ms, loss = outcome.report.loss, bytes = compression.encoded_len(outcome.values.len()), chunks = upload.chunks, retries = upload.retries, "result accepted");
            return Ok(());
        }
    }

    /// Sends what an audit asked of this node's result for `fragment` (the checkpoints at
    /// `asked.steps`, whole or at `asked.leaves` with their paths, then the leaves
    /// `asked.feedback` of its error-feedback states before and after it, with their paths) as
    /// a result for the fragment's reveal id; declines when they are no longer kept.
    pub(super) async fn reveal(
        &self,
        fragment: &Hash,
        model: &Hash,
        asked: Asked<'_>,
    ) -> Result<(), NodeError> {
        let Asked {
            steps,
            leaves,
            feedback,
        } = asked;
        let checkpoints = self.checkpoints.reveal(fragment, model, steps, leaves);
        let states = match feedback.is_empty() {
            false => self.feedback.reveal(fragment, feedback).map(Some),
            true => Some(None),
        };
        let (Some((mut tensor, checkpoint_paths)), Some(states)) = (checkpoints, states) else {
            self.client.decline_reveal(fragment).await?;
            tracing::info!(fragment = %fragment.short(), ?steps, ?feedback, "checkpoints or feedback states no longer kept; reveal declined");
            return Ok(());
        };
        let state_paths = states.map(|(bytes, paths)| {
            tensor.extend_from_slice(&bytes);
            paths
        });
        let reveal = Fragment::derive_reveal_id(fragment);
        let tensor = ResultTensor::from_bytes(tensor);
        let report = ResultReport {
            loss: 0.0,
            samples: 0,
            compute_ms: 0,
        };
        let header = ResultHeader {
            state_paths,
            checkpoint_paths,
            ..ResultHeader::signed(&self.key, reveal, *model, tensor.hash(), report)
        };
        self.client.submit_result(&header, tensor).await?;
        tracing::debug!(fragment = %fragment.short(), ?steps, leaves = leaves.len(), ?feedback, "checkpoints revealed");
        Ok(())
    }
}

/// What a reveal request asks for (see `LeaseResponse::Reveal`).
pub(super) struct Asked<'a> {
    pub(super) steps: &'a [u32],
    pub(super) leaves: &'a [u32],
    pub(super) feedback: &'a [u32],
}
