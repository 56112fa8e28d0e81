//! The engine's side of a round's close: handing a complete round's [`CloseWork`] to the
//! shell, which computes it off the lock, and applying what came back (see `job_run::close`).

use corex_core::Hash;

use super::Coordinator;
use crate::error::CoordinatorError;
use crate::job_run::{CloseWork, ClosedWork, Progress};

impl Coordinator {
    /// The close work of `job`'s complete round, once (see `JobRun::close_round`).
    pub fn take_close_work(&mut self, job: &Hash) -> Option<Box<CloseWork>> {
        self.jobs.get_mut(job)?.take_close_work()
    }

    /// Applies `job`'s close computed off the lock (`Err`: why it failed, which fails the
    /// job); says how the job progressed.
    pub fn finish_close(
        &mut self,
        job: &Hash,
        closed: Result<ClosedWork, String>,
        now_ms: u64,
    ) -> Result<Progress, CoordinatorError> {
        self.with_job(job, now_ms, |run, engine| {
            Ok(run.finish_close(closed, now_ms, engine))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use corex_core::messages::JobState;
    use corex_core::{JobSpec, Keypair};

    use super::*;
    use crate::config::CoordinatorConfig;
    use crate::verification::Verifier;
    use corex_verify::AuditPolicy;

    #[test]
    fn a_close_that_failed_fails_the_job_with_its_reason_and_a_second_answer_changes_nothing() {
        let mut engine = Coordinator::new(
            Keypair::from_secret([1; 32]),
            CoordinatorConfig::one_machine(),
            Verifier::new([2; 32], 8, AuditPolicy::default()),
        );
        let spec = JobSpec::default_digits();
        let digits = Arc::new(corex_ml::Dataset::digits().expect("the digits load"));
        let prepared = crate::prepared::prepare(&spec, digits, None).expect("prepared");
        let owner = Keypair::from_secret([3; 32]).id();
        let job = engine
            .submit_job(owner, spec, prepared, 0, 0)
            .expect("submitted");
        let failed = engine.finish_close(&job, Err("the computation panicked: boom".into()), 5);
        assert_eq!(failed.expect("applied"), Progress::JobFailed);
        let status = engine.status(&job).expect("a status");
        let JobState::Failed { reason } = status.state else {
            panic!("the job should have failed: {:?}", status.state)
        };
        assert!(reason.contains("round 0 could not close") && reason.contains("boom"));
        // The job is over: a late result of the same close changes nothing.
        let late = engine.finish_close(&job, Err("again".into()), 6);
        assert_eq!(late.expect("answered"), Progress::Accepted);
        assert!(matches!(
            engine.status(&job).expect("a status").state,
            JobState::Failed { reason } if reason.contains("boom")
        ));
        assert!(engine.take_close_work(&job).is_none());
    }
}
