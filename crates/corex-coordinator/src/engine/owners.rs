//! The job owner's side of the engine: submission within the owner's quotas, cancellation,
//! and who may read a job and the node registry.
//!
//! In: the key that signed the request (already admitted by the policy in `crate::admission`
//! where it submits), specs that passed the resource budget, the current time. Out: job ids,
//! statuses and reports, or a refusal that changes nothing. Invariant: an owner never has more
//! than `max_running_jobs_per_owner` jobs running nor more than `max_stored_bytes_per_owner`
//! bytes kept here; a private job's data reaches only its owner and the operators.

use std::collections::BTreeMap;

use corex_core::job::job_id;
use corex_core::messages::{JobReport, JobState, JobStatus, NodeInfo};
use corex_core::{Hash, JobSpec, NodeId};

use super::Coordinator;
use crate::error::CoordinatorError;
use crate::job_run::JobRun;
use crate::prepared::PreparedData;

impl Coordinator {
    /// Starts `owner`'s job on `dataset`, if the owner's quotas allow one more job; `sequence`
    /// is a submission number never used before (`StateStore::take_job_sequence`), which makes
    /// the job's id unique across restarts.
    pub fn submit_job(
        &mut self,
        owner: NodeId,
        spec: JobSpec,
        prepared: PreparedData,
        sequence: u64,
        now_ms: u64,
    ) -> Result<Hash, CoordinatorError> {
        let running = self
            .jobs()
            .filter(|job| job.owner == owner && job.is_running())
            .count();
        let most = self.config.max_running_jobs_per_owner as usize;
        if running >= most {
            return Err(CoordinatorError::OwnerQuota(format!(
                "{} already has {running} running job(s); the limit is {most} (wait, or cancel one)",
                owner.short()
            )));
        }
        let stored = self.stored_bytes(&owner);
        if stored > self.config.max_stored_bytes_per_owner {
            return Err(CoordinatorError::OwnerQuota(format!(
                "{} keeps {stored} bytes here; the limit is {}",
                owner.short(),
                self.config.max_stored_bytes_per_owner
            )));
        }
        let id = job_id(&spec, &owner, sequence);
        if self.jobs.contains_key(&id) {
            return Err(CoordinatorError::Storage(format!(
                "job id {} is taken (submission sequence {sequence} reused)",
                id.short()
            )));
        }
        let (jobs, engine) = self.jobs_and_engine(now_ms);
        let run = JobRun::start(id, owner, sequence, spec, prepared, now_ms, engine)?;
        jobs.insert(id, run);
        self.job_order.push(id);
        Ok(id)
    }

    /// A checkpoint of `job` was stored (`Ok`) or could not be (`Err`, why). For a submission
    /// not stored before: stored, the job leases work from now on; not stored, it fails with
    /// that reason, having leased nothing. Returns whether the job opened for work.
    pub fn job_stored(&mut self, job: &Hash, stored: Result<(), String>, now_ms: u64) -> bool {
        let Some(run) = self.jobs.get_mut(job).filter(|run| !run.stored) else {
            return false;
        };
        match stored {
            Ok(()) => {
                run.open_for_work(now_ms);
                true
            }
            Err(_) if !run.is_running() => false,
            Err(reason) => {
                tracing::error!(job = %job.short(), %reason, "a submitted job could not be stored; it fails");
                run.end(
                    JobState::Failed {
                        reason: format!("the submission could not be stored: {reason}"),
                    },
                    now_ms,
                );
                false
            }
        }
    }

    /// Cancels a running job at `key`'s request (its owner or an operator): its open round
    /// is dropped, unpaid, and its fragments are no longer leased; closed rounds stay recorded.
    pub fn cancel_job(
        &mut self,
        key: &NodeId,
        id: &Hash,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let job = self
            .jobs
            .get_mut(id)
            .ok_or(CoordinatorError::UnknownJob(*id))?;
        if !self.config.admission.may_cancel(key, &job.owner) {
            return Err(CoordinatorError::NotJobOwner(*id));
        }
        if !job.is_running() {
            return Err(CoordinatorError::JobNotRunning(*id));
        }
        job.cancel(&mut self.blobs, now_ms);
        Ok(())
    }

    /// Bytes `owner` keeps here: its uploaded datasets and the blobs its jobs published for
    /// nodes (datasets) and for it (weights, outputs).
    pub fn stored_bytes(&self, owner: &NodeId) -> u64 {
        let size = |hash: Option<Hash>| {
            hash.and_then(|hash| self.blobs.get(&hash).ok())
                .map_or(0, |blob| blob.bytes.len() as u64)
        };
        let jobs: u64 = self
            .jobs()
            .filter(|job| job.owner == *owner)
            .map(|job| {
                let outputs = job.outputs.as_ref();
                size(job.dataset_blob)
                    + size(job.weights)
                    + size(outputs.map(|o| o.values))
                    + size(outputs.map(|o| o.indices))
            })
            .sum();
        self.datasets.stored_bytes(owner) + jobs
    }

    pub fn job(&self, id: &Hash) -> Result<&JobRun, CoordinatorError> {
        self.jobs.get(id).ok_or(CoordinatorError::UnknownJob(*id))
    }

    /// The job, if `reader` may read it (its owner, an operator, anyone for a public job).
    pub fn job_for(&self, reader: &NodeId, id: &Hash) -> Result<&JobRun, CoordinatorError> {
        let job = self.job(id)?;
        if self
            .config
            .admission
            .may_read(reader, &job.owner, job.spec.public)
        {
            Ok(job)
        } else {
            Err(CoordinatorError::NotJobOwner(*id))
        }
    }

    pub fn status(&self, id: &Hash) -> Result<JobStatus, CoordinatorError> {
        Ok(self.job(id)?.status())
    }

    pub fn report(&self, id: &Hash) -> Result<JobReport, CoordinatorError> {
        let job = self.job(id)?;
        Ok(JobReport {
            status: job.status(),
            spec: job.spec.clone(),
            dataset_hash: job.dataset_hash,
            rounds: job.history().to_vec(),
            coordinator: self.identity.id(),
            wall_ms: job
                .finished_ms
                .unwrap_or(job.started_ms)
                .saturating_sub(job.started_ms),
            privacy: crate::federated::privacy_report(&job.spec, job.history()),
            outputs: job.outputs.clone(),
            standardization: job.standardization.clone(),
        })
    }

    pub fn jobs(&self) -> impl Iterator<Item = &JobRun> {
        self.job_order.iter().filter_map(|id| self.jobs.get(id))
    }

    /// The jobs `reader` may read, in submission order.
    pub fn jobs_for<'a>(&'a self, reader: &'a NodeId) -> impl Iterator<Item = &'a JobRun> + 'a {
        self.jobs().filter(move |job| {
            self.config
                .admission
                .may_read(reader, &job.owner, job.spec.public)
        })
    }

    /// Whether `reader` may fetch blob `hash`: the results of a private job (its trained
    /// weights, its outputs) are its owner's and the operators'; every other blob (model
    /// versions, datasets, checkpoints) is there for the nodes that compute.
    pub fn check_blob_reader(&self, reader: &NodeId, hash: &Hash) -> Result<(), CoordinatorError> {
        let result_of = |job: &&JobRun| {
            job.weights == Some(*hash)
                || job
                    .outputs
                    .as_ref()
                    .is_some_and(|outputs| outputs.values == *hash || outputs.indices == *hash)
        };
        match self.jobs().find(result_of) {
            Some(job)
                if !self
                    .config
                    .admission
                    .may_read(reader, &job.owner, job.spec.public) =>
            {
                Err(CoordinatorError::NotJobOwner(job.id))
            }
            _ => Ok(()),
        }
    }

    /// The node registry as `reader` may see it: an operator sees everything; anyone else
    /// sees no network address and no host name.
    pub fn nodes_for(&self, reader: &NodeId) -> BTreeMap<NodeId, NodeInfo> {
        let operator = self.config.admission.is_operator(reader);
        self.nodes
            .iter()
            .map(|(id, registered)| {
                let mut shown = registered.info.clone();
                if !operator {
                    shown.endpoint.clear();
                    shown.device.hostname.clear();
                }
                (*id, shown)
            })
            .collect()
    }
}
