//! The request journal: when switched on (`CoordinatorConfig::journal`), every request the
//! coordinator receives is appended to `journal.log` in its data directory as it arrived:
//! `METHOD PATH BODY-LENGTH\n`, the body bytes, `\n`. An auditor (or the privacy test) can
//! then check exactly what reached the coordinator, for example that a federated job sent it
//! no raw sample of any holder's data.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::CoordinatorError;

/// The journal file's name inside the coordinator's data directory.
pub const JOURNAL_FILE: &str = "journal.log";

pub struct Journal {
    file: Mutex<File>,
    max_body_bytes: usize,
}

impl Journal {
    pub fn open(data_dir: &Path, max_body_bytes: usize) -> Result<Self, CoordinatorError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join(JOURNAL_FILE))
            .map_err(|error| CoordinatorError::Storage(format!("opening the journal: {error}")))?;
        Ok(Self {
            file: Mutex::new(file),
            max_body_bytes,
        })
    }

    fn append(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<()> {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut record = format!("{method} {path} {}\n", body.len()).into_bytes();
        record.extend_from_slice(body);
        record.push(b'\n');
        file.write_all(&record)
    }
}

/// Middleware: journals the request, then hands it on unchanged. A body over the size limit
/// is refused here as the handlers would refuse it.
pub async fn record(State(journal): State<Arc<Journal>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, journal.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return CoordinatorError::BodyTooLarge {
                limit: journal.max_body_bytes,
            }
            .into_response();
        }
    };
    if let Err(error) = journal.append(parts.method.as_str(), parts.uri.path(), &bytes) {
        tracing::error!(%error, "could not append to the request journal");
        return CoordinatorError::Storage("the request journal is not writable".into())
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
