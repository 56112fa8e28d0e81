//! Jobs of output work (inference, transforms), which do not train: the parameters they run
//! at for the whole job, the samples they pass over, and the rows their rounds collect.
//!
//! In: the job spec, its dataset and the published blobs at submission; each closed round's
//! accepted rows (a rejected result already replaced by its replay) in fragment order. Out:
//! at the job's end, the rows and their sample indices published as blobs ([`JobOutputs`]).
//! Invariant: row `i` of the outputs is always the output for sample `indices[i]`.

use corex_core::messages::JobOutputs;
use corex_core::tensor::f32s_to_bytes;
use corex_core::{JobSpec, MAX_OUTPUT_VALUES, WorkSpec};
use corex_ml::Dataset;

use crate::blobs::BlobStore;
use crate::error::CoordinatorError;

/// The parameters an output job runs at: the weights blob an inference job names (published
/// on this coordinator, and of the job's model), the seeded initialisation when it names
/// none, and none at all for a transform (it has no model).
pub fn fixed_parameters(spec: &JobSpec, blobs: &BlobStore) -> Result<Vec<f32>, CoordinatorError> {
    match &spec.work {
        WorkSpec::Inference {
            weights: Some(weights),
        } => {
            let blob = blobs.get(weights).map_err(|_| {
                CoordinatorError::InvalidSpec(format!(
                    "inference weights {weights} are not published on this coordinator (name a finished job's weights)"
                ))
            })?;
            let (model, parameters) = corex_ml::from_safetensors(&blob.bytes).map_err(|error| {
                CoordinatorError::InvalidSpec(format!(
                    "inference weights {weights} are not a model's safetensors: {error}"
                ))
            })?;
            if model != spec.model {
                return Err(CoordinatorError::InvalidSpec(format!(
                    "inference weights {weights} are of model {model:?}, the job's model is {:?}",
                    spec.model
                )));
            }
            Ok(parameters)
        }
        WorkSpec::Inference { weights: None } => {
            Ok(corex_ml::init_parameters(&spec.model, spec.seed))
        }
        WorkSpec::Transform { .. } => Ok(Vec::new()),
        WorkSpec::Gradient | WorkSpec::LocalSteps { .. } => Err(CoordinatorError::InvalidSpec(
            "a training job has no fixed parameters".into(),
        )),
    }
}

/// The samples an output job passes over: every sample of the dataset, in order (round `r`
/// takes the `r`-th `global_batch` of them). Refuses more rounds than the pass has, and
/// outputs over [`MAX_OUTPUT_VALUES`].
pub fn pass_samples(spec: &JobSpec, dataset: &Dataset) -> Result<Vec<u32>, CoordinatorError> {
    let samples = dataset.sample_count(&spec.model) as u64;
    let batch = u64::from(spec.global_batch);
    let rounds = samples.div_ceil(batch);
    if u64::from(spec.rounds) > rounds {
        return Err(CoordinatorError::InvalidSpec(format!(
            "an output job passes over its dataset once: {samples} samples make at most {rounds} rounds of {batch}, the job asks for {}",
            spec.rounds
        )));
    }
    let covered = (u64::from(spec.rounds) * batch).min(samples) as usize;
    let width = spec.work.output_width(&spec.model).unwrap_or_default();
    if covered.saturating_mul(width) > MAX_OUTPUT_VALUES {
        return Err(CoordinatorError::InvalidSpec(format!(
            "{covered} samples × {width} values each exceed the {MAX_OUTPUT_VALUES} output values a job may produce"
        )));
    }
    Ok((0..covered as u32).collect())
}

/// The rows collected so far, in round and fragment order, with their sample indices.
#[derive(Debug, Default)]
pub struct Outputs {
    width: usize,
    values: Vec<f32>,
    indices: Vec<u32>,
}

impl Outputs {
    pub fn new(width: usize) -> Self {
        Self {
            width,
            ..Self::default()
        }
    }

    /// The rows collected so far again (from [`parts`](Self::parts)), checked for shape.
    pub fn from_parts(
        width: usize,
        values: Vec<f32>,
        indices: Vec<u32>,
    ) -> Result<Self, CoordinatorError> {
        let mut outputs = Self::new(width);
        outputs.append(&indices, &values)?;
        Ok(outputs)
    }

    /// The width, values and sample indices collected so far.
    pub fn parts(&self) -> (usize, &[f32], &[u32]) {
        (self.width, &self.values, &self.indices)
    }

    /// Appends one fragment's rows: `indices.len() × width` values.
    pub fn append(&mut self, indices: &[u32], rows: &[f32]) -> Result<(), CoordinatorError> {
        if rows.len() != indices.len() * self.width {
            return Err(CoordinatorError::Training(format!(
                "{} output values for {} samples of width {}",
                rows.len(),
                indices.len(),
                self.width
            )));
        }
        self.values.extend_from_slice(rows);
        self.indices.extend_from_slice(indices);
        Ok(())
    }

    /// Publishes the rows and their indices; for inference, scores the predicted classes
    /// against the samples' labels.
    pub fn publish(
        self,
        spec: &JobSpec,
        dataset: &Dataset,
        blobs: &mut BlobStore,
    ) -> Result<JobOutputs, CoordinatorError> {
        let prediction_accuracy = match spec.work {
            WorkSpec::Inference { .. } if !self.indices.is_empty() => {
                let labels = corex_ml::prediction_labels(&spec.model, dataset, &self.indices);
                let scored = corex_ml::score_predictions(&self.values, &labels, self.width)
                    .map_err(|error| CoordinatorError::Training(error.to_string()))?;
                Some(scored.accuracy)
            }
            _ => None,
        };
        let indices: Vec<u8> = self
            .indices
            .iter()
            .flat_map(|index| index.to_le_bytes())
            .collect();
        Ok(JobOutputs {
            values: blobs.publish(f32s_to_bytes(&self.values)),
            indices: blobs.publish(indices),
            rows: self.indices.len() as u64,
            width: self.width as u32,
            prediction_accuracy,
        })
    }
}
