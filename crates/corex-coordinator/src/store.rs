//! The coordinator's own durable state, in `DATA_DIR/coordinator.redb` beside the ledger's
//! `ledger.redb`: the job submission sequence, so that a job id (the hash of the spec, the owner
//! and this sequence) never repeats across restarts and never collides with a finished job's
//! files; every job's latest checkpoint (`job_run::checkpoint`), JSON, one record per closed
//! round beside it; and every node's standing. Every write is one redb transaction, committed (and so
//! fsynced) before the caller acknowledges anything that depends on it. Files beside it
//! (finished jobs' reports, weights and outputs, kept datasets, running jobs' model and
//! optimizer state, the open rounds' accepted results) are written atomically:
//! [`write_atomically`].

use std::io::Write;
use std::path::Path;

use corex_core::NodeId;
use corex_core::messages::NodeInfo;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::CoordinatorError;
use crate::job_run::JobCheckpoint;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Job id → its latest checkpoint (JSON).
const JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jobs");

/// (job id, position in its history) → a closed round's record (JSON).
const JOB_ROUNDS: TableDefinition<(&[u8], u32), &[u8]> = TableDefinition::new("job_rounds");

/// Job id → how far its stored checkpoint is (`completed_rounds × 2 + ended`): a checkpoint
/// taken earlier never replaces one taken later, whatever order their writes come in.
const JOB_MARKS: TableDefinition<&[u8], u64> = TableDefinition::new("job_marks");

/// Node id → its standing (`StoredNode`, JSON).
const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("nodes");

/// What the coordinator knows of a node that outlives a restart: its registration (device,
/// the capability it proved) and its audit record, which sets its audit rate and its ban.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredNode {
    pub node: NodeId,
    pub info: NodeInfo,
    pub audits_passed: u64,
    pub audits_failed: u64,
    /// When the core took this snapshot (its counter of snapshots, which a restart carries
    /// on): a snapshot never replaces a later one, whatever order their writes come in.
    #[serde(default)]
    pub taken: u64,
}

/// A job as stored: its checkpoint, with its whole history.
pub struct StoredJob {
    pub checkpoint: JobCheckpoint,
}
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

    /// Replaces `checkpoint`'s job in one transaction: its checkpoint, and the round records
    /// it brings. Durable when this returns. A checkpoint behind the stored one is ignored:
    /// returns whether this one was stored.
    pub fn save_job(&self, checkpoint: &JobCheckpoint) -> Result<bool, CoordinatorError> {
        let json = serde_json::to_vec(checkpoint).map_err(storage)?;
        let id = checkpoint.id.as_bytes().as_slice();
        let ended = checkpoint.state != corex_core::messages::JobState::Running;
        let mark = u64::from(checkpoint.completed_rounds) * 2 + u64::from(ended);
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut marks = txn.open_table(JOB_MARKS).map_err(storage)?;
            let stored = marks.get(id).map_err(storage)?.map(|value| value.value());
            if stored.is_some_and(|stored| stored > mark) {
                return Ok(false);
            }
            marks.insert(id, mark).map_err(storage)?;
            let mut jobs = txn.open_table(JOBS).map_err(storage)?;
            jobs.insert(id, json.as_slice()).map_err(storage)?;
            let mut rounds = txn.open_table(JOB_ROUNDS).map_err(storage)?;
            for (offset, record) in checkpoint.history.iter().enumerate() {
                let position = u32::try_from(checkpoint.history_from + offset)
                    .map_err(|_| storage("a job's history is too long"))?;
                let json = serde_json::to_vec(record).map_err(storage)?;
                rounds
                    .insert((id, position), json.as_slice())
                    .map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        Ok(true)
    }

    /// Stores `nodes`' standing in one transaction, each unless a later snapshot of it is
    /// stored already; durable when this returns.
    pub fn save_nodes(&self, nodes: &[StoredNode]) -> Result<(), CoordinatorError> {
        if nodes.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(NODES).map_err(storage)?;
            for node in nodes {
                let stored_later = table
                    .get(node.node.0.as_slice())
                    .map_err(storage)?
                    .and_then(|stored| serde_json::from_slice::<StoredNode>(stored.value()).ok())
                    .is_some_and(|stored| stored.taken > node.taken);
                if stored_later {
                    continue;
                }
                let json = serde_json::to_vec(node).map_err(storage)?;
                table
                    .insert(node.node.0.as_slice(), json.as_slice())
                    .map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// Every stored node's standing.
    pub fn load_nodes(&self) -> Result<Vec<StoredNode>, CoordinatorError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(NODES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(storage(error)),
        };
        let mut nodes = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            let node: StoredNode = serde_json::from_slice(value.value())
                .map_err(|error| storage(format!("a node's standing: {error}")))?;
            if key.value() != node.node.0.as_slice() {
                return Err(storage(format!(
                    "node {} is stored under another id",
                    node.node
                )));
            }
            nodes.push(node);
        }
        Ok(nodes)
    }

    /// Every stored job, in submission order.
    pub fn load_jobs(&self) -> Result<Vec<StoredJob>, CoordinatorError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let jobs = match txn.open_table(JOBS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(storage(error)),
        };
        let rounds = txn.open_table(JOB_ROUNDS).ok();
        let mut stored = Vec::new();
        for entry in jobs.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            let checkpoint: JobCheckpoint = serde_json::from_slice(value.value())
                .map_err(|error| storage(format!("a job checkpoint: {error}")))?;
            let id = key.value();
            if id != checkpoint.id.as_bytes().as_slice() {
                return Err(storage(format!(
                    "job {} is stored under another id",
                    checkpoint.id
                )));
            }
            let mut checkpoint = checkpoint;
            if let Some(rounds) = &rounds {
                for entry in rounds.range((id, 0)..=(id, u32::MAX)).map_err(storage)? {
                    let (_, value) = entry.map_err(storage)?;
                    let record = serde_json::from_slice(value.value())
                        .map_err(|error| storage(format!("a round record: {error}")))?;
                    checkpoint.history.push(record);
                }
            }
            stored.push(StoredJob { checkpoint });
        }
        stored.sort_by_key(|job| job.checkpoint.sequence);
        Ok(stored)
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

    #[test]
    fn an_earlier_standing_snapshot_never_replaces_a_later_one() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = StateStore::open(dir.path()).expect("opened");
        let node = NodeId([7; 32]);
        let snapshot = |taken: u64, audits_failed: u64| StoredNode {
            node,
            info: NodeInfo {
                device: a_device(),
                registered_ms: 0,
                last_seen_ms: 0,
                capability: None,
                endpoint: String::new(),
                observed_mflops: None,
                behaviour_flag: None,
            },
            audits_passed: 0,
            audits_failed,
            taken,
        };
        store.save_nodes(&[snapshot(5, 3)]).expect("stored");
        store.save_nodes(&[snapshot(4, 0)]).expect("answered");
        assert_eq!(store.load_nodes().expect("loaded"), [snapshot(5, 3)]);
        store.save_nodes(&[snapshot(6, 4)]).expect("stored");
        assert_eq!(store.load_nodes().expect("loaded"), [snapshot(6, 4)]);
    }

    fn a_device() -> corex_core::messages::DeviceReport {
        corex_core::messages::DeviceReport {
            hostname: String::new(),
            os: String::new(),
            cpu_model: String::new(),
            logical_cores: 1,
            memory_bytes: 0,
            gpus: Vec::new(),
            compute_threads: 1,
            agent_version: String::new(),
            claimed_gflops: None,
            fingerprint: corex_core::Hash::default(),
            benchmark: None,
            backend: corex_core::ComputeBackend::Cpu,
            adapter: None,
        }
    }
}
