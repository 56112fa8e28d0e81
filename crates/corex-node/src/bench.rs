//! `corex node bench`: measures this device for real. Matrix products on every compute
//! backend this build has (burn's flex CPU backend, at each thread count), memory copy
//! bandwidth, the round trip and download throughput to the coordinator, each repeated to
//! show how steady the device is. The result goes into the node's signed device report.

use std::time::{Duration, Instant};

use corex_core::messages::{DeviceBenchmark, MatmulSpeed};
use corex_net::CoordinatorClient;

use crate::error::NodeError;

/// What to measure and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchPlan {
    pub repeats: u32,
    /// Thread counts to run the matrix product on.
    pub thread_counts: Vec<u32>,
    /// Size of the square matrix product (2n³ FLOP).
    pub matmul_n: usize,
    /// Bytes copied per memory measurement.
    pub memory_bytes: usize,
    /// Bytes downloaded per throughput measurement.
    pub download_bytes: usize,
}

impl BenchPlan {
    /// Five repeats of each: 512 × 512 products at 1 thread, half the cores and all of them,
    /// 256 MiB copies, 8 MiB downloads.
    pub fn for_cores(cores: u32) -> Self {
        let mut thread_counts = vec![1, (cores / 2).max(1), cores.max(1)];
        thread_counts.dedup();
        Self {
            repeats: 5,
            thread_counts,
            matmul_n: 512,
            memory_bytes: 256 * 1024 * 1024,
            download_bytes: 8 * 1024 * 1024,
        }
    }

    /// Measurements the plan takes (for a progress bar).
    pub fn steps(&self) -> u64 {
        u64::from(self.repeats) * (self.thread_counts.len() as u64 + 3)
    }
}

/// Runs `plan`, calling `progress` after every measurement.
pub async fn measure(
    client: &CoordinatorClient,
    plan: &BenchPlan,
    mut progress: impl FnMut(&str),
) -> Result<DeviceBenchmark, NodeError> {
    let repeats = plan.repeats.max(1);
    let mut matmul = Vec::new();
    let mut spread_ppm = 0u32;
    for &threads in &plan.thread_counts {
        let mut speeds = Vec::new();
        for _ in 0..repeats {
            let n = plan.matmul_n;
            let seconds = tokio::task::spawn_blocking(move || time_matmul(n, threads))
                .await
                .map_err(|error| NodeError::Compute(error.to_string()))??;
            speeds.push((2.0 * (n as f64).powi(3) / seconds / 1e6) as u64);
            progress(&format!("matrix product, {threads} thread(s)"));
        }
        let median = median(&mut speeds);
        let spread = speeds.iter().max().unwrap_or(&0) - speeds.iter().min().unwrap_or(&0);
        spread_ppm = spread_ppm.max((spread * 1_000_000 / median.max(1)) as u32);
        matmul.push(MatmulSpeed {
            backend: "cpu".into(),
            threads,
            mflops: median,
        });
    }
    let mut memory = Vec::new();
    for _ in 0..repeats {
        let bytes = plan.memory_bytes;
        let seconds = tokio::task::spawn_blocking(move || time_copy(bytes))
            .await
            .map_err(|error| NodeError::Compute(error.to_string()))?;
        memory.push((bytes as f64 / seconds / 1e6) as u64);
        progress("memory copy");
    }
    let mut round_trips = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        client.bench_download(0).await?;
        round_trips.push(started.elapsed().as_micros() as u64);
        progress("round trip");
    }
    let mut downloads = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        let got = client.bench_download(plan.download_bytes).await?;
        let seconds = started
            .elapsed()
            .max(Duration::from_micros(1))
            .as_secs_f64();
        downloads.push((got as f64 / seconds / 1e6) as u64);
        progress("download");
    }
    Ok(DeviceBenchmark {
        matmul,
        memory_mbps: median(&mut memory),
        round_trip_us: median(&mut round_trips),
        download_mbps: median(&mut downloads),
        spread_ppm,
        repeats,
    })
}

/// Seconds one `n × n` product takes on a pool of `threads` threads.
fn time_matmul(n: usize, threads: u32) -> Result<f64, NodeError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads as usize)
        .build()
        .map_err(|error| NodeError::Compute(error.to_string()))?;
    let (a, b) = corex_verify::challenge_matrices(u64::from(threads), n);
    pool.install(|| {
        let started = Instant::now();
        corex_ml::matmul(&a, &b, n).map_err(|error| NodeError::Compute(error.to_string()))?;
        Ok(started.elapsed().max(Duration::from_nanos(1)).as_secs_f64())
    })
}

/// Seconds one copy of `bytes` bytes takes, between buffers already in memory (both are
/// written first, so page faults are not timed).
fn time_copy(bytes: usize) -> f64 {
    let source = vec![1u8; bytes];
    let mut target = vec![2u8; bytes];
    let started = Instant::now();
    target.copy_from_slice(&source);
    let seconds = started.elapsed().max(Duration::from_nanos(1)).as_secs_f64();
    std::hint::black_box(&target);
    seconds
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_covers_one_thread_and_all_cores() {
        assert_eq!(BenchPlan::for_cores(8).thread_counts, vec![1, 4, 8]);
        assert_eq!(BenchPlan::for_cores(2).thread_counts, vec![1, 2]);
        assert_eq!(BenchPlan::for_cores(1).thread_counts, vec![1]);
        assert_eq!(BenchPlan::for_cores(2).steps(), 5 * 5);
    }

    #[test]
    fn compute_and_memory_are_measured() {
        assert!(time_matmul(64, 1).unwrap() > 0.0);
        assert!(time_copy(1 << 20) > 0.0);
        assert_eq!(median(&mut [5, 1, 3]), 3);
    }
}
