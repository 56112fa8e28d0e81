//! Local-steps fragments (DiLoCo-style, for slow links): `K` steps of a fresh inner optimizer
//! over `K` consecutive micro-batches of the fragment's samples, returned as the
//! pseudo-gradient `w_start − w_end`. One transfer each way then carries `K` optimizer steps
//! of work instead of one, and the coordinator's (outer) optimizer steps on the mean of the
//! round's pseudo-gradients.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use corex_core::{ModelSpec, OptimizerSpec};

use crate::dataset::Dataset;
use crate::error::MlError;
use crate::gradient::{GradientOutput, finish};
use crate::model::{Mlp, batch_tensors, read_floats};
use crate::params::check_inputs;
use crate::trainer::build_optimizer;

/// `steps` steps of a fresh `inner` optimizer from `params`, micro-batch `j` being
/// `indices[j·n/steps .. (j+1)·n/steps]`; returns `params − w_end` as the gradient and the
/// mean of the micro-batch losses (each at the weights before its step) as the loss.
/// Deterministic like [`compute_gradient`].
pub fn compute_local_steps(
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
    steps: u32,
    inner: &OptimizerSpec,
) -> Result<GradientOutput, MlError> {
    check_inputs(spec, params, data, indices)?;
    let samples = u32::try_from(indices.len())
        .map_err(|_| MlError::Shape(format!("{} indices do not fit u32", indices.len())))?;
    let steps = steps as usize;
    if steps == 0 || steps > indices.len() {
        return Err(MlError::Shape(format!(
            "{steps} local steps over {} samples: each step needs at least one sample",
            indices.len()
        )));
    }
    let mut optimizer = build_optimizer(inner)?;
    let learning_rate = inner.learning_rate();
    let device = Device::flex().autodiff();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut model = Mlp::from_flat(spec, params, &device);
    let mut loss_sum = 0.0f64;
    for step in 0..steps {
        let micro_batch =
            &indices[step * indices.len() / steps..(step + 1) * indices.len() / steps];
        let (features, labels) = data.gather(micro_batch);
        let (x, y) = batch_tensors(features, &labels, spec.input, &device);
        let loss = loss_fn.forward(model.forward(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let step_loss = read_floats(loss)?
            .first()
            .copied()
            .ok_or_else(|| MlError::Backend("loss tensor is empty".into()))?;
        loss_sum += f64::from(step_loss);
        model = optimizer.step(learning_rate, model, grads);
    }
    let end = model.to_flat(spec)?;
    let gradient: Vec<f32> = params.iter().zip(&end).map(|(w, v)| w - v).collect();
    finish(gradient, (loss_sum / steps as f64) as f32, samples)
}
