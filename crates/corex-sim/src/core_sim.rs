//! A deterministic simulation of the real coordinator: its sans-I/O core
//! (`corex_coordinator::core`), its real stores and its real ledger, driven by thousands of
//! virtual nodes in virtual time, with faults drawn from a seed: nodes that crash in the middle
//! of a fragment, network delays, nodes that lie about their results, nodes that lie in the
//! audits they run, and coordinator restarts at any point of a batch of commands (what was
//! persisted stays, what was not is lost, as after a kill -9). The nodes compute their
//! fragments for real (burn), so audits replay real work.
//!
//! After every step (one event into the core, its commands carried out) the invariants hold:
//! no fragment paid twice, no honest node hard-rejected, slashed or banned, the supply exactly
//! 100,000,000 CXT. At the end the job must have finished; its final model is compared with
//! the fault-free run's by the caller ([`simulate_core`] twice). A run is a pure function of
//! its [`CoreSimConfig`]: a failure names its seed, and the same seed fails the same way.
//!
//! What it does not simulate: TLS, request signatures and the transport limits (the edge
//! checks of a result, its hash and signature, do run); capability challenges (the engine
//! tests cover them); virtual nodes are not paced by real CPU time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corex_coordinator::CoordinatorConfig;
use corex_core::messages::RoundRecord;
use corex_core::{Hash, JobSpec, Keypair, ModelSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod agenda;
mod invariants;
mod nodes;
mod process;
mod run;

pub use nodes::Behaviour;
use nodes::SimNode;
use process::Process;
use run::Sim;

/// The faults a run injects, drawn from its seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPlan {
    /// Chance per fragment, in parts per million, that the node holding it crashes before
    /// returning it (it comes back 3 s later; its lease expires meanwhile).
    pub node_crash_ppm: u32,
    /// One-way network delay, drawn uniformly in `[low, high]` virtual milliseconds.
    pub delay_ms: [u64; 2],
    /// Nodes whose own results are all wrong.
    pub liars: usize,
    /// Nodes honest with their own fragments and wrong in every audit task.
    pub lying_auditors: usize,
    /// Coordinator kill -9s, each at a drawn moment, cutting a batch of commands at a drawn
    /// point, followed by a restart from the stores.
    pub coordinator_restarts: u32,
}

impl FaultPlan {
    /// No faults: the reference run.
    pub fn none() -> Self {
        Self {
            node_crash_ppm: 0,
            delay_ms: [1, 1],
            liars: 0,
            lying_auditors: 0,
            coordinator_restarts: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CoreSimConfig {
    pub seed: u64,
    /// Virtual nodes, liars and lying auditors included.
    pub nodes: usize,
    pub rounds: u32,
    /// Fragments of each round.
    pub fragments_per_round: u32,
    pub faults: FaultPlan,
}

/// How many faults a run injected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub node_crashes: u64,
    pub delayed_messages: u64,
    /// Wrong results sent by liars.
    pub lies: u64,
    /// Wrong audit replays sent by lying auditors.
    pub auditor_lies: u64,
    pub coordinator_restarts: u64,
}

#[derive(Debug, Clone)]
pub struct CoreSimReport {
    pub seed: u64,
    pub nodes: usize,
    pub rounds: u32,
    /// Events the core handled.
    pub steps: u64,
    /// Steps after which the invariants were checked, and of those the ones after a new
    /// ledger block (a scan of the supply and of every honest node's standing).
    pub invariant_checks: u64,
    pub ledger_scans: u64,
    pub faults: FaultCounts,
    /// Accepted fragments the ledger paid, each once.
    pub fragments_paid: usize,
    /// Round records refused by the ledger because a restarted coordinator closed the round
    /// again (each is paid once).
    pub duplicate_rounds_refused: u64,
    /// Liars and lying auditors the coordinator banned.
    pub cheaters_banned: usize,
    /// The liars and lying auditors.
    pub cheaters: Vec<(corex_core::NodeId, Behaviour)>,
    pub final_model: Hash,
    /// The job's rounds as recorded: the model each started from, every result's verdict.
    pub history: Vec<RoundRecord>,
    pub virtual_ms: u64,
    pub wall: Duration,
}

/// An invariant that broke, or a job that did not finish: with the seed that reproduces it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("simulation seed {seed} failed at step {step} (virtual {virtual_ms} ms): {what}")]
pub struct SimFailure {
    pub seed: u64,
    pub step: u64,
    pub virtual_ms: u64,
    pub what: String,
}

/// The job every simulated run trains: the digits, a small MLP (64-16-10), one gradient per
/// fragment of 16 samples, plain SGD, evaluated once at the end.
pub fn simulated_job(rounds: u32, fragments_per_round: u32) -> JobSpec {
    let base = JobSpec::digits_gradient();
    JobSpec {
        name: "simulated-digits".into(),
        model: ModelSpec::mlp(64, vec![16], 10),
        optimizer: corex_core::OptimizerSpec::Sgd {
            learning_rate: 0.1,
            momentum: 0.0,
        },
        rounds,
        global_batch: 16 * fragments_per_round,
        fragment_samples: 16,
        eval_every: rounds,
        lease_ms: 2_000,
        ..base
    }
}

/// Where a run is, each time a round closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimProgress {
    pub rounds_closed: u32,
    pub steps: u64,
    pub virtual_ms: u64,
}

/// Runs one simulation (see the module header).
pub fn simulate_core(config: &CoreSimConfig) -> Result<CoreSimReport, SimFailure> {
    simulate_core_observed(config, &mut |_| {})
}

/// [`simulate_core`], telling `on_progress` each time a round closes.
pub fn simulate_core_observed(
    config: &CoreSimConfig,
    on_progress: &mut dyn FnMut(SimProgress),
) -> Result<CoreSimReport, SimFailure> {
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let fail = |step: u64, virtual_ms: u64, what: String| SimFailure {
        seed: config.seed,
        step,
        virtual_ms,
        what,
    };
    let dir = scratch_dir().map_err(|error| fail(0, 0, error))?;
    let dataset = corex_ml::Dataset::digits()
        .map(Arc::new)
        .map_err(|error| fail(0, 0, error.to_string()))?;
    let cheaters = config.faults.liars + config.faults.lying_auditors;
    let nodes: Vec<SimNode> = (0..config.nodes)
        .map(|index| {
            let mut secret = [0u8; 32];
            rng.fill(&mut secret);
            let behaviour = if index < config.faults.liars {
                Behaviour::Liar
            } else if index < cheaters {
                Behaviour::LyingAuditor
            } else {
                Behaviour::Honest
            };
            SimNode::new(
                Keypair::from_secret(secret),
                behaviour,
                rng.random_range(500..5_000),
            )
        })
        .collect();
    let identity = Keypair::from_secret(rng.random());
    let process = Process::new(dir.path(), identity, CoordinatorConfig::one_machine());
    // Each kill -9 comes a drawn time (up to 60 virtual ms: within the next round, often in
    // the middle of its leases, results, audits or close) after a drawn round closed.
    let last_round = config.rounds.saturating_sub(1).max(1);
    let crashes: Vec<(u32, u64)> = (0..config.faults.coordinator_restarts)
        .map(|_| (rng.random_range(0..last_round), rng.random_range(0..60)))
        .collect();
    let spec = simulated_job(config.rounds, config.fragments_per_round);
    let limit_ms = 60_000 + 2_000 * u64::from(config.rounds);
    let mut sim = Sim::new(config, rng, process, nodes, spec, dataset);
    let final_model = sim
        .run(&crashes, limit_ms, on_progress)
        .map_err(|what| fail(sim.steps, sim.now, what))?;
    let cheaters_banned = sim.cheaters_banned();
    let history = sim.history();
    let cheaters = sim.cheaters();
    Ok(CoreSimReport {
        seed: config.seed,
        nodes: config.nodes,
        rounds: config.rounds,
        steps: sim.steps,
        invariant_checks: sim.invariants.steps_checked,
        ledger_scans: sim.invariants.ledger_scans,
        faults: sim.faults.clone(),
        fragments_paid: sim.invariants.paid(),
        duplicate_rounds_refused: sim.duplicate_rounds_refused,
        cheaters_banned,
        cheaters,
        final_model,
        history,
        virtual_ms: sim.now,
        wall: started.elapsed(),
    })
}

/// Where a run keeps its stores: in memory (`/dev/shm`) where there is one, so that the
/// stores' fsyncs cost what they cost the data structures, not a disk.
fn scratch_dir() -> Result<tempfile::TempDir, String> {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("corex-sim-")
            .tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    dir.map_err(|error| format!("no scratch directory: {error}"))
}
