//! Error types of `corex-core`: spec validation and decoding of untrusted bytes.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("invalid spec: {0}")]
    Invalid(String),
    #[error("spec is not valid TOML: {0}")]
    Toml(String),
    #[error(
        "job is over the coordinator's budget: it needs {value} against {limit_name} = {limit}"
    )]
    OverBudget {
        limit_name: &'static str,
        value: u128,
        limit: u128,
    },
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("bad hex: {0}")]
    Hex(String),
    #[error("bad base64: {0}")]
    Base64(String),
    #[error("bad key: {0}")]
    Key(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("malformed body: {0}")]
    Body(String),
    #[error("tensor byte length {0} is not a multiple of 4")]
    TensorLength(usize),
}
