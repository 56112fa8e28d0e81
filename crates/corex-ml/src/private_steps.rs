//! Differentially private local steps (DP-SGD) for a federated data holder: what a node runs
//! on its own data when the job's [`PrivacySpec`] is set.
//!
//! In: the model, the holder's pool of sample indices, a [`PrivateStepsSpec`] and the node's
//! secret random generator. Out: the pseudo-gradient `w_start − w_end` of `steps` steps.
//! Each step Poisson-samples the pool with rate `q = local_batch / pool.len()`, clips every
//! sampled example's gradient to `clip_norm` (see `per_example`), sums them, adds
//! `N(0, (noise_multiplier · clip_norm)²)` to every coordinate, divides by `local_batch` (the
//! expected batch: a fixed denominator, as the analysis assumes) and lets a fresh `inner`
//! optimizer take the step. An empty sample still takes the noise-only step.
//!
//! Invariants the privacy accountant ([`epsilon`](crate::epsilon) with that `q` and the total
//! number of steps) relies on: the sampled sets and the noise come only from the secret
//! generator (a [`CryptoRng`], never derived from public data: subsampling amplifies privacy
//! only while the batch stays hidden); the pool names each example at most once, so one
//! example moves each step's gradient sum by at most `clip_norm`; the optimizer and the
//! returned difference are post-processing. The loss over the private samples is not released.

use corex_core::{MAX_LOCAL_STEPS, ModelSpec, OptimizerSpec, PrivacySpec};
use rand::{CryptoRng, Rng};
use rand_distr::StandardNormal;

use crate::dataset::Dataset;
use crate::error::MlError;
use crate::gradient::{GradientOutput, finish};
use crate::local_steps::displacement;
use crate::params::{check_inputs, sample_count};
use crate::per_example::clipped_gradient_sum;
use crate::trainer::Trainer;

/// What a private local-steps fragment runs: a plain config struct, checked by `validate`.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivateStepsSpec {
    /// Optimizer steps in the fragment, each on its own Poisson sample.
    pub steps: u32,
    /// Expected samples per step: the sampling rate is `local_batch / pool.len()` and the
    /// noisy sum is divided by it.
    pub local_batch: u32,
    /// The optimizer that takes the steps, fresh for every fragment.
    pub inner: OptimizerSpec,
    pub privacy: PrivacySpec,
}

impl PrivateStepsSpec {
    pub fn validate(&self) -> Result<(), MlError> {
        if !(1..=MAX_LOCAL_STEPS).contains(&self.steps) {
            return Err(MlError::Spec(format!(
                "private local steps {} are outside 1..={MAX_LOCAL_STEPS}",
                self.steps
            )));
        }
        if self.local_batch == 0 {
            return Err(MlError::Spec("local_batch must be at least 1".into()));
        }
        self.inner
            .validate()
            .map_err(|error| MlError::Spec(error.to_string()))?;
        self.privacy
            .validate()
            .map_err(|error| MlError::Privacy(error.to_string()))
    }

    /// The Poisson sampling rate over a pool of `pool_len` examples, the accountant's `q`.
    pub fn sampling_rate(&self, pool_len: usize) -> f64 {
        f64::from(self.local_batch) / pool_len as f64
    }
}

/// What a private local-steps fragment produced: the output to send, and the secret Poisson
/// samples of its steps, which the holder commits to (salted) and never reveals.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivateSteps {
    pub output: GradientOutput,
    /// The examples each step sampled, in step order.
    pub batches: Vec<Vec<u32>>,
}

/// `plan.steps` DP-SGD steps from `params` over the examples `pool` of `data`, randomness
/// from `rng`; returns `params − w_end` as the gradient, `pool.len()` as the sample count and
/// 0 as the loss (withheld: a loss over the secretly sampled examples is not private), with
/// the sampled batches.
/// Each step draws its Poisson sample ([`poisson_sample`]) and then its noise from `rng` (in parallel
/// with the gradients), so the same generator state reproduces
/// the same bits.
pub fn compute_private_local_steps(
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    pool: &[u32],
    plan: &PrivateStepsSpec,
    rng: &mut (impl CryptoRng + Send),
) -> Result<PrivateSteps, MlError> {
    check_inputs(spec, params, data, pool)?;
    let ModelSpec::Mlp(mlp) = spec else {
        return Err(MlError::Spec(format!(
            "differentially private steps clip per-example gradients of the mlp family, not {}",
            spec.family()
        )));
    };
    plan.validate()?;
    check_distinct(pool)?;
    if plan.local_batch as usize > pool.len() {
        return Err(MlError::Privacy(format!(
            "local_batch {} exceeds the pool of {} samples",
            plan.local_batch,
            pool.len()
        )));
    }
    let samples = sample_count(pool)?;
    let noise_deviation = plan.privacy.noise_multiplier * plan.privacy.clip_norm;
    let denominator = f64::from(plan.local_batch);
    let mut trainer = Trainer::new(spec, params, &plan.inner)?;
    let mut current = params.to_vec();
    let mut noisy = vec![0.0f32; params.len()];
    let mut noise = vec![0.0f64; params.len()];
    let mut batches = Vec::with_capacity(plan.steps as usize);
    for _ in 0..plan.steps {
        let batch = poisson_sample(pool, plan.local_batch, rng);
        // The noise needs no gradient: draw it meanwhile, as a task of the same thread pool
        // that the tensor backend computes on (no extra thread competes for the cores).
        let (sum, ()) = rayon::join(
            || clipped_gradient_sum(mlp, &current, data, &batch, plan.privacy.clip_norm),
            || {
                for value in noise.iter_mut() {
                    *value = rng.sample::<f64, _>(StandardNormal);
                }
            },
        );
        let sum = sum?;
        for ((out, clipped), noise) in noisy.iter_mut().zip(&sum).zip(&noise) {
            *out = ((f64::from(*clipped) + noise_deviation * noise) / denominator) as f32;
        }
        trainer.step(&noisy)?;
        current = trainer.parameters();
        batches.push(batch);
    }
    Ok(PrivateSteps {
        output: finish(displacement(params, &current), 0.0, samples)?,
        batches,
    })
}

/// A Poisson sample of `pool`: every entry independently, in pool order, with probability
/// exactly `local_batch / pool.len()` (one unbiased draw below `pool.len()` per entry).
pub fn poisson_sample(pool: &[u32], local_batch: u32, rng: &mut impl CryptoRng) -> Vec<u32> {
    let len = pool.len() as u64;
    pool.iter()
        .copied()
        .filter(|_| uniform_below(len, rng) < u64::from(local_batch))
        .collect()
}

/// A uniform draw from `0..bound` (`bound` ≥ 1): Lemire's multiply-high with rejection, so
/// every value has exactly the same probability.
fn uniform_below(bound: u64, rng: &mut impl CryptoRng) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(bound);
        if (product as u64) >= threshold {
            return (product >> 64) as u64;
        }
    }
}

/// Rejects a pool that names an example twice: it could be sampled twice in one step and
/// move the gradient sum by twice the clip norm, breaking the accountant's sensitivity.
fn check_distinct(pool: &[u32]) -> Result<(), MlError> {
    let mut sorted = pool.to_vec();
    sorted.sort_unstable();
    match sorted.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => Err(MlError::Privacy(format!(
            "the pool names sample {} more than once",
            pair[0]
        ))),
        None => Ok(()),
    }
}
