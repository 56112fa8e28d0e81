//! How a thread that runs ML work asks the operating system to schedule it: at the lowest
//! priority, as BOINC runs its work, so that anything that serves requests on the same machine
//! (a coordinator's handlers, a node's network thread, the owner's own programs) comes first
//! and ML takes the idle time.

/// Gives the calling thread the lowest scheduling priority (on Linux only it: the nice value
/// is per thread). A failure leaves the thread as it was, which is only slower for others.
pub fn lower_current_thread_priority() {
    if let Err(error) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::debug!(?error, "a compute thread keeps its priority");
    }
}
