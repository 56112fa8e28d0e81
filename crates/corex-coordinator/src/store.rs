//! The coordinator's own durable state, in `DATA_DIR/coordinator.redb` beside the ledger's
//! `ledger.redb`: the job submission sequence, so that a job id (the hash of the spec, the owner
//! and this sequence) never repeats across restarts and never collides with a finished job's
//! files. Every write is one redb transaction, committed (and so fsynced) before the caller
//! acknowledges anything that depends on it. Files beside it (finished jobs' reports, weights
//! and outputs) are written atomically: [`write_atomically`].

use std::io::Write;
use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use crate::error::CoordinatorError;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_JOB_SEQUENCE: &str = "next_job_sequence";

/// File name of the store in the data directory.
pub const STATE_FILE: &str = "coordinator.redb";

pub struct StateStore {
    db: Database,
}

fn storage(error: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Storage(format!("{STATE_FILE}: {error}"))
}

impl StateStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, CoordinatorError> {
        let db = Database::create(dir.join(STATE_FILE)).map_err(storage)?;
        Ok(Self { db })
    }

    /// Takes the next job sequence number, durably: once this returns, no later call, in
    /// this process or after a restart (even after kill -9), returns it again.
    pub fn take_job_sequence(&self) -> Result<u64, CoordinatorError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let sequence = {
            let mut meta = txn.open_table(META).map_err(storage)?;
            let sequence = meta
                .get(NEXT_JOB_SEQUENCE)
                .map_err(storage)?
                .map_or(0, |value| value.value());
            let next = sequence
                .checked_add(1)
                .ok_or_else(|| storage("the job sequence is exhausted"))?;
            meta.insert(NEXT_JOB_SEQUENCE, next).map_err(storage)?;
            sequence
        };
        txn.commit().map_err(storage)?;
        Ok(sequence)
    }
}

/// Writes `bytes` to `dir/name` so that a crash at any moment leaves either the old file or
/// the whole new one: a temporary file, fsynced, renamed over the name, then the directory
/// fsynced so that the rename itself survives. Blocking: call it off the async threads.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let partial = dir.join(format!(".{name}.partial"));
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_sequences_never_repeat_across_reopenings() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let taken: Vec<u64> = (0..2)
            .flat_map(|_| {
                let store = StateStore::open(dir.path()).expect("the store opens");
                (0..3)
                    .map(|_| store.take_job_sequence().expect("a sequence number"))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(taken, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_no_partial() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        write_atomically(dir.path(), "report.json", b"first").expect("written");
        write_atomically(dir.path(), "report.json", b"second").expect("rewritten");
        assert_eq!(
            std::fs::read(dir.path().join("report.json")).expect("read"),
            b"second"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("listed")
            .map(|entry| entry.expect("an entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("report.json")]);
    }
}
