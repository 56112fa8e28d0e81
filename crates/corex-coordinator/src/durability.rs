//! The shell's side of durability: storing a job's checkpoint off the async threads, keeping
//! the data a job needs to be restored, and putting every stored job back when the
//! coordinator opens its data directory.
//!
//! Order of writes for a round's close: the ledger records the round first (the recorder runs
//! behind the close), then the job's checkpoint is stored. A crash between the two restores
//! the job one round back; the round is computed again and its second record is refused by
//! the ledger (rounds of a job go in order), so each round is paid exactly once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corex_core::messages::{JobReport, JobState};
use corex_core::{DatasetSource, Hash, JobSpec};
use corex_ml::Dataset;

use crate::core::Persist;
use crate::engine::Coordinator;
use crate::error::CoordinatorError;
use crate::job_run::{JobCheckpoint, KeptMeta, KeptResult, Progress, SavedProgression};
use crate::prepared::{PreparedData, prepare};
use crate::runtime::Services;
use crate::store::{StateStore, StoredJob, StoredNode, write_atomically};

/// The file a job's raw dataset is kept in (beside its report), when no other copy lasts:
/// an owner's upload or an operator's named file (the built-in digits and packaged datasets
/// are read again from where they came from, and checked against the job's dataset hash).
const KEPT_DATASET: &str = "dataset.bin";

/// How often a checkpoint still waiting for the ledger to record its round says so.
const LEDGER_WAIT: Duration = Duration::from_secs(30);

fn job_dir(data_dir: &Path, job: &Hash) -> std::path::PathBuf {
    data_dir.join("jobs").join(job.to_hex())
}

fn storage(error: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Storage(error.to_string())
}

/// Whether a job's data comes back only from the copy [`keep_dataset`] wrote.
fn kept(spec: &JobSpec) -> bool {
    matches!(
        spec.dataset.source,
        DatasetSource::Uploaded { .. } | DatasetSource::Named { .. }
    )
}

/// Keeps job `job`'s raw dataset on disk when nothing else would give it back after a
/// restart. Blocking: call it off the async threads, before the job is acknowledged.
pub fn keep_dataset(
    data_dir: &Path,
    job: &Hash,
    spec: &JobSpec,
    dataset: &Dataset,
) -> Result<(), CoordinatorError> {
    if !kept(spec) {
        return Ok(());
    }
    let dir = job_dir(data_dir, job);
    std::fs::create_dir_all(&dir).map_err(storage)?;
    write_atomically(&dir, KEPT_DATASET, &dataset.to_bytes()).map_err(storage)
}

/// Where the accepted results of a job's open round are kept, one file per result,
/// `<round>.<index>` (redb costs a good deal of CPU per large value; a file costs a copy).
fn results_dir(data_dir: &Path, job: &Hash) -> std::path::PathBuf {
    data_dir.join("results").join(job.to_hex())
}

/// Keeps an accepted result; durable when this returns. Blocking.
fn keep_result(data_dir: &Path, kept: &KeptResult) -> Result<(), CoordinatorError> {
    let dir = results_dir(data_dir, &kept.job);
    let bytes = kept.encode()?;
    let name = format!("{}.{}", kept.round, kept.index);
    std::fs::create_dir_all(&dir).map_err(storage)?;
    match write_atomically(&dir, &name, &bytes) {
        // The job's last checkpoint dropped the folder meanwhile: the result is no longer
        // needed, but the node is owed a durable answer.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir).map_err(storage)?;
            write_atomically(&dir, &name, &bytes).map_err(storage)
        }
        written => written.map_err(storage),
    }
}

/// Makes what a request changed durable (see `core::Persist`). Blocking.
pub fn persist_now(
    store: &StateStore,
    data_dir: &Path,
    persist: Persist,
) -> Result<(), CoordinatorError> {
    match persist {
        Persist::Standing(nodes) => store.save_nodes(&nodes),
        Persist::Result(kept) => keep_result(data_dir, &kept),
        Persist::Job(checkpoint, saved) => {
            store_checkpoint(store, data_dir, *checkpoint, saved.as_deref(), &[])
        }
    }
}

/// [`persist_now`] off the async threads.
pub async fn persist(services: &Arc<Services>, persist: Persist) -> Result<(), CoordinatorError> {
    let worker = services.clone();
    tokio::task::spawn_blocking(move || persist_now(&worker.store, &worker.data_dir, persist))
        .await
        .map_err(storage)?
}

/// The results kept for round `round` of `job`: (fragment index, what was accepted).
fn kept_results(
    data_dir: &Path,
    job: &Hash,
    round: u32,
) -> Result<Vec<(u32, KeptMeta, Vec<u8>)>, CoordinatorError> {
    let dir = results_dir(data_dir, job);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    for entry in entries {
        let entry = entry.map_err(storage)?;
        let name = entry.file_name();
        let Some((of, index)) = name.to_str().and_then(parse_kept_name) else {
            continue;
        };
        if of != round {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(storage)?;
        let (meta, tensor) = KeptResult::decode(&bytes)?;
        kept.push((index, meta, tensor));
    }
    Ok(kept)
}

/// `<round>.<index>` → (round, index); other names (a partial write) are not results.
fn parse_kept_name(name: &str) -> Option<(u32, u32)> {
    let (round, index) = name.split_once('.')?;
    Some((round.parse().ok()?, index.parse().ok()?))
}

/// Drops the kept results a stored checkpoint no longer needs: those of the rounds it
/// closed, or all of them once the job ended.
fn drop_kept_results(data_dir: &Path, job: &Hash, closed_rounds: u32, ended: bool) {
    let dir = results_dir(data_dir, job);
    if ended {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // Only finished results: a write in progress (`.<name>.partial`) is left to its writer.
        let stale = name
            .to_str()
            .and_then(parse_kept_name)
            .is_some_and(|(round, _)| round < closed_rounds);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The file a running job's progression is kept in, named by the rounds it has done.
fn progression_name(completed_rounds: u32) -> String {
    format!("progression-{completed_rounds}.bin")
}

/// Drops the progression files of `job` of fewer than `below` completed rounds (all of them
/// when `below` is none: the job ended). Never a later one: checkpoints of one job are stored
/// by tasks that may overlap, and an older one's clean-up must not take the file of a newer
/// checkpoint stored meanwhile.
fn drop_progressions(data_dir: &Path, job: &Hash, below: Option<u32>) {
    let Ok(entries) = std::fs::read_dir(job_dir(data_dir, job)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rounds) = name
            .to_str()
            .and_then(|name| name.strip_prefix("progression-")?.strip_suffix(".bin"))
            .and_then(|rounds| rounds.parse::<u32>().ok())
        else {
            continue;
        };
        if below.is_none_or(|below| rounds < below) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Stores a job's checkpoint: `standing`, then a running job's progression as a file beside
/// its report (model and optimizer state are megabytes; redb costs a good deal of CPU per
/// large value), then the checkpoint naming that file and its hash; then drops the files the
/// stored checkpoint no longer needs. Durable when this returns. Blocking.
pub fn store_checkpoint(
    store: &StateStore,
    data_dir: &Path,
    mut checkpoint: JobCheckpoint,
    saved: Option<&SavedProgression>,
    standing: &[StoredNode],
) -> Result<(), CoordinatorError> {
    store.save_nodes(standing)?;
    let ended = checkpoint.state != JobState::Running;
    let id = checkpoint.id;
    if !ended {
        let saved = saved.ok_or_else(|| {
            storage(format!(
                "running job {}'s checkpoint has no progression",
                id.short()
            ))
        })?;
        let bytes = saved.to_bytes();
        let name = progression_name(checkpoint.completed_rounds);
        let dir = job_dir(data_dir, &id);
        std::fs::create_dir_all(&dir).map_err(storage)?;
        write_atomically(&dir, &name, &bytes).map_err(storage)?;
        checkpoint.progression_file = Some((name, Hash::of(&bytes)));
    }
    let stored = store.save_job(&checkpoint)?;
    if stored {
        let below = (!ended).then_some(checkpoint.completed_rounds);
        drop_progressions(data_dir, &id, below);
        drop_kept_results(data_dir, &id, checkpoint.completed_rounds, ended);
    }
    Ok(())
}

/// A running job's progression, read back from the file its checkpoint names.
fn read_progression(
    data_dir: &Path,
    stored: &StoredJob,
) -> Result<SavedProgression, CoordinatorError> {
    let checkpoint = &stored.checkpoint;
    let (name, hash) = checkpoint.progression_file.as_ref().ok_or_else(|| {
        storage(format!(
            "running job {} has no stored progression",
            checkpoint.id.short()
        ))
    })?;
    if name != &progression_name(checkpoint.completed_rounds) {
        return Err(storage(format!(
            "job {}'s progression file is {name}",
            checkpoint.id.short()
        )));
    }
    let path = job_dir(data_dir, &checkpoint.id).join(name);
    let bytes =
        std::fs::read(&path).map_err(|error| storage(format!("{}: {error}", path.display())))?;
    if Hash::of(&bytes) != *hash {
        return Err(storage(format!(
            "{} is not the progression its checkpoint names",
            path.display()
        )));
    }
    SavedProgression::from_bytes(&checkpoint.spec, &bytes)
}

/// Waits until the ledger has recorded round `round` of `job`, however long that takes (a
/// checkpoint past a round the ledger does not hold would, after a crash, skip that round's
/// payment): an error is logged every [`LEDGER_WAIT`].
async fn wait_for_ledger(services: &Services, job: &Hash, round: u32) {
    let mut deadline = tokio::time::Instant::now() + LEDGER_WAIT;
    loop {
        let recorded = crate::server::lock(&services.ledger)
            .chain()
            .state()
            .rounds
            .get(job)
            .is_some_and(|head| head.round >= round);
        if recorded {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::error!(job = %job.short(), round, "the ledger has not recorded a closed round; the job's checkpoint waits for it");
            deadline += LEDGER_WAIT;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The data a running job was prepared from, again: read from its source or its kept copy,
/// and prepared as at submission (`JobRun::restore` checks the dataset's name).
fn prepare_again(data_dir: &Path, stored: &StoredJob) -> Result<PreparedData, CoordinatorError> {
    let checkpoint = &stored.checkpoint;
    let spec = &checkpoint.spec;
    let dataset_error = |error: corex_ml::MlError| CoordinatorError::Dataset(error.to_string());
    let dataset = match &spec.dataset.source {
        DatasetSource::Digits => Dataset::digits().map_err(dataset_error)?,
        DatasetSource::Packaged { name } => Dataset::packaged(*name).map_err(dataset_error)?,
        DatasetSource::Uploaded { .. } | DatasetSource::Named { .. } => {
            let path = job_dir(data_dir, &checkpoint.id).join(KEPT_DATASET);
            let bytes = std::fs::read(&path)
                .map_err(|error| storage(format!("{}: {error}", path.display())))?;
            Dataset::from_bytes(&bytes).map_err(dataset_error)?
        }
    };
    prepare(spec, Arc::new(dataset), checkpoint.standardization.clone())
}

/// Publishes an ended job's weights or outputs from its files, so they are served again.
fn publish_results(
    engine: &mut Coordinator,
    data_dir: &Path,
    stored: &StoredJob,
) -> Result<(), CoordinatorError> {
    let dir = job_dir(data_dir, &stored.checkpoint.id);
    let files = [
        ("weights.safetensors", stored.checkpoint.weights),
        (
            "outputs.f32",
            stored.checkpoint.outputs.as_ref().map(|o| o.values),
        ),
        (
            "outputs.indices.u32",
            stored.checkpoint.outputs.as_ref().map(|o| o.indices),
        ),
    ];
    for (name, expected) in files {
        let Some(expected) = expected else { continue };
        let path = dir.join(name);
        let bytes = std::fs::read(&path)
            .map_err(|error| storage(format!("{}: {error}", path.display())))?;
        let published = engine.blobs.publish(bytes);
        if published != expected {
            engine.blobs.retire(&published);
            return Err(storage(format!(
                "{} is not the job's results {expected}",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Puts back what an earlier run stored, before anything is served: the nodes' standing
/// (registration, proven capability, audit record), then the nodes the ledger `removed` are
/// banned whatever their stored record says, then the jobs ([`restore_jobs`]). Returns the jobs
/// whose round the kept results completed. Blocking.
pub fn restore(
    engine: &mut Coordinator,
    store: &StateStore,
    data_dir: &Path,
    removed: Vec<corex_core::NodeId>,
) -> Result<Vec<(Hash, Progress)>, CoordinatorError> {
    let nodes = store.load_nodes()?;
    if !nodes.is_empty() {
        tracing::info!(nodes = nodes.len(), "node standing restored");
    }
    engine.restore_standing(nodes, 0);
    if !removed.is_empty() {
        tracing::info!(nodes = removed.len(), "nodes the ledger removed are banned");
    }
    for node in removed {
        engine.verifier.ban(node);
    }
    restore_jobs(engine, store, data_dir, 0)
}

/// Puts back every job `store` holds, in submission order: running jobs resume at the round
/// their checkpoint opened, with the results kept for it; ended ones are served again. A job
/// that cannot be restored is put back failed with the reason, and that is stored. Returns
/// the jobs whose round the kept results completed, with how they progressed (the shell
/// starts their close once it serves). Blocking; at start, before serving.
fn restore_jobs(
    engine: &mut Coordinator,
    store: &StateStore,
    data_dir: &Path,
    now_ms: u64,
) -> Result<Vec<(Hash, Progress)>, CoordinatorError> {
    let stored_jobs = store.load_jobs()?;
    let mut progressed = Vec::new();
    for stored in stored_jobs {
        let id = stored.checkpoint.id;
        let running = stored.checkpoint.state == JobState::Running;
        let ready = if running {
            read_progression(data_dir, &stored)
                .and_then(|saved| Ok((Some(saved), Some(prepare_again(data_dir, &stored)?))))
        } else {
            publish_results(engine, data_dir, &stored).map(|()| (None, None))
        };
        let (saved, prepared) = match ready {
            Ok((saved, prepared)) => (saved, Ok(prepared)),
            Err(error) => (None, Err(error)),
        };
        tracing::info!(job = %id.short(), name = %stored.checkpoint.spec.name, round = stored.checkpoint.completed_rounds, running, "restoring a job");
        let round = stored.checkpoint.completed_rounds;
        // Left by a crash: an ended job's late results, a running one's older rounds'.
        drop_kept_results(data_dir, &id, round, !running);
        if let Some(failed) = engine.restore_job(stored.checkpoint, saved, prepared, now_ms) {
            store_checkpoint(store, data_dir, failed, None, &[])?;
            continue;
        }
        if running {
            let kept = kept_results(data_dir, &id, round)?;
            if !kept.is_empty() {
                tracing::info!(job = %id.short(), round, results = kept.len(), "accepted results restored");
            }
            match engine.restore_results(&id, kept, now_ms) {
                Ok(Progress::Accepted) => {}
                Ok(progress) => progressed.push((id, progress)),
                Err(error) => {
                    tracing::error!(job = %id.short(), %error, "kept results could not be restored")
                }
            }
        }
    }
    Ok(progressed)
}

/// What a job's progress leaves to store: its checkpoint, the standing of the nodes that
/// worked in the round that closed, and an ended job's files.
pub struct Checkpoint {
    pub job: JobCheckpoint,
    pub saved: Option<SavedProgression>,
    pub standing: Vec<StoredNode>,
    pub finished: Option<FinishedFiles>,
}

/// An ended job's report and its weights or outputs, as written to `jobs/<id>/`.
pub struct FinishedFiles {
    report: JobReport,
    files: Vec<(&'static str, Bytes)>,
}

impl FinishedFiles {
    /// `job`'s report, and its weights (`weights.safetensors`), or for a job of output work
    /// its outputs (`outputs.f32`, `outputs.indices.u32`).
    pub fn of(engine: &Coordinator, job: &Hash) -> Result<Self, CoordinatorError> {
        let report = engine.report(job)?;
        let blob = |hash: Hash| engine.blobs.get(&hash).ok().map(|blob| blob.bytes.clone());
        let mut files = Vec::new();
        if let Some(weights) = engine.job(job)?.weights.and_then(blob) {
            files.push(("weights.safetensors", weights));
        }
        if let Some(outputs) = &report.outputs {
            files.extend(blob(outputs.values).map(|bytes| ("outputs.f32", bytes)));
            files.extend(blob(outputs.indices).map(|bytes| ("outputs.indices.u32", bytes)));
        }
        Ok(Self { report, files })
    }

    /// Writes them, the results first and the report last: a report on disk means its files
    /// are whole. Blocking.
    fn write(self, data_dir: &Path, job: &Hash) -> Result<(), CoordinatorError> {
        let dir = job_dir(data_dir, job);
        let report = serde_json::to_vec_pretty(&self.report).map_err(storage)?;
        std::fs::create_dir_all(&dir).map_err(storage)?;
        if let Some(jobs) = dir.parent() {
            std::fs::File::open(jobs)
                .and_then(|jobs| jobs.sync_all())
                .map_err(storage)?;
        }
        for (name, bytes) in self.files {
            write_atomically(&dir, name, &bytes).map_err(storage)?;
        }
        write_atomically(&dir, "report.json", &report).map_err(storage)?;
        tracing::info!(job = %job.short(), dir = %dir.display(), "job finished; report and results written");
        Ok(())
    }
}

/// Stores a job's progress: an ended job's report and results first (a restored job serves
/// them from there), then its checkpoint with the standing of its round's nodes. Call it once
/// the ledger holds the round the checkpoint closed. Returns how many rounds of history the
/// stored checkpoint holds. Blocking.
pub fn store_progress_now(
    store: &StateStore,
    data_dir: &Path,
    checkpoint: Checkpoint,
) -> Result<usize, CoordinatorError> {
    let Checkpoint {
        job: checkpoint,
        saved,
        standing,
        finished,
    } = checkpoint;
    if let Some(finished) = finished {
        finished.write(data_dir, &checkpoint.id)?;
    }
    let history_stored = checkpoint.history_from + checkpoint.history.len();
    store_checkpoint(store, data_dir, checkpoint, saved.as_ref(), &standing)?;
    Ok(history_stored)
}

/// Stores a job's progress ([`store_progress_now`]) once it is safe to: after the ledger
/// recorded `recorded_round` (see the top of this file). Failures are logged; the job goes
/// on, one checkpoint behind.
pub async fn store_progress(
    services: &Arc<Services>,
    checkpoint: Checkpoint,
    recorded_round: Option<u32>,
) -> Option<usize> {
    let job = checkpoint.job.id;
    if let Some(round) = recorded_round {
        wait_for_ledger(services, &job, round).await;
    }
    let worker = services.clone();
    let stored = tokio::task::spawn_blocking(move || {
        store_progress_now(&worker.store, &worker.data_dir, checkpoint)
    })
    .await;
    match stored {
        Ok(Ok(history_stored)) => Some(history_stored),
        Ok(Err(error)) => {
            tracing::error!(job = %job.short(), %error, "a job's progress could not be stored");
            None
        }
        Err(error) => {
            tracing::error!(
                job = %job.short(),
                error = %crate::runtime::join_failure(error),
                "storing a job's progress failed"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_closed_rounds_results_leaves_the_open_round_and_writes_in_progress() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let job = Hash::of(b"job");
        let results = results_dir(dir.path(), &job);
        std::fs::create_dir_all(&results).expect("the results folder");
        for name in ["3.1", "4.0", "5.0", "5.2", ".6.1.partial"] {
            std::fs::write(results.join(name), b"x").expect("a file");
        }
        drop_kept_results(dir.path(), &job, 5, false);
        let mut left: Vec<String> = std::fs::read_dir(&results)
            .expect("listed")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        left.sort();
        assert_eq!(left, [".6.1.partial", "5.0", "5.2"]);
        drop_kept_results(dir.path(), &job, 5, true);
        assert!(!results.exists());
    }

    #[test]
    fn an_older_checkpoints_clean_up_leaves_a_newer_progression() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let job = Hash::of(b"job");
        let folder = job_dir(dir.path(), &job);
        std::fs::create_dir_all(&folder).expect("the job's folder");
        for name in [
            "progression-4.bin",
            "progression-5.bin",
            "progression-6.bin",
        ] {
            std::fs::write(folder.join(name), b"x").expect("a file");
        }
        // The checkpoint of round 5 was stored, then the one of round 6 wrote its file.
        drop_progressions(dir.path(), &job, Some(5));
        assert!(!folder.join("progression-4.bin").exists());
        assert!(folder.join("progression-5.bin").exists());
        assert!(
            folder.join("progression-6.bin").exists(),
            "a newer file survives"
        );
        drop_progressions(dir.path(), &job, None);
        assert!(!folder.join("progression-6.bin").exists());
    }
}
