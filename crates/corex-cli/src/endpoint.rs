//! `endpoint.json`: how a coordinator tells local tools where it listens and what to pin.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub const ENDPOINT_FILE: &str = "endpoint.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub url: String,
    pub fingerprint: String,
    pub coordinator: String,
}

impl Endpoint {
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(ENDPOINT_FILE);
        let temporary = dir.join(format!("{ENDPOINT_FILE}.tmp"));
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(ENDPOINT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", path.display()))?,
            )),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }
}
