//! The node agent: detects its device, registers, and runs the lease → fetch → compute →
//! submit loop against a coordinator over signed, pinned TLS; and measures its device
//! (`bench`).

pub mod adversary;
pub mod agent;
pub mod bench;
mod checkpoints;
pub mod device;
pub mod error;
mod feedback;
mod fragment_compute;
pub mod holder;
mod latency;
mod pacing;
pub mod telemetry;

pub use adversary::Adversary;
pub use agent::{DatasetTraffic, NodeAgent, NodeConfig, NodeRunSummary};
pub use error::NodeError;
pub use holder::HolderPolicy;
pub use latency::{LatencySummary, nearest_rank};
pub use telemetry::{NodeStatusLine, NodeTelemetry};
