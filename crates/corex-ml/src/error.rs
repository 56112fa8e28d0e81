//! The crate's single error type, [`MlError`]: every fallible operation of `corex-ml` reports
//! one of these variants, with enough context (indices, lengths, line numbers) to act on.

use thiserror::Error;

/// Everything that can go wrong in `corex-ml`. Bad input never panics; it lands here.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MlError {
    /// A flat parameter or gradient vector does not have the model's parameter count.
    #[error("expected {expected} parameters, got {got}")]
    ParameterCount { expected: usize, got: usize },
    /// An output result (logits, transformed rows) does not have `samples × width` values.
    #[error("expected {expected} output values for {samples} samples, got {got}")]
    OutputLength {
        expected: usize,
        got: usize,
        samples: usize,
    },
    /// A parameter or gradient value is NaN or infinite (first offending index).
    #[error("value at index {index} is not finite")]
    NonFinite { index: usize },
    /// A sample index points outside the dataset.
    #[error("sample index {index} is out of range for a dataset of {len} samples")]
    SampleIndex { index: u32, len: usize },
    /// A list that must not be empty (sample indices, gradient parts, ...) is empty.
    #[error("empty input: {0}")]
    Empty(String),
    /// A model or optimizer spec the crate cannot run.
    #[error("invalid spec: {0}")]
    Spec(String),
    /// A CSV file that cannot be read or parsed (message carries the line number).
    #[error("CSV error: {0}")]
    Csv(String),
    /// A dataset that is inconsistent on its own or with the model spec.
    #[error("dataset error: {0}")]
    Dataset(String),
    /// A safetensors buffer that cannot be written or read back.
    #[error("safetensors error: {0}")]
    Safetensors(String),
    /// Mismatched lengths or tensor shapes.
    #[error("shape error: {0}")]
    Shape(String),
    /// Differential-privacy parameters the accountant or the private steps cannot use.
    #[error("invalid privacy parameters: {0}")]
    Privacy(String),
    /// The tensor backend failed (reading a tensor back, a missing gradient, ...).
    #[error("backend error: {0}")]
    Backend(String),
}
