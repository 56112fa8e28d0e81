//! Accepted results kept on disk: a fragment result the coordinator acknowledged is stored
//! before the node hears so, and a job restored after a crash takes its open round's kept
//! results back, so no acknowledged work is computed twice.
//!
//! What is kept is what intake accepted (every check already passed): the node, the tensor,
//! and what the round's close reads beside it. A kept result goes back into its round as it
//! was taken; the round then goes on as if the coordinator had never stopped.

use corex_core::compression::FeedbackCommitment;
use serde::{Deserialize, Serialize};

use super::*;

/// An accepted result as it is kept, but its tensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptMeta {
    /// The fragment the result is for (checked against the restored round's).
    pub fragment: Hash,
    pub node: NodeId,
    pub loss: f32,
    pub samples: u32,
    pub commitment: Hash,
    pub result_hash: Hash,
    pub elapsed_ms: u64,
    pub data_commitment: Option<LocalDataCommitment>,
    pub trace: Option<StepTrace>,
    /// A compressed result's feedback states: its kept tensor is then the bytes it was sent as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<FeedbackCommitment>,
}

/// An accepted result of fragment `index` of round `round` of `job`, to keep.
#[derive(Debug, Clone)]
pub struct KeptResult {
    pub job: Hash,
    pub round: u32,
    pub index: u32,
    pub meta: KeptMeta,
    pub tensor: Arc<Vec<f32>>,
    /// A compressed result's bytes, kept instead of `tensor`.
    pub sent: Option<Arc<Vec<u8>>>,
}

impl KeptResult {
    /// The stored form: the metadata's JSON length (u32 LE), the JSON, the tensor's bytes (a
    /// compressed result's bytes as sent).
    pub fn encode(&self) -> Result<Vec<u8>, CoordinatorError> {
        let meta = serde_json::to_vec(&self.meta)
            .map_err(|error| CoordinatorError::Storage(error.to_string()))?;
        let length = u32::try_from(meta.len()).map_err(|_| {
            CoordinatorError::Storage("a kept result's metadata is too long".into())
        })?;
        let mut bytes = length.to_le_bytes().to_vec();
        bytes.extend_from_slice(&meta);
        match &self.sent {
            Some(sent) => bytes.extend_from_slice(sent),
            None => bytes.extend_from_slice(&f32s_to_bytes(&self.tensor)),
        }
        Ok(bytes)
    }

    /// Reads back what [`encode`](Self::encode) wrote: the metadata and the tensor's bytes.
    pub fn decode(bytes: &[u8]) -> Result<(KeptMeta, Vec<u8>), CoordinatorError> {
        let torn = || CoordinatorError::Storage("a kept result is torn".into());
        let (length, rest) = bytes.split_first_chunk::<4>().ok_or_else(torn)?;
        let length = u32::from_le_bytes(*length) as usize;
        if rest.len() < length {
            return Err(torn());
        }
        let (meta, tensor) = rest.split_at(length);
        let meta = serde_json::from_slice(meta).map_err(|_| torn())?;
        Ok((meta, tensor.to_vec()))
    }
}

impl JobRun {
    /// What to keep of the result just accepted for fragment `index` of the open round.
    pub(super) fn kept_result(&self, index: usize) -> Option<KeptResult> {
        let round = self.round.as_ref()?;
        let accepted = round.results.get(index)?.as_ref()?;
        Some(KeptResult {
            job: self.id,
            round: self.completed_rounds,
            index: index as u32,
            meta: KeptMeta {
                fragment: round.fragments.get(index)?.id,
                node: accepted.node,
                loss: accepted.loss,
                samples: accepted.samples,
                commitment: accepted.commitment,
                result_hash: accepted.result_hash,
                elapsed_ms: accepted.elapsed_ms,
                data_commitment: accepted.data_commitment,
                trace: accepted.trace.clone(),
                feedback: accepted.compressed.as_ref().map(|sent| sent.feedback),
            },
            tensor: accepted.gradient.clone(),
            sent: accepted.compressed.as_ref().map(|sent| sent.bytes.clone()),
        })
    }

    /// Puts the kept results of the open round back (those of another round, or for a
    /// fragment already in, are left out); a round they complete goes to its audits.
    pub fn restore_results(
        &mut self,
        kept: Vec<(u32, KeptMeta, Vec<u8>)>,
        now_ms: u64,
        engine: Engine<'_>,
    ) -> Result<Progress, CoordinatorError> {
        let Some(round) = self.round.as_mut() else {
            return Ok(Progress::Accepted);
        };
        if round.auditing.is_some() {
            return Ok(Progress::Accepted);
        }
        let torn = || CoordinatorError::Storage("a kept result's tensor does not decode".into());
        for (index, meta, bytes) in kept {
            let slot = index as usize;
            let fits = round
                .fragments
                .get(slot)
                .is_some_and(|fragment| fragment.id == meta.fragment);
            if !fits || round.results.get(slot).is_none_or(Option::is_some) {
                continue;
            }
            let (tensor, compressed) = match meta.feedback {
                None => (bytes_to_f32s(&bytes).map_err(|_| torn())?, None),
                Some(feedback) => {
                    let tensor = decode_sent(&self.spec, &bytes).map_err(|_| torn())?;
                    let bytes = Arc::new(bytes);
                    (tensor, Some(SentCompressed { bytes, feedback }))
                }
            };
            round.leases.restore_done(index, meta.node);
            if let Some(data) = &meta.data_commitment {
                self.shards.entry(meta.node).or_insert(data.shard);
            }
            if let (Some(chains), Some(sent)) = (self.feedback.as_mut(), &compressed) {
                chains.advance(meta.node, &sent.feedback);
            }
            round.results[slot] = Some(Accepted {
                node: meta.node,
                gradient: Arc::new(tensor),
                compressed,
                loss: meta.loss,
                samples: meta.samples,
                commitment: meta.commitment,
                result_hash: meta.result_hash,
                elapsed_ms: meta.elapsed_ms,
                data_commitment: meta.data_commitment,
                trace: meta.trace,
            });
        }
        if !round.leases.is_complete() {
            return Ok(Progress::Accepted);
        }
        self.begin_audits(now_ms, engine)
    }
}
