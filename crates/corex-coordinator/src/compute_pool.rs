//! The compute pool: where the coordinator's ML work runs (a round's close: replays,
//! held-out checks, aggregation, the step, evaluation, export; a capability check), on
//! threads of its own at the lowest scheduling priority, so that on a busy machine request
//! handling, the core and the stores' writes come first and no request waits on ML work it did
//! not ask for. A panic in the work is caught and comes back as its message.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

pub struct ComputePool {
    jobs: Sender<Job>,
}

impl ComputePool {
    /// Starts `threads` workers (at least one).
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (sender, receiver) = channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("corex-compute-{index}"))
                .spawn(move || work(&receiver))?;
        }
        Ok(Self { jobs: sender })
    }

    /// Runs `work` on the pool; its result, or the message of its panic.
    pub fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<Result<T, String>> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move || {
            let done = std::panic::catch_unwind(AssertUnwindSafe(work))
                .map_err(|panic| format!("panicked: {}", crate::server::panic_message(panic)));
            let _ = answer.send(done);
        });
        if self.jobs.send(job).is_err() {
            tracing::error!("the compute pool has stopped; work was dropped");
        }
        answered
    }
}

/// A worker: lowers its own priority, then runs jobs until the pool is dropped.
fn work(jobs: &Mutex<Receiver<Job>>) {
    corex_ml::lower_current_thread_priority();
    loop {
        let job = match crate::server::lock(jobs).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        job();
    }
}
