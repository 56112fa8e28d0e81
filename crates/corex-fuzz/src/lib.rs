//! Fuzz targets for every decoder of untrusted bytes in Corex.
//!
//! In: arbitrary bytes. Out: nothing, or a panic. Each target is one `pub fn(&[u8])` that feeds
//! the bytes to a real decoder (and, where the decoded value drives a state machine, applies it)
//! and checks an oracle with `assert!`: no input may panic a decoder, and what decodes must keep
//! the invariants the decoder's docs promise (canonical forms round-trip, the ledger's supply is
//! conserved, the upload store stays within its byte limits and agrees with a reference model).
//! A panic is the only failure signal, so the same functions serve both engines:
//!
//! - the CI short run (`tests/short_run.rs`): every target over its seeds and a few thousand
//!   seeded mutations of them ([`mutate`]), under `cargo test`;
//! - the long run with libFuzzer: `fuzz/` at the repository root has one `fuzz_targets/<name>.rs`
//!   per target, calling the function here; `examples/write_seeds.rs` writes the seed corpora.
//!
//! Adding a target: one function (and its seeds) here, one line in [`TARGETS`], one file in
//! `fuzz/fuzz_targets/`, one name in the short run's list.
//!
//! | module | targets |
//! | --- | --- |
//! | `signature` | request signature headers (`Signature`, `Signature-Input`, `Content-Digest`) |
//! | `frame` | result frames, f32 tensors |
//! | `data` | dataset bytes, dataset CSV, safetensors models |
//! | `ledger` | signed transactions and blocks, applied to a chain |
//! | `uploads` | the coordinator's upload store as an operation sequence |
//! | `messages` | protocol messages the coordinator and nodes decode from JSON |
//! | `spec` | job specs in JSON and TOML, with "validate ⇒ within the budget" as the oracle |

mod data;
mod frame;
mod ledger;
mod messages;
pub mod mutate;
mod signature;
mod spec;
mod uploads;

pub use data::{dataset_bytes, dataset_csv, safetensors};
pub use frame::{result_frame, tensor};
pub use ledger::ledger;
pub use messages::messages;
pub use signature::request_signature;
pub use spec::job_spec;
pub use uploads::upload_store;

/// A fuzz target: its name (the file in `fuzz/fuzz_targets/`), the function, and valid inputs
/// built by the real encoders, to start from.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target, in the order the docs list them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "request_signature",
        run: request_signature,
        seeds: signature::seeds,
    },
    Target {
        name: "result_frame",
        run: result_frame,
        seeds: frame::frame_seeds,
    },
    Target {
        name: "tensor",
        run: tensor,
        seeds: frame::tensor_seeds,
    },
    Target {
        name: "dataset_bytes",
        run: dataset_bytes,
        seeds: data::dataset_bytes_seeds,
    },
    Target {
        name: "dataset_csv",
        run: dataset_csv,
        seeds: data::dataset_csv_seeds,
    },
    Target {
        name: "safetensors",
        run: safetensors,
        seeds: data::safetensors_seeds,
    },
    Target {
        name: "ledger",
        run: ledger,
        seeds: ledger::seeds,
    },
    Target {
        name: "upload_store",
        run: upload_store,
        seeds: uploads::seeds,
    },
    Target {
        name: "messages",
        run: messages,
        seeds: messages::seeds,
    },
    Target {
        name: "job_spec",
        run: job_spec,
        seeds: spec::seeds,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|target| target.name == name)
}
