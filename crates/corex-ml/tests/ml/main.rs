//! Integration tests of `corex-ml`, one binary (burn links once) with a module per concern.
#![allow(clippy::unwrap_used)]

mod common;
mod dataset;
mod dataset_subset;
mod digits;
mod export;
mod families;
mod gradient;
mod inference;
mod invalid;
mod local_steps;
mod privacy;
mod private_steps;
mod trainer;
mod transform;
