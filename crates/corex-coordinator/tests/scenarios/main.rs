//! The coordinator's scenario tests: a real coordinator on 127.0.0.1 over TLS with node
//! agents, one module per scenario (adversaries, audits, restarts, attacks, families, the
//! explorer, …). One binary, so that the suite links burn, wgpu and axum once rather than
//! once per scenario; run one with `cargo test --release -p corex-coordinator --test
//! scenarios NAME::`.
#![allow(clippy::unwrap_used)]

mod adversaries;
mod audit_seeds;
mod audit_share;
mod bad_input;
mod behaviour;
mod calibration;
mod common;
mod compressed_updates;
mod dataset_transfer;
mod emission_attack;
mod equivalence;
mod explorer;
mod families;
mod federated;
mod holder_consent;
mod job_watch;
mod lease_expiry;
mod lease_order;
mod mixed_backends;
mod output_kinds;
mod owner_attacks;
mod prefix_audits;
mod restart;
mod segment_audits;
mod sybil;
mod transformer_cheaters;
mod transport_attacks;
mod uploads;
