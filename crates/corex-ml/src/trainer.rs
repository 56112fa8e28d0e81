//! The coordinator's side of a round: a burn module of any family plus a burn optimizer that applies an
//! aggregated flat gradient to the model, step after step.
//!
//! Burn keys optimizer state (momentum, Adam moments) by the `ParamId`s of the module it steps,
//! so the trainer keeps one module for its whole life and registers every gradient under that
//! module's ids.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use corex_core::{ModelSpec, OptimizerSpec};

use crate::error::MlError;
use crate::model::Network;
use crate::params::{check_spec, check_tensor};

/// A model being trained by applying externally computed gradients.
pub struct Trainer {
    spec: ModelSpec,
    /// `None` only transiently inside [`Trainer::step`].
    model: Option<Network>,
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
/// state at all when `momentum == 0`; Nesterov the same momentum with burn's Nesterov step
/// (`g + μ v`, as PyTorch's); Adam uses the spec's betas and epsilon, no AMSGrad, no
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
        OptimizerSpec::Nesterov { momentum, .. } => SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(momentum)
                    .with_dampening(0.0)
                    .with_nesterov(true),
            ))
            .init(),
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
            model: Some(Network::from_flat(spec, params, &device)?),
            optimizer: optim,
            learning_rate: optimizer.learning_rate(),
            params: params.to_vec(),
        })
    }

    /// Applies one optimizer step with `gradient` (flat layout, typically the
    /// [`weighted_mean`](crate::weighted_mean) of the round's fragment gradients). A rejected
    /// gradient leaves the trainer untouched.
    pub fn step(&mut self, gradient: &[f32]) -> Result<(), MlError> {
        self.step_at_rate(gradient, self.learning_rate)
    }

    /// [`Trainer::step`] at `learning_rate` instead of the optimizer's own (a job's schedule,
    /// `JobSpec::learning_rate_at`).
    pub fn step_at_rate(&mut self, gradient: &[f32], learning_rate: f64) -> Result<(), MlError> {
        if !(learning_rate.is_finite() && learning_rate >= 0.0) {
            return Err(MlError::Spec(format!("learning rate {learning_rate}")));
        }
        check_tensor(&self.spec, gradient)?;
        let model = self
            .model
            .take()
            .ok_or_else(|| MlError::Backend("trainer lost its model in an earlier step".into()))?;
        let mut registrar = GradientRegistrar {
            gradient,
            offset: 0,
            device: Device::flex(),
            grads: GradientsParams::new(),
        };
        model.visit(&mut registrar);
        let model = self.optimizer.step(learning_rate, model, registrar.grads);
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

    /// Everything the trainer holds, to rebuild it exactly with [`Trainer::restore`]: the
    /// parameters, burn's ids for them (its optimizer keys its state by them) and the
    /// optimizer's state as burn's own record.
    pub fn state(&self) -> Result<TrainerState, MlError> {
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| MlError::Backend("trainer lost its model in an earlier step".into()))?;
        let mut ids = ParamIds(Vec::new());
        model.visit(&mut ids);
        let optimizer = self
            .optimizer
            .into_bytes()
            .map_err(|error| MlError::Backend(format!("optimizer state: {error}")))?;
        Ok(TrainerState {
            parameters: self.params.clone(),
            param_ids: ids.0,
            optimizer: optimizer.to_vec(),
        })
    }

    /// The trainer [`Trainer::state`] described: its next step gives the same bits as the
    /// original's would have. Refuses a state that does not fit `spec` and `optimizer`.
    pub fn restore(
        spec: &ModelSpec,
        optimizer: &OptimizerSpec,
        state: TrainerState,
    ) -> Result<Self, MlError> {
        let mut trainer = Self::new(spec, &state.parameters, optimizer)?;
        let model = trainer
            .model
            .take()
            .ok_or_else(|| MlError::Backend("a new trainer has no model".into()))?;
        let mut renamer = ParamRenamer {
            ids: &state.param_ids,
            next: 0,
        };
        let model = model.map(&mut renamer);
        if renamer.next != state.param_ids.len() {
            return Err(MlError::Spec(format!(
                "a trainer state of {} parameter tensors for a model of {}",
                state.param_ids.len(),
                renamer.next
            )));
        }
        trainer.model = Some(model);
        let fresh = build_optimizer(optimizer)?;
        trainer.optimizer = fresh
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(state.optimizer))
            .map_err(|error| MlError::Spec(format!("optimizer state: {error}")))?;
        Ok(trainer)
    }
}

/// A [`Trainer`]'s whole state (see [`Trainer::state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerState {
    /// The parameters, flat layout.
    pub parameters: Vec<f32>,
    /// burn's id of each parameter tensor, in the layout's order.
    pub param_ids: Vec<u64>,
    /// burn's optimizer record (burnpack bytes), keyed by those ids.
    pub optimizer: Vec<u8>,
}

/// Collects burn's parameter ids in visiting (layout) order.
struct ParamIds(Vec<u64>);

impl ModuleVisitor for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id.val());
    }
}

/// Gives each parameter tensor, in visiting order, the id a saved state knew it by.
struct ParamRenamer<'a> {
    ids: &'a [u64],
    next: usize,
}

impl ModuleMapper for ParamRenamer<'_> {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if let Some(id) = self.ids.get(self.next) {
            param.id = ParamId::from(*id);
        }
        self.next += 1;
        param
    }
}

/// Registers the slice of a flat gradient that belongs to each parameter, in layout order.
/// Gradients live on the plain (non-autodiff) device, like those
/// `GradientsParams::from_grads` extracts after `backward()`.
struct GradientRegistrar<'a> {
    gradient: &'a [f32],
    offset: usize,
    device: Device,
    grads: GradientsParams,
}

impl ModuleVisitor for GradientRegistrar<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let shape = param.lazy_shape();
        let count = shape.num_elements();
        // The gradient passed `check_tensor`, so every slice is in range.
        if let Some(values) = self.gradient.get(self.offset..self.offset + count) {
            let value =
                Tensor::<D>::from_data(TensorData::new(values.to_vec(), shape), &self.device);
            self.grads.register(param.id, value);
        }
        self.offset += count;
    }
}
