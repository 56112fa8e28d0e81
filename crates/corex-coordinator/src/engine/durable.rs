//! The engine's side of durability: a job's checkpoint for the shell to store, and jobs put
//! back from stored checkpoints when a coordinator opens its data directory again (see
//! `job_run::checkpoint`). Nothing here touches the disk.

use corex_core::messages::{JobState, NodeInfo};
use corex_core::{Hash, NodeId};

use super::Coordinator;
use crate::error::CoordinatorError;
use crate::job_run::{JobCheckpoint, JobRun, KeptMeta, Progress, SavedProgression};
use crate::prepared::PreparedData;
use crate::store::StoredNode;
use crate::verification::AuditRecord;

impl Coordinator {
    /// `job`'s checkpoint as it stands, with the progression saved since the last one
    /// (take it right after the step that moved the job, under the same lock).
    pub fn take_checkpoint(
        &mut self,
        job: &Hash,
        now_ms: u64,
    ) -> Result<(JobCheckpoint, Option<SavedProgression>), CoordinatorError> {
        let run = self
            .jobs
            .get_mut(job)
            .ok_or(CoordinatorError::UnknownJob(*job))?;
        Ok((run.checkpoint(now_ms), run.take_saved()))
    }

    /// Puts back the job `checkpoint` describes (see [`JobRun::restore`]). A job that cannot
    /// be restored is put back failed, with the reason in its status, never dropped: the
    /// returned checkpoint is then what the shell should store.
    pub fn restore_job(
        &mut self,
        checkpoint: JobCheckpoint,
        saved: Option<SavedProgression>,
        prepared: Result<Option<PreparedData>, CoordinatorError>,
        now_ms: u64,
    ) -> Option<JobCheckpoint> {
        let id = checkpoint.id;
        let restored = match prepared {
            Ok(prepared) => {
                let (_, engine) = self.jobs_and_engine(now_ms);
                JobRun::restore(checkpoint.clone(), saved, prepared, now_ms, engine)
            }
            Err(error) => Err(error),
        };
        let (run, failed) = match restored {
            Ok(run) => (run, None),
            Err(error) => {
                tracing::error!(job = %id.short(), %error, "a job could not be restored; it fails");
                let failed = JobCheckpoint {
                    state: JobState::Failed {
                        reason: format!("not restored after a coordinator restart: {error}"),
                    },
                    open_fragments: Vec::new(),
                    weights: None,
                    outputs: None,
                    ..checkpoint
                };
                let (_, engine) = self.jobs_and_engine(now_ms);
                match JobRun::restore(failed.clone(), None, None, now_ms, engine) {
                    Ok(run) => (run, Some(failed)),
                    Err(error) => {
                        tracing::error!(job = %id.short(), %error, "a failed job could not be put back");
                        return None;
                    }
                }
            }
        };
        if !self.jobs.contains_key(&id) {
            self.job_order.push(id);
        }
        self.jobs.insert(id, run);
        failed
    }

    /// Notes that `job`'s history is stored up to `stored` records.
    pub fn history_stored(&mut self, job: &Hash, stored: usize) {
        if let Some(run) = self.jobs.get_mut(job) {
            run.history_stored(stored);
        }
    }

    /// Puts back the kept results of `job`'s open round (see `JobRun::restore_results`).
    pub fn restore_results(
        &mut self,
        job: &Hash,
        kept: Vec<(u32, KeptMeta, Vec<u8>)>,
        now_ms: u64,
    ) -> Result<Progress, CoordinatorError> {
        self.with_job(job, now_ms, |run, engine| {
            run.restore_results(kept, now_ms, engine)
        })
    }

    /// The standing of those of `nodes` that are registered, to store: a snapshot taken now,
    /// later than any taken before.
    pub fn standing_of(&mut self, nodes: impl IntoIterator<Item = NodeId>) -> Vec<StoredNode> {
        self.standing_taken += 1;
        let taken = self.standing_taken;
        nodes
            .into_iter()
            .filter_map(|node| {
                let info = self.node(&node)?;
                let record = self.verifier.record(&node);
                Some(StoredNode {
                    node,
                    info: info.clone(),
                    audits_passed: record.passed,
                    audits_failed: record.failed,
                    taken,
                })
            })
            .collect()
    }

    /// Puts back nodes' stored standing: registered, with the capability they proved and
    /// their audit records. Their times restart on this process's clock (`now_ms`), so
    /// none is counted live or idle for what happened before the restart.
    pub fn restore_standing(&mut self, stored: Vec<StoredNode>, now_ms: u64) {
        for StoredNode {
            node,
            info,
            audits_passed,
            audits_failed,
            taken,
        } in stored
        {
            self.standing_taken = self.standing_taken.max(taken);
            let info = NodeInfo {
                registered_ms: now_ms,
                last_seen_ms: now_ms,
                ..info
            };
            self.nodes.insert(node, super::Registered::new(info));
            self.verifier.restore_record(
                node,
                AuditRecord {
                    passed: audits_passed,
                    failed: audits_failed,
                },
            );
        }
    }
}
