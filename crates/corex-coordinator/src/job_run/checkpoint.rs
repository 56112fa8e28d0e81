//! A job's durable form: what a [`JobRun`] keeps from one round's close to the next, taken
//! when the job starts, after every close and when it ends, and restored when a coordinator
//! opens its data directory again.
//!
//! A checkpoint is the job's state at a round boundary: its spec and data's name, the rounds
//! done, the open round's fragments (so the restored round is cut exactly as before, whatever
//! the nodes' speeds are now), history, credits, and the model with its optimizer's state
//! ([`SavedProgression`], as named byte strings beside the checkpoint). A job restored from
//! it takes the same steps as one that never stopped: the same fragments, the same results
//! from honest nodes, aggregation in fragment order, the same optimizer state.

use corex_ml::TrainerState;
use serde::{Deserialize, Serialize};

use super::*;

/// Everything of a job that outlives a restart, but its tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobCheckpoint {
    pub id: Hash,
    pub owner: NodeId,
    /// The submission sequence the id was made with: jobs are restored in this order.
    pub sequence: u64,
    pub spec: JobSpec,
    pub dataset_hash: Hash,
    pub standardization: Option<Standardization>,
    pub completed_rounds: u32,
    /// Hash of the current model version's parameter bytes.
    pub model: Hash,
    /// The fragments of the round open when the checkpoint was taken (none once it ended).
    pub open_fragments: Vec<Fragment>,
    pub shards: BTreeMap<NodeId, Hash>,
    pub declined: BTreeSet<NodeId>,
    /// The round records from position `history_from` of the job's history on: those not
    /// known stored yet (stored apart, one entry per round, so a close costs the same at round
    /// 10 and at round 10,000); on restore, the whole history.
    #[serde(skip)]
    pub history: Vec<RoundRecord>,
    #[serde(skip)]
    pub history_from: usize,
    pub contributions: BTreeMap<NodeId, NodeContribution>,
    pub reissued: u64,
    pub state: JobState,
    pub weights: Option<Hash>,
    pub outputs: Option<JobOutputs>,
    /// Milliseconds the job had run (to its end, once it ended).
    pub ran_ms: u64,
    /// The file beside the job's report that holds its progression (a running job's), and
    /// the hash of its bytes.
    #[serde(default)]
    pub progression_file: Option<(String, Hash)>,
}

/// What a running job's rounds move forward, as bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum SavedProgression {
    /// The optimizer's state and, with compressed downloads, the published version.
    Training {
        state: TrainerState,
        published: Option<Vec<f32>>,
    },
    Outputs {
        parameters: Vec<f32>,
        width: usize,
        values: Vec<f32>,
        indices: Vec<u32>,
    },
}

const PARAMETERS: &str = "parameters";
const PARAM_IDS: &str = "param_ids";
const OPTIMIZER: &str = "optimizer";
const PUBLISHED: &str = "published";
const OUTPUT_VALUES: &str = "output_values";
const OUTPUT_INDICES: &str = "output_indices";

fn u32s_to_bytes(values: &[u32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

fn u64s_to_bytes(values: &[u64]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

fn bytes_to<const N: usize, T>(bytes: &[u8], from: fn([u8; N]) -> T) -> Option<Vec<T>> {
    let chunks = bytes.chunks_exact(N);
    if !chunks.remainder().is_empty() {
        return None;
    }
    Some(
        chunks
            .map(|chunk| from(chunk.try_into().unwrap_or([0; N])))
            .collect(),
    )
}

impl SavedProgression {
    /// The stored form: for each named tensor, the name's length (u16 LE), the name, the
    /// bytes' length (u64 LE), the bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (name, tensor) in self.to_tensors() {
            bytes.extend_from_slice(&(name.len() as u16).to_le_bytes());
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(&(tensor.len() as u64).to_le_bytes());
            bytes.extend_from_slice(&tensor);
        }
        bytes
    }

    /// Reads back what [`to_bytes`](Self::to_bytes) wrote for a job of `spec`.
    pub fn from_bytes(spec: &JobSpec, mut bytes: &[u8]) -> Result<Self, CoordinatorError> {
        let torn = || CoordinatorError::Storage("a job's stored progression is torn".into());
        let mut tensors = BTreeMap::new();
        while !bytes.is_empty() {
            let (length, rest) = bytes.split_first_chunk::<2>().ok_or_else(torn)?;
            let length = usize::from(u16::from_le_bytes(*length));
            let (name, rest) = rest.split_at_checked(length).ok_or_else(torn)?;
            let name = std::str::from_utf8(name).map_err(|_| torn())?;
            let (length, rest) = rest.split_first_chunk::<8>().ok_or_else(torn)?;
            let length = usize::try_from(u64::from_le_bytes(*length)).map_err(|_| torn())?;
            let (tensor, rest) = rest.split_at_checked(length).ok_or_else(torn)?;
            tensors.insert(name.to_owned(), tensor.to_vec());
            bytes = rest;
        }
        Self::from_tensors(spec, tensors)
    }

    /// The named byte strings it is stored as.
    fn to_tensors(&self) -> Vec<(&'static str, Vec<u8>)> {
        match self {
            Self::Training { state, published } => {
                let mut tensors = vec![
                    (PARAMETERS, f32s_to_bytes(&state.parameters)),
                    (PARAM_IDS, u64s_to_bytes(&state.param_ids)),
                    (OPTIMIZER, state.optimizer.clone()),
                ];
                if let Some(published) = published {
                    tensors.push((PUBLISHED, f32s_to_bytes(published)));
                }
                tensors
            }
            Self::Outputs {
                parameters,
                width: _,
                values,
                indices,
            } => vec![
                (PARAMETERS, f32s_to_bytes(parameters)),
                (OUTPUT_VALUES, f32s_to_bytes(values)),
                (OUTPUT_INDICES, u32s_to_bytes(indices)),
            ],
        }
    }

    /// Reads back what [`to_tensors`](Self::to_tensors) gave for a job of `spec`.
    fn from_tensors(
        spec: &JobSpec,
        mut tensors: BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, CoordinatorError> {
        let mut take = |name: &str| {
            tensors.remove(name).ok_or_else(|| {
                CoordinatorError::Storage(format!("a job checkpoint lacks its {name}"))
            })
        };
        let malformed =
            |name: &str| CoordinatorError::Storage(format!("a job checkpoint's {name} is torn"));
        let parameters = bytes_to_f32s(&take(PARAMETERS)?).map_err(|_| malformed(PARAMETERS))?;
        Ok(match spec.work.output_width(&spec.model) {
            None => Self::Training {
                state: TrainerState {
                    parameters,
                    param_ids: bytes_to(&take(PARAM_IDS)?, u64::from_le_bytes)
                        .ok_or_else(|| malformed(PARAM_IDS))?,
                    optimizer: take(OPTIMIZER)?,
                },
                published: match spec.download_compression.is_none() {
                    true => None,
                    false => {
                        Some(bytes_to_f32s(&take(PUBLISHED)?).map_err(|_| malformed(PUBLISHED))?)
                    }
                },
            },
            Some(width) => Self::Outputs {
                parameters,
                width,
                values: bytes_to_f32s(&take(OUTPUT_VALUES)?)
                    .map_err(|_| malformed(OUTPUT_VALUES))?,
                indices: bytes_to(&take(OUTPUT_INDICES)?, u32::from_le_bytes)
                    .ok_or_else(|| malformed(OUTPUT_INDICES))?,
            },
        })
    }
}

impl Progression {
    /// This progression as bytes (serializes the optimizer's state: run it off the lock).
    pub(super) fn saved(&self) -> Result<SavedProgression, CoordinatorError> {
        Ok(match self {
            Self::Training { trainer, published } => SavedProgression::Training {
                state: trainer
                    .state()
                    .map_err(|error| CoordinatorError::Training(error.to_string()))?,
                published: published.clone(),
            },
            Self::Outputs {
                parameters,
                collected,
            } => {
                let (width, values, indices) = collected.parts();
                SavedProgression::Outputs {
                    parameters: parameters.clone(),
                    width,
                    values: values.to_vec(),
                    indices: indices.to_vec(),
                }
            }
        })
    }

    fn restore(spec: &JobSpec, saved: SavedProgression) -> Result<Self, CoordinatorError> {
        let invalid = |error: corex_ml::MlError| {
            CoordinatorError::Storage(format!("a job checkpoint does not fit its job: {error}"))
        };
        Ok(match saved {
            SavedProgression::Training { state, published } => {
                let trainer =
                    Trainer::restore(&spec.model, &spec.optimizer, state).map_err(invalid)?;
                if published
                    .as_ref()
                    .is_some_and(|published| published.len() != trainer.parameters().len())
                {
                    return Err(CoordinatorError::Storage(
                        "a job checkpoint's published model does not fit its job".into(),
                    ));
                }
                Self::Training {
                    trainer: Box::new(trainer),
                    published,
                }
            }
            SavedProgression::Outputs {
                parameters,
                width,
                values,
                indices,
            } => Self::Outputs {
                parameters,
                collected: Outputs::from_parts(width, values, indices)?,
            },
        })
    }
}

impl JobRun {
    /// The job as it stands (its progression's bytes come from
    /// [`take_saved`](Self::take_saved), taken at the same moment).
    pub fn checkpoint(&self, now_ms: u64) -> JobCheckpoint {
        let end_ms = self.finished_ms.unwrap_or(now_ms);
        JobCheckpoint {
            id: self.id,
            owner: self.owner,
            sequence: self.sequence,
            spec: self.spec.clone(),
            dataset_hash: self.dataset_hash,
            standardization: self.standardization.clone(),
            completed_rounds: self.completed_rounds,
            model: self.model,
            open_fragments: self
                .round
                .as_ref()
                .map(|round| round.fragments.clone())
                .unwrap_or_default(),
            shards: self.shards.clone(),
            declined: self.declined.clone(),
            history: self.history[self.history_stored.min(self.history.len())..].to_vec(),
            history_from: self.history_stored,
            contributions: self.contributions.clone(),
            reissued: self.reissued,
            state: self.state.clone(),
            weights: self.weights,
            outputs: self.outputs.clone(),
            ran_ms: end_ms.saturating_sub(self.started_ms),
            progression_file: None,
        }
    }

    /// Notes that the history up to `stored` records is stored.
    /// Whether every round of the job's history is in a stored checkpoint.
    pub fn history_is_stored(&self) -> bool {
        self.history_stored >= self.history.len()
    }

    pub fn history_stored(&mut self, stored: usize) {
        self.history_stored = self.history_stored.max(stored.min(self.history.len()));
    }

    /// The progression as the last close (or the start) saved it, once: `None` when taken
    /// already, and for a job that ended.
    pub fn take_saved(&mut self) -> Option<SavedProgression> {
        self.saved.take().filter(|_| self.is_running())
    }

    /// The job `checkpoint` describes, at `now_ms`. A running job needs its progression and
    /// its data prepared again (`prepared`, which must have the dataset's recorded name); an
    /// ended one needs neither, and its weights or outputs must be published in `blobs`.
    pub fn restore(
        checkpoint: JobCheckpoint,
        saved: Option<SavedProgression>,
        prepared: Option<PreparedData>,
        now_ms: u64,
        Engine {
            blobs, verifier, ..
        }: Engine<'_>,
    ) -> Result<Self, CoordinatorError> {
        let JobCheckpoint {
            id,
            owner,
            sequence,
            spec,
            dataset_hash,
            standardization,
            completed_rounds,
            model,
            open_fragments,
            shards,
            declined,
            history,
            history_from: _,
            contributions,
            reissued,
            state,
            weights,
            outputs,
            ran_ms,
            progression_file: _,
        } = checkpoint;
        let running = state == JobState::Running;
        if history.len() != completed_rounds as usize {
            return Err(CoordinatorError::Storage(format!(
                "job {} has {} round records for {completed_rounds} rounds",
                id.short(),
                history.len()
            )));
        }
        let (progression, data, dataset_blob) = match (running, saved, prepared) {
            (false, _, _) => (None, None, None),
            (true, Some(saved), Some(prepared)) => {
                if prepared.hash != dataset_hash {
                    return Err(CoordinatorError::Storage(format!(
                        "job {}'s dataset is now {}, it was {dataset_hash}",
                        id.short(),
                        prepared.hash
                    )));
                }
                let progression = Progression::restore(&spec, saved)?;
                if blobs.publish(f32s_to_bytes(&progression.parameters())) != model {
                    return Err(CoordinatorError::Storage(format!(
                        "job {}'s restored parameters are not its model {model}",
                        id.short()
                    )));
                }
                let PreparedData {
                    dataset,
                    split,
                    encoded,
                    ..
                } = prepared;
                let pool = match spec.work.output_width(&spec.model) {
                    None => split.train.clone(),
                    Some(_) => pass_samples(&spec, &dataset)?,
                };
                let blob = encoded.map(|(bytes, manifest)| blobs.publish_cut(bytes, manifest).0);
                let data = JobData {
                    dataset,
                    split,
                    pool,
                };
                (Some(progression), Some(Arc::new(data)), blob)
            }
            (true, _, _) => {
                return Err(CoordinatorError::Storage(format!(
                    "running job {} was restored without its model or its data",
                    id.short()
                )));
            }
        };
        for ended in [weights, outputs.as_ref().map(|outputs| outputs.values)]
            .into_iter()
            .flatten()
        {
            if blobs.get(&ended).is_err() {
                return Err(CoordinatorError::Storage(format!(
                    "job {}'s results {ended} are not on disk",
                    id.short()
                )));
            }
        }
        let closed_fragments = history
            .iter()
            .flat_map(|record| record.results.iter().map(|result| result.fragment))
            .collect();
        // Chains start again from zeros: a node's next result restarts its own (see
        // `compressed`), or continues from a kept result of the open round.
        let feedback = FeedbackChains::for_spec(&spec);
        let mut run = Self {
            id,
            owner,
            sequence,
            dataset_hash,
            dataset_blob,
            standardization,
            spec,
            data,
            progression,
            saved: None,
            closing: None,
            model,
            previous_model: None,
            updates: VecDeque::new(),
            round: None,
            completed_rounds,
            closed_fragments,
            history_stored: history.len(),
            shards,
            declined,
            feedback,
            history,
            contributions,
            reissued,
            state,
            weights,
            outputs,
            started_ms: now_ms.saturating_sub(ran_ms),
            finished_ms: (!running).then_some(now_ms),
            stored: true,
        };
        if running {
            if open_fragments
                .iter()
                .any(|fragment| fragment.model != run.model)
            {
                return Err(CoordinatorError::Storage(format!(
                    "job {}'s open round is not of its restored model",
                    id.short()
                )));
            }
            match open_fragments.is_empty() {
                true => run.open_round(&[], verifier, now_ms),
                false => run.round = Some(RoundState::open(open_fragments, now_ms)),
            }
        }
        Ok(run)
    }
}
