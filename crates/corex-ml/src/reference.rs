//! The single-process baseline: the textbook burn training loop (forward on the whole batch,
//! `loss.backward()`, `GradientsParams::from_grads`, optimizer step). It shares only model
//! construction and optimizer configuration with the distributed path, so comparing the two
//! checks fragmenting, aggregation and `Trainer::step`.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use corex_core::{ModelSpec, OptimizerSpec};

use crate::dataset::Dataset;
use crate::error::MlError;
use crate::model::{Batch, Network};
use crate::params::{check_dataset, check_spec, check_tensor};
use crate::trainer::build_optimizer;

/// Trains from `params` with one optimizer step per batch of `batches` (sample indices of
/// `data`), and returns the final parameters (flat layout). All batches are validated before
/// the first step.
pub fn train_reference(
    spec: &ModelSpec,
    params: &[f32],
    optimizer: &OptimizerSpec,
    data: &Dataset,
    batches: &[Vec<u32>],
) -> Result<Vec<f32>, MlError> {
    check_spec(spec)?;
    check_tensor(spec, params)?;
    check_dataset(spec, data)?;
    for batch in batches {
        data.check_indices_within(batch, spec.window().unwrap_or(1))?;
    }
    let mut optim = build_optimizer(optimizer)?;
    let learning_rate = optimizer.learning_rate();
    let device = Device::flex().autodiff();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut model = Network::from_flat(spec, params, &device)?;
    for batch in batches {
        let batch = Batch::gather(spec, data, batch, &device)?;
        let loss = loss_fn.forward(model.forward(batch.input)?, batch.targets);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(learning_rate, model, grads);
    }
    model.to_flat(spec)
}
