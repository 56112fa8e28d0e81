//! The coordinator: node registry, jobs and rounds, fragment leases with deadlines, result
//! intake with full validation (results inline or uploaded as resumable chunks), aggregation,
//! model versions published by hash, the outputs of inference and transform jobs, and the
//! HTTPS API that serves all of it.
//!
//! `core` is the coordinator as a sans-I/O state machine (event in, commands out) over the
//! state in `engine` and `job_run`; `runtime` runs it on its own thread and carries out its
//! commands; `api` and `server` are the HTTPS shell around them.

pub mod admission;
pub mod api;
pub mod auditors;
pub mod blobs;
pub mod compute_pool;
pub mod config;
pub mod core;
pub mod datasets;
pub mod durability;
pub mod engine;
pub mod error;
pub mod explorer;
pub mod federated;
pub mod job_run;
pub mod jobs_api;
pub mod journal;
pub mod lease_order;
pub mod ledger;
pub mod ledger_api;
pub mod metrics;
pub mod nonce;
pub mod outputs;
pub mod prepared;
pub mod runtime;
pub mod server;
pub mod store;
pub mod transport;
pub mod uploads;
pub mod uploads_api;
pub mod verification;

pub use admission::{Admission, AdmissionPolicy};
pub use config::CoordinatorConfig;
pub use engine::Coordinator;
pub use error::CoordinatorError;
pub use server::run;
pub use transport::TransportLimits;
