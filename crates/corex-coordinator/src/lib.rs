//! The coordinator: node registry, jobs and rounds, fragment leases with deadlines, result
//! intake with full validation (results inline or uploaded as resumable chunks), aggregation,
//! model versions published by hash, the outputs of inference and transform jobs, and the
//! HTTPS API that serves all of it.
//!
//! `engine` and `job_run` hold the state and take time as an argument; `api` and `server` are
//! the I/O shell around them.

pub mod admission;
pub mod api;
pub mod auditors;
pub mod blobs;
pub mod config;
pub mod datasets;
pub mod durability;
pub mod engine;
pub mod error;
pub mod federated;
pub mod job_run;
pub mod jobs_api;
pub mod journal;
pub mod lease_order;
pub mod ledger;
pub mod ledger_api;
pub mod nonce;
pub mod outputs;
pub mod prepared;
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
