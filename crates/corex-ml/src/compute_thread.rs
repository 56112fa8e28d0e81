//! How a thread that runs ML work asks the operating system to schedule it: as batch work at
//! the lowest priority, as BOINC runs its work. Anything that serves requests on the same
//! machine (a coordinator's handlers, a node's network thread) then comes first, and the
//! scheduler, told that the thread is CPU-bound and not interactive, preempts it less on other
//! threads' wake-ups and gives it longer slices: four single-threaded nodes on two cores lose
//! less of their caches to each other.

/// Makes the calling thread batch work at the lowest priority (Linux: `SCHED_BATCH` and nice
/// 19, both per thread; elsewhere only the lowest priority). A failure leaves the thread as it
/// was, which is only slower for others.
pub fn make_current_thread_batch_compute() {
    #[cfg(target_os = "linux")]
    let set = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        thread_priority::ThreadPriority::Min,
        thread_priority::ThreadSchedulePolicy::Normal(
            thread_priority::NormalThreadSchedulePolicy::Batch,
        ),
    );
    #[cfg(not(target_os = "linux"))]
    let set = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
    if let Err(error) = set {
        tracing::debug!(?error, "a compute thread keeps its scheduling");
    }
}
