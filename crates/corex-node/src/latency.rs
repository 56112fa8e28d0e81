//! How long the coordinator took to answer this node's result submissions: the newest ones,
//! kept in a fixed ring so a node that runs for weeks uses constant memory, summarised as
//! percentiles (nearest rank), in microseconds.

use std::time::Duration;

/// Submissions kept for the summary.
const KEPT: usize = 4_096;

#[derive(Debug, Default)]
pub(crate) struct LatencyRing {
    micros: Vec<u32>,
    next: usize,
    count: u64,
}

/// Percentiles of the kept submissions' latencies, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Submissions measured over the whole run (the percentiles cover the newest 4,096).
    pub count: u64,
    pub p50_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
}

/// The nearest-rank `percent`-th percentile of `sorted` (ascending); 0 when empty.
pub fn nearest_rank(sorted: &[u32], percent: usize) -> u32 {
    match sorted.len() {
        0 => 0,
        len => sorted[(len * percent).div_ceil(100).clamp(1, len) - 1],
    }
}

impl LatencyRing {
    pub(crate) fn record(&mut self, elapsed: Duration) {
        let micros = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
        if self.micros.len() < KEPT {
            self.micros.push(micros);
        } else {
            self.micros[self.next] = micros;
        }
        self.next = (self.next + 1) % KEPT;
        self.count += 1;
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let rank = |percent: usize| nearest_rank(&sorted, percent);
        LatencySummary {
            count: self.count,
            p50_us: rank(50),
            p99_us: rank(99),
            max_us: sorted.last().copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_over_the_newest_submissions() {
        let mut ring = LatencyRing::default();
        assert_eq!(ring.summary(), LatencySummary::default());
        for micros in 1..=100 {
            ring.record(Duration::from_micros(micros));
        }
        let summary = ring.summary();
        assert_eq!(
            (summary.count, summary.p50_us, summary.p99_us),
            (100, 50, 99)
        );
        assert_eq!(summary.max_us, 100);
        for _ in 0..KEPT {
            ring.record(Duration::from_micros(7));
        }
        let summary = ring.summary();
        assert_eq!(
            (summary.p99_us, summary.max_us),
            (7, 7),
            "old ones rolled out"
        );
        assert_eq!(summary.count, 100 + KEPT as u64);
    }
}
