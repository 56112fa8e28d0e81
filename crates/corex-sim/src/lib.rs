//! `corex-sim`: the pure scheduler driven with hundreds of thousands of virtual nodes of mixed
//! speeds (edge devices, CPUs, GPUs, HPC servers) that leave in the middle of fragments and
//! come back. Everything is seeded (ChaCha8), so a run is a pure function of its config.
//!
//! - `population`: virtual nodes and fragment costs.
//! - `policy`: the schedulers under test: Corex's [`Balancer`](corex_scheduler::Balancer) and
//!   a first-come-first-served baseline.
//! - `run`: the discrete-event loop and its [`SimReport`] (assignments, makespan against the
//!   ideal, fairness of each node's share of the work against its share of the capacity).

pub mod core_sim;
mod policy;
mod population;
mod run;

pub use policy::{Fifo, Policy, Scheduler};
pub use population::{Population, SpeedClass, VirtualNode};
pub use run::{SimConfig, SimReport, simulate};
