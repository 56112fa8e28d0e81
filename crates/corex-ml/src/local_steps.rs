//! Local-steps fragments (DiLoCo-style, for slow links): `K` steps of a fresh inner optimizer
//! over `K` consecutive micro-batches of the fragment's samples, returned as the
//! pseudo-gradient `w_start − w_end`. One transfer each way then carries `K` optimizer steps
//! of work instead of one, and the coordinator's (outer) optimizer steps on the mean of the
//! round's pseudo-gradients.

use std::ops::Range;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use corex_core::trace::mean_step_loss;
use corex_core::{ModelSpec, OptimizerSpec};

use crate::backend::Backend;
use crate::dataset::Dataset;
use crate::error::MlError;
use crate::gradient::{GradientOutput, finish, scalar};
use crate::model::{Batch, Network};
use crate::params::{check_inputs, sample_count};
use crate::trainer::build_optimizer;

/// `steps` steps of a fresh `inner` optimizer from `params`, micro-batch `j` being
/// `indices[j·n/steps .. (j+1)·n/steps]`; returns `params − w_end` as the gradient and the
/// mean of the micro-batch losses (each at the weights before its step) as the loss.
/// Deterministic like [`compute_gradient`].
pub fn compute_local_steps(
    backend: &Backend,
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
    steps: u32,
    inner: &OptimizerSpec,
) -> Result<GradientOutput, MlError> {
    Ok(compute_traced_local_steps(backend, spec, params, data, indices, steps, inner, &[])?.output)
}

/// A local-steps result with what its step trace commits to (see `corex_core::trace`).
#[derive(Debug, Clone, PartialEq)]
pub struct TracedSteps {
    pub output: GradientOutput,
    /// The weights after step `b` for each requested boundary `b`, in order.
    pub checkpoints: Vec<Vec<f32>>,
    /// Each step's micro-batch loss, at the weights before that step.
    pub losses: Vec<f32>,
}

/// [`compute_local_steps`], keeping the weights at each step boundary in `checkpoints`
/// (ascending, within `1..steps`) and every step's loss: what a node commits to in a step
/// trace. The result is the same bits as without checkpoints.
#[allow(clippy::too_many_arguments)]
pub fn compute_traced_local_steps(
    backend: &Backend,
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
    steps: u32,
    inner: &OptimizerSpec,
    checkpoints: &[u32],
) -> Result<TracedSteps, MlError> {
    let samples = sample_count(indices)?;
    let stepped = run_steps(
        backend,
        spec,
        params,
        data,
        indices,
        steps,
        inner,
        0..steps,
        checkpoints,
    )?;
    Ok(TracedSteps {
        output: finish(
            displacement(params, &stepped.end),
            mean_step_loss(&stepped.losses),
            samples,
        )?,
        checkpoints: stepped.stops,
        losses: stepped.losses,
    })
}

/// Replays steps `steps_range` of a local-steps fragment from `start`, the weights before its
/// first step (what a segment audit does): the weights after its last step and each step's
/// loss. Only meaningful for a stateless `inner` optimizer, whose steps need no earlier state.
#[allow(clippy::too_many_arguments)]
pub fn replay_local_steps(
    backend: &Backend,
    spec: &ModelSpec,
    start: &[f32],
    data: &Dataset,
    indices: &[u32],
    steps: u32,
    inner: &OptimizerSpec,
    steps_range: Range<u32>,
) -> Result<(Vec<f32>, Vec<f32>), MlError> {
    let stepped = run_steps(
        backend,
        spec,
        start,
        data,
        indices,
        steps,
        inner,
        steps_range,
        &[],
    )?;
    Ok((stepped.end, stepped.losses))
}

/// What a segment audit replays (see `corex_core::trace`): steps `steps_range` from `start`,
/// as the segment's update `start − w_end` and the mean of its step losses.
#[allow(clippy::too_many_arguments)]
pub fn replay_segment(
    backend: &Backend,
    spec: &ModelSpec,
    start: &[f32],
    data: &Dataset,
    indices: &[u32],
    steps: u32,
    inner: &OptimizerSpec,
    steps_range: Range<u32>,
) -> Result<GradientOutput, MlError> {
    let samples = sample_count(indices)?;
    let (end, losses) = replay_local_steps(
        backend,
        spec,
        start,
        data,
        indices,
        steps,
        inner,
        steps_range,
    )?;
    finish(displacement(start, &end), mean_step_loss(&losses), samples)
}

/// `start − end`: the update that moves weights `start` to `end` (a pseudo-gradient).
pub fn displacement(start: &[f32], end: &[f32]) -> Vec<f32> {
    start.iter().zip(end).map(|(w, v)| w - v).collect()
}

/// What running some of a fragment's steps gives.
struct Stepped {
    end: Vec<f32>,
    losses: Vec<f32>,
    stops: Vec<Vec<f32>>,
}

/// Runs steps `steps_range` (of `steps` over `indices`) of a fresh `inner` optimizer from
/// `params`, keeping the weights after each step in `stops`.
#[allow(clippy::too_many_arguments)]
fn run_steps(
    backend: &Backend,
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
    steps: u32,
    inner: &OptimizerSpec,
    steps_range: Range<u32>,
    stops: &[u32],
) -> Result<Stepped, MlError> {
    check_inputs(spec, params, data, indices)?;
    let total = steps as usize;
    if total == 0 || total > indices.len() {
        return Err(MlError::Shape(format!(
            "{steps} local steps over {} samples: each step needs at least one sample",
            indices.len()
        )));
    }
    if steps_range.is_empty() || steps_range.end > steps {
        return Err(MlError::Shape(format!(
            "steps {steps_range:?} are not a range within the fragment's {steps}"
        )));
    }
    if stops
        .iter()
        .any(|stop| !(steps_range.start + 1..steps_range.end).contains(stop))
        || !stops.is_sorted()
    {
        return Err(MlError::Shape(format!(
            "checkpoints {stops:?} are not ascending within steps {steps_range:?}"
        )));
    }
    let mut optimizer = build_optimizer(inner)?;
    let learning_rate = inner.learning_rate();
    let device = backend.autodiff();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut model = Network::from_flat(spec, params, &device)?;
    let mut losses = Vec::with_capacity(steps_range.len());
    let mut kept = Vec::with_capacity(stops.len());
    for step in steps_range.clone() {
        let step = step as usize;
        let micro_batch =
            &indices[step * indices.len() / total..(step + 1) * indices.len() / total];
        let batch = Batch::gather(spec, data, micro_batch, &device)?;
        let loss = loss_fn.forward(model.forward(batch.input)?, batch.targets);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        losses.push(scalar(loss)?);
        model = optimizer.step(learning_rate, model, grads);
        if stops.contains(&(step as u32 + 1)) {
            kept.push(model.to_flat(spec)?);
        }
    }
    Ok(Stepped {
        end: model.to_flat(spec)?,
        losses,
        stops: kept,
    })
}
