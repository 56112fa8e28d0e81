//! Ledger tests: refusals, economics and properties, on the pure chain.

#![allow(clippy::unwrap_used)]

mod economics;
mod invalid;
mod properties;
mod seeds;
mod support;
mod time;
