//! Why a verification input was refused.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum VerifyError {
    #[error("no vectors to work on")]
    Empty,
    #[error("vector {index} has {got} values, expected {expected}")]
    Shape {
        index: usize,
        expected: usize,
        got: usize,
    },
    #[error("invalid parameter: {0}")]
    Parameter(String),
}
