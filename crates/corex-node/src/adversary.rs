//! The adversary kit: ways a node can cheat, for tests and `corex devnet --adversaries`. Each
//! one changes only what the node submits; the protocol around it stays honest, so what the
//! coordinator sees is exactly what a real cheater would send.

use std::path::PathBuf;
use std::str::FromStr;

use corex_core::messages::DeviceReport;
use corex_core::{ComputeBackend, GpuAdapter, Hash, ModelSpec, OptimizerSpec};
use corex_ml::{Backend, Dataset, MlError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adversary {
    /// Random values in [−1, 1) instead of the result (a gradient, logits, transformed rows).
    Random,
    /// All zeros.
    Zeros,
    /// The true result × 10.
    Scaled,
    /// The true result, negated.
    SignFlipped,
    /// Another node's result (shared through the collusion directory).
    Copy,
    /// Its own previous result, resubmitted for the new fragment.
    Old,
    /// Honest, except for 5 % of fragments where it skips the work and sends random values.
    Lazy,
    /// Claims a fast GPU it does not have (an H100 behind the wgpu backend, 60 TFLOP/s); computes
    /// honestly on what it has.
    FakeGpu,
    /// Answers the capability challenge at full speed, then computes every fragment 10×
    /// slower (a strong machine takes the benchmark, a weak one does the work); honest results.
    BaitAndSwitch,
    /// On traced local-steps fragments (see `corex_core::trace`), skips the steps of the second
    /// segment (its checkpoint there repeats the one before, its losses repeat the last one)
    /// and computes the rest honestly from there: a quarter of the work saved, a result close
    /// to the honest one, and a trace that agrees everywhere but the skipped segment. Honest
    /// on any other work.
    SkipSegment,
    /// On jobs with compressed updates (see `corex_core::compression`), sends a faithful
    /// compression of its update plus error feedback but commits to an empty state after it
    /// (zeros), as if it had kept nothing back: what it claims no longer adds up to its work.
    /// Honest on any other work.
    FalseFeedback,
}

/// How much slower than its challenge a bait-and-switch node computes its fragments.
pub const BAIT_AND_SWITCH_SLOWDOWN: u32 = 10;

pub const ALL: [Adversary; 11] = [
    Adversary::Random,
    Adversary::Zeros,
    Adversary::Scaled,
    Adversary::SignFlipped,
    Adversary::Copy,
    Adversary::Old,
    Adversary::Lazy,
    Adversary::FakeGpu,
    Adversary::BaitAndSwitch,
    Adversary::SkipSegment,
    Adversary::FalseFeedback,
];

impl Adversary {
    pub fn name(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Zeros => "zeros",
            Self::Scaled => "scaled",
            Self::SignFlipped => "sign-flipped",
            Self::Copy => "copy",
            Self::Old => "old",
            Self::Lazy => "lazy",
            Self::FakeGpu => "fake-gpu",
            Self::BaitAndSwitch => "bait-and-switch",
            Self::SkipSegment => "skip-segment",
            Self::FalseFeedback => "false-feedback",
        }
    }

    /// Whether this adversary skips the computation of `fragment` (and fakes it).
    pub fn skips(self, fragment: &Hash) -> bool {
        match self {
            Self::Random | Self::Zeros | Self::Copy | Self::Old => true,
            // One fragment in twenty, picked by the fragment id (13/256 ≈ 5 %).
            Self::Lazy => fragment.0[0] < 13,
            Self::Scaled
            | Self::SignFlipped
            | Self::FakeGpu
            | Self::BaitAndSwitch
            | Self::SkipSegment
            | Self::FalseFeedback => false,
        }
    }
}

impl FromStr for Adversary {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ALL.into_iter()
            .find(|adversary| adversary.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL.iter().map(|a| a.name()).collect();
                format!("unknown adversary '{text}'; one of: {}", names.join(", "))
            })
    }
}

/// What an adversarial node remembers between fragments.
#[derive(Debug, Default)]
pub struct AdversaryState {
    pub previous: Option<Vec<f32>>,
    /// Where colluding adversaries leave their results for each other.
    pub collusion_dir: Option<PathBuf>,
}

/// The result an adversary submits for `fragment`. `honest` is the true result when the
/// adversary computed it; `len` is a correct result's length (the model's parameter count, or
/// samples × width for output work), which every fake has, so that only audits can tell.
pub fn tamper(
    adversary: Adversary,
    state: &mut AdversaryState,
    fragment: &Hash,
    honest: Option<Vec<f32>>,
    len: usize,
) -> Vec<f32> {
    let random = || {
        let mut rng = ChaCha8Rng::from_seed(fragment.0);
        (0..len)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect::<Vec<_>>()
    };
    let submitted = match (adversary, honest) {
        (Adversary::Scaled, Some(g)) => g.into_iter().map(|v| v * 10.0).collect(),
        (Adversary::SignFlipped, Some(g)) => g.into_iter().map(|v| -v).collect(),
        (
            Adversary::FakeGpu
            | Adversary::Lazy
            | Adversary::BaitAndSwitch
            | Adversary::SkipSegment
            | Adversary::FalseFeedback,
            Some(g),
        ) => g,
        (Adversary::Zeros, _) => vec![0.0; len],
        (Adversary::Old, _) => state
            .previous
            .clone()
            .filter(|previous| previous.len() == len)
            .unwrap_or_else(random),
        (Adversary::Copy, _) => read_peer(state, len).unwrap_or_else(random),
        _ => random(),
    };
    state.previous = Some(submitted.clone());
    submitted
}

/// What a fake-GPU node reports: an H100 on the wgpu backend and 60 TFLOP/s, whatever it has.
pub fn claim_a_gpu(report: &mut DeviceReport) {
    report.gpus = vec!["NVIDIA H100 80GB HBM3".into()];
    report.claimed_gflops = Some(60_000);
    report.backend = ComputeBackend::Wgpu;
    report.adapter = Some(GpuAdapter {
        name: "NVIDIA H100 80GB HBM3".into(),
        vendor_id: 0x10de,
        device_id: 0x2330,
        kind: "discrete".into(),
        driver: "NVIDIA 550.54.15".into(),
        api: "vulkan".into(),
    });
}

/// A skip-segment adversary's local steps over segment `bounds` (see [`Adversary::SkipSegment`]):
/// `(result, loss, checkpoints at the interior bounds, step losses)`, a trace consistent
/// with itself everywhere but the skipped second segment.
#[allow(clippy::too_many_arguments)]
pub fn skip_second_segment(
    backend: &Backend,
    spec: &ModelSpec,
    params: &[f32],
    data: &Dataset,
    indices: &[u32],
    steps: u32,
    inner: &OptimizerSpec,
    bounds: &[u32],
) -> Result<SkippedSteps, MlError> {
    let mut weights = params.to_vec();
    let mut losses: Vec<f32> = Vec::with_capacity(steps as usize);
    let mut checkpoints = Vec::new();
    for (segment, range) in bounds.windows(2).enumerate() {
        if segment == 1 {
            let last = losses.last().copied().unwrap_or_default();
            losses.extend(std::iter::repeat_n(last, (range[1] - range[0]) as usize));
        } else {
            let (end, segment_losses) = corex_ml::replay_local_steps(
                backend,
                spec,
                &weights,
                data,
                indices,
                steps,
                inner,
                range[0]..range[1],
            )?;
            weights = end;
            losses.extend(segment_losses);
        }
        if range[1] != steps {
            checkpoints.push((range[1], weights.clone()));
        }
    }
    let result = corex_ml::displacement(params, &weights);
    Ok(SkippedSteps {
        result,
        loss: corex_core::trace::mean_step_loss(&losses),
        checkpoints,
        losses,
    })
}

/// What [`skip_second_segment`] computed.
pub struct SkippedSteps {
    pub result: Vec<f32>,
    pub loss: f32,
    pub checkpoints: Vec<(u32, Vec<f32>)>,
    pub losses: Vec<f32>,
}

/// Leaves `gradient` for colluding nodes to copy.
pub fn share(state: &AdversaryState, gradient: &[f32]) {
    if let Some(dir) = &state.collusion_dir {
        let bytes: Vec<u8> = gradient.iter().flat_map(|v| v.to_le_bytes()).collect();
        let temporary = dir.join(format!("shared.{}.tmp", std::process::id()));
        if std::fs::write(&temporary, bytes).is_ok() {
            let _ = std::fs::rename(&temporary, dir.join("shared.bin"));
        }
    }
}

fn read_peer(state: &AdversaryState, len: usize) -> Option<Vec<f32>> {
    let bytes = std::fs::read(state.collusion_dir.as_ref()?.join("shared.bin")).ok()?;
    let values = corex_core::tensor::bytes_to_f32s(&bytes).ok()?;
    (values.len() == len).then_some(values)
}
