//! `corex-sim`: two seeded simulations, each a pure function of its config (ChaCha8).
//!
//! - [`core_sim`]: the real coordinator core, with its real stores, ledger and ML, driven by
//!   thousands of virtual nodes with seeded faults, invariants checked after every step.
//!
//! The scheduler study: the pure [`Balancer`](corex_scheduler::Balancer), which the live
//! coordinator does not use, driven with hundreds of thousands of virtual nodes of mixed speeds
//! (edge devices, CPUs, GPUs, HPC servers) that leave in the middle of fragments and come back:
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
