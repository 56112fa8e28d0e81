//! The coordinator's side of a round: a burn MLP plus a burn optimizer that applies an
//! aggregated flat gradient to the model, step after step.
//!
//! Burn keys optimizer state (momentum, Adam moments) by the `ParamId`s of the module it steps,
//! so the trainer keeps one module for its whole life and registers every gradient under that
//! module's ids.

use burn::module::Param;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use corex_core::{ModelSpec, OptimizerSpec};

use crate::error::MlError;
use crate::model::Mlp;
use crate::params::{check_spec, check_tensor, layer_slots};

/// A model being trained by applying externally computed gradients.
pub struct Trainer {
    spec: ModelSpec,
    /// `None` only transiently inside [`Trainer::step`].
    model: Option<Mlp>,
    optimizer: ModuleOptimizer,
    learning_rate: f64,
    /// Host copy of the current parameters, refreshed after every step.
    params: Vec<f32>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("spec", &self.spec)
            .field("learning_rate", &self.learning_rate)
            .field("parameters", &self.params.len())
            .finish_non_exhaustive()
    }
}

/// Validates an optimizer spec and builds the matching burn optimizer. SGD uses burn's momentum
/// with dampening 0 and no Nesterov (classic heavy ball, `v ← μ v + g`), and no momentum
/// state at all when `momentum == 0`; Adam uses the spec's betas and epsilon, no AMSGrad, no
/// weight decay.
pub(crate) fn build_optimizer(spec: &OptimizerSpec) -> Result<ModuleOptimizer, MlError> {
    spec.validate()
        .map_err(|error| MlError::Spec(error.to_string()))?;
    Ok(match *spec {
        OptimizerSpec::Sgd { momentum, .. } => {
            let momentum = (momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(momentum)
                    .with_dampening(0.0)
                    .with_nesterov(false)
            });
            SgdConfig::new().with_momentum(momentum).init()
        }
        OptimizerSpec::Adam {
            beta_1,
            beta_2,
            epsilon,
            ..
        } => AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .init(),
    })
}

impl Trainer {
    /// A trainer starting from `params` (flat layout) with a fresh optimizer state.
    pub fn new(
        spec: &ModelSpec,
        params: &[f32],
        optimizer: &OptimizerSpec,
    ) -> Result<Self, MlError> {
        check_spec(spec)?;
        check_tensor(spec, params)?;
        let optim = build_optimizer(optimizer)?;
        let device = Device::flex().autodiff();
        Ok(Self {
            spec: spec.clone(),
            model: Some(Mlp::from_flat(spec, params, &device)),
            optimizer: optim,
            learning_rate: optimizer.learning_rate(),
            params: params.to_vec(),
        })
    }

    /// Applies one optimizer step with `gradient` (flat layout, typically the
    /// [`weighted_mean`](crate::weighted_mean) of the round's fragment gradients). A rejected
    /// gradient leaves the trainer untouched.
    pub fn step(&mut self, gradient: &[f32]) -> Result<(), MlError> {
        check_tensor(&self.spec, gradient)?;
        let model = self
            .model
            .take()
            .ok_or_else(|| MlError::Backend("trainer lost its model in an earlier step".into()))?;
        // Gradients live on the plain (non-autodiff) device, like those `GradientsParams::from_grads`
        // extracts after `backward()`.
        let device = Device::flex();
        let mut grads = GradientsParams::new();
        for (slot, layer) in layer_slots(&self.spec).iter().zip(&model.layers) {
            register(
                &mut grads,
                &layer.weight,
                Tensor::<2>::from_data(
                    TensorData::new(slot.weight(gradient).to_vec(), [slot.fan_in, slot.fan_out]),
                    &device,
                ),
            );
            if let Some(bias) = &layer.bias {
                register(
                    &mut grads,
                    bias,
                    Tensor::<1>::from_data(
                        TensorData::new(slot.bias(gradient).to_vec(), [slot.fan_out]),
                        &device,
                    ),
                );
            }
        }
        let model = self.optimizer.step(self.learning_rate, model, grads);
        let params = model.to_flat(&self.spec);
        self.model = Some(model);
        self.params = params?;
        Ok(())
    }

    /// The current parameters, flat layout.
    pub fn parameters(&self) -> Vec<f32> {
        self.params.clone()
    }

    /// The model spec being trained.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }
}

fn register<const D: usize>(
    grads: &mut GradientsParams,
    param: &Param<Tensor<D>>,
    value: Tensor<D>,
) {
    grads.register(param.id, value);
}
