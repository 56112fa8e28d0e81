//! Computing one fragment off the async threads: the job's work as it is (with a step trace
//! where `corex_core::trace` asks for one), differentially private local steps on a data
//! holder's own data, a segment or prefix audit task's steps, or an adversary's variant.
//!
//! In: the job (its work, model and compression), the parameters, the data and the fragment's
//! indices. Out: the output, the sample batches it used and, for a traced result, its
//! checkpoints, their roots and step losses. Deterministic except under differential privacy,
//! whose sampling and noise come from the operating system's randomness.

use corex_core::trace::{checkpoint_root, segment_bounds};
use corex_core::{Hash, JobSpec, WorkSpec};
use corex_ml::{Backend, Dataset, FragmentOutput, PrivateStepsSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::error::NodeError;

/// What computing a fragment gives: its output, the sample batches it used, and for a traced
/// result what its step trace commits to.
pub(crate) struct Computed {
    pub(crate) output: FragmentOutput,
    pub(crate) batches: Vec<Vec<u32>>,
    pub(crate) trace: Option<Trace>,
}

/// The checkpoints (`(step, parameters after it)`), their roots (what the trace commits to,
/// hashed here, off the async threads) and step losses of a traced result.
pub(crate) struct Trace {
    pub(crate) checkpoints: Vec<(u32, Vec<f32>)>,
    pub(crate) roots: Vec<Hash>,
    pub(crate) losses: Vec<f32>,
}

impl Trace {
    fn new(checkpoints: Vec<(u32, Vec<f32>)>, losses: Vec<f32>) -> Self {
        let roots = checkpoints
            .iter()
            .map(|(_, parameters)| checkpoint_root(parameters))
            .collect();
        Self {
            checkpoints,
            roots,
            losses,
        }
    }
}

/// How a fragment is computed, beyond what its work says.
pub(crate) enum Variant {
    /// The job's work as it is (traced where `corex_core::trace` says so).
    Plain,
    /// Differentially private local steps on this holder's data.
    Private(PrivateStepsSpec),
    /// A segment or prefix audit task: only local steps `[first, end)` (a prefix's `first`
    /// is 0, from the round's model with a fresh inner optimizer).
    Segment([u32; 2]),
    /// As the adversary of that name.
    SkipSegment,
}

/// Computes a fragment of `job` on `backend` (differentially private steps: on the CPU): its
/// output and the sample batches it used, with a step trace where the job's fragments are
/// traced (see `corex_core::trace`). Under differential privacy the Poisson samples
/// and the noise come from a generator seeded by the operating system, which nobody else can
/// know.
pub(crate) fn compute(
    backend: &Backend,
    job: &JobSpec,
    parameters: &[f32],
    dataset: &Dataset,
    indices: Vec<u32>,
    variant: Variant,
) -> Result<Computed, NodeError> {
    let (work, spec) = (&job.work, &job.model);
    let compute_error = |error: corex_ml::MlError| NodeError::Compute(error.to_string());
    let untraced = |output: FragmentOutput, indices: Vec<u32>| Computed {
        output,
        batches: vec![indices],
        trace: None,
    };
    let skip_segment = matches!(variant, Variant::SkipSegment);
    match (variant, work) {
        (Variant::Private(plan), _) => {
            let mut rng = ChaCha20Rng::from_seed(corex_net::random_bytes::<32>()?);
            let steps = corex_ml::compute_private_local_steps(
                spec, parameters, dataset, &indices, &plan, &mut rng,
            )
            .map_err(compute_error)?;
            return Ok(Computed {
                output: steps.output.into(),
                batches: steps.batches,
                trace: None,
            });
        }
        (Variant::Segment([first, end]), WorkSpec::LocalSteps { steps, inner }) => {
            let output = corex_ml::replay_segment(
                backend,
                spec,
                parameters,
                dataset,
                &indices,
                *steps,
                inner,
                first..end,
            )
            .map_err(compute_error)?;
            return Ok(untraced(output.into(), indices));
        }
        (Variant::Segment(_), _) => {
            return Err(NodeError::Compute(
                "a segment task for work other than local steps".into(),
            ));
        }
        (Variant::Plain | Variant::SkipSegment, _) => {}
    }
    let bounds = segment_bounds(work, &job.compression, indices.len());
    let (WorkSpec::LocalSteps { steps, inner }, Some(bounds)) = (work, bounds) else {
        let output = corex_ml::run_fragment(backend, work, spec, parameters, dataset, &indices)
            .map_err(compute_error)?;
        return Ok(untraced(output, indices));
    };
    let (output, trace) = if skip_segment {
        let skipped = crate::adversary::skip_second_segment(
            backend, spec, parameters, dataset, &indices, *steps, inner, &bounds,
        )
        .map_err(compute_error)?;
        let output = FragmentOutput {
            values: skipped.result,
            loss: skipped.loss,
            samples: indices.len() as u32,
        };
        (output, Trace::new(skipped.checkpoints, skipped.losses))
    } else {
        let interior = &bounds[1..bounds.len() - 1];
        let traced = corex_ml::compute_traced_local_steps(
            backend, spec, parameters, dataset, &indices, *steps, inner, interior,
        )
        .map_err(compute_error)?;
        let trace = Trace::new(
            interior.iter().copied().zip(traced.checkpoints).collect(),
            traced.losses,
        );
        (traced.output.into(), trace)
    };
    Ok(Computed {
        output,
        batches: vec![indices],
        trace: Some(trace),
    })
}
