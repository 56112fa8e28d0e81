//! Scheduling, pure: the slicer that cuts rounds into fragments (sized to the nodes, with
//! adaptive granularity), the lease book that hands them to nodes (in priority order when work
//! is scarce, and within a round to the node that would finish each first), the balancer that
//! matches fragments of many sizes to nodes of many speeds, federated rounds (one fragment per
//! data holder), and device tiers with behaviour analysis. No I/O, no clock, no sockets: time
//! comes in as an argument.

pub mod balance;
pub mod earliest_finish;
pub mod federated;
pub mod granularity;
pub mod lease_order;
pub mod leases;
pub mod slicer;
pub mod tiers;

pub use balance::{Assignment, Balancer, Completion, Ticket, duration_ms};
pub use earliest_finish::{Worker, earliest_finish_pick};
pub use federated::slice_federated_round;
pub use granularity::plan_sizes;
pub use lease_order::WaitingNodes;
pub use leases::{Lease, LeaseBook, LeaseError, speculative_copy_due_ms, straggler_due_ms};
pub use slicer::{epoch_order, pass_batch, round_batch, slice_round};
pub use tiers::{Behaviour, DeviceTier, Standing, TierPolicy, efficiency_ppm, verified_speed};
