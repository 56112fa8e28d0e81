//! How the agent paces itself: backoff after failures, the idling that makes a node stand
//! for slower hardware, and waits that end early when the agent is told to stop.

use std::time::Duration;

use tokio::sync::watch;

/// Exponential backoff from 100 ms to 5 s.
#[derive(Default)]
pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(crate) fn next(&mut self) -> Duration {
        let delay =
            Duration::from_millis(100u64 << self.attempt.min(6)).min(Duration::from_secs(5));
        self.attempt += 1;
        delay
    }
}

/// Idles `slowdown − 1` times `worked`, so that the work took `slowdown` times as long.
pub(crate) async fn throttle(worked: Duration, slowdown: u32) {
    if slowdown > 1 {
        tokio::time::sleep(worked * (slowdown - 1)).await;
    }
}

/// Sleeps for `delay` unless told to stop first; true when stopping.
pub(crate) async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
