//! The error type of `corex-net`.

use std::path::PathBuf;

use corex_core::messages::ApiError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("request to {url} failed: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("{url} answered {status} {}: {}", .error.error, .error.message)]
    Api {
        url: String,
        status: u16,
        error: ApiError,
    },
    #[error("{url}: cannot decode the answer: {reason}")]
    Decode { url: String, reason: String },
    #[error("integrity check failed: {0}")]
    Integrity(String),
    #[error("no randomness available: {0}")]
    Randomness(String),
}

impl NetError {
    /// The API error code, when the coordinator answered with one.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            Self::Api { error, .. } => Some(&error.error),
            _ => None,
        }
    }

    /// Whether retrying the same request later can succeed (connection trouble, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
