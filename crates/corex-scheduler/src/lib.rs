//! Scheduling, pure: the slicer that cuts rounds into fragments and the lease book that
//! hands them to nodes. No I/O, no clock, no sockets: time comes in as an argument.

pub mod leases;
pub mod slicer;

pub use leases::{Lease, LeaseBook, LeaseError};
pub use slicer::{epoch_order, round_batch, slice_round};
