//! `corex node bench`: measures this device for real. Matrix products on every compute
//! backend this build has and this machine can open (burn's flex CPU backend at each thread
//! count; the wgpu backend on its adapter), memory bandwidth (a host copy; a pass over device
//! memory on a GPU backend), and, when a coordinator is given, the round trip and download
//! throughput to it, each repeated to show how steady the device is. The result goes into the
//! node's signed device report. [`pick_backend`] is `--backend auto`: the fastest backend
//! present at a short matrix product.

use std::time::{Duration, Instant};

use corex_core::ComputeBackend;
use corex_core::messages::{DeviceBandwidth, DeviceBenchmark, MatmulSpeed};
use corex_ml::Backend;
use corex_net::CoordinatorClient;

use crate::error::NodeError;

/// What to measure and how often.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    pub repeats: u32,
    /// Thread counts to run the CPU backend's matrix product on.
    pub thread_counts: Vec<u32>,
    /// GPU backends to measure (opened ones only: see [`open_gpu_backends`]).
    pub gpus: Vec<Backend>,
    /// Size of the square matrix product on the CPU (2n³ FLOP).
    pub matmul_n: usize,
    /// Size of the square matrix product on a GPU backend.
    pub gpu_matmul_n: usize,
    /// Bytes copied per host memory measurement.
    pub memory_bytes: usize,
    /// Bytes passed over per device memory measurement (within a GPU's largest buffer).
    pub device_memory_bytes: usize,
    /// Bytes downloaded per throughput measurement.
    pub download_bytes: usize,
}

impl BenchPlan {
    /// Five repeats of each: 512 × 512 products on the CPU at 1 thread, half the cores and all
    /// of them, 2048 × 2048 on each GPU backend, 256 MiB host copies, 64 MiB device passes,
    /// 8 MiB downloads.
    pub fn for_cores(cores: u32, gpus: Vec<Backend>) -> Self {
        let mut thread_counts = vec![1, (cores / 2).max(1), cores.max(1)];
        thread_counts.dedup();
        Self {
            repeats: 5,
            thread_counts,
            gpus,
            matmul_n: 512,
            gpu_matmul_n: 2048,
            memory_bytes: 256 * 1024 * 1024,
            device_memory_bytes: 64 * 1024 * 1024,
            download_bytes: 8 * 1024 * 1024,
        }
    }

    /// Measurements the plan takes (for a progress bar), with or without a coordinator.
    pub fn steps(&self, with_coordinator: bool) -> u64 {
        let network = if with_coordinator { 2 } else { 0 };
        u64::from(self.repeats)
            * (self.thread_counts.len() as u64 + 1 + 2 * self.gpus.len() as u64 + network)
    }
}

/// Every GPU backend this build has that opens on this machine, with why each other did not.
pub fn open_gpu_backends() -> (Vec<Backend>, Vec<(ComputeBackend, String)>) {
    let mut opened = Vec::new();
    let mut missing = Vec::new();
    for kind in ComputeBackend::ALL.into_iter().filter(|kind| kind.is_gpu()) {
        match Backend::open(kind) {
            Ok(backend) => opened.push(backend),
            Err(error) => missing.push((kind, error.to_string())),
        }
    }
    (opened, missing)
}

/// Runs `plan`, calling `progress` after every measurement; the network figures are measured
/// only with a coordinator (0 without).
pub async fn measure(
    client: Option<&CoordinatorClient>,
    plan: &BenchPlan,
    mut progress: impl FnMut(&str),
) -> Result<DeviceBenchmark, NodeError> {
    let repeats = plan.repeats.max(1);
    let mut matmul = Vec::new();
    let mut spread_ppm = 0u32;
    let mut record = |backend: ComputeBackend, threads: u32, speeds: &mut Vec<u64>| {
        let median = median(speeds);
        let spread = speeds.iter().max().unwrap_or(&0) - speeds.iter().min().unwrap_or(&0);
        spread_ppm = spread_ppm.max((spread * 1_000_000 / median.max(1)) as u32);
        matmul.push(MatmulSpeed {
            backend,
            threads,
            mflops: median,
        });
    };
    for &threads in &plan.thread_counts {
        let mut speeds = Vec::new();
        for repeat in 0..repeats {
            let n = plan.matmul_n;
            let elapsed = blocking(move || cpu_matmul(n, threads, u64::from(repeat))).await?;
            speeds.push(mflops(n, elapsed));
            progress(&format!("matrix product on the CPU, {threads} thread(s)"));
        }
        record(ComputeBackend::Cpu, threads, &mut speeds);
    }
    let mut device_memory = Vec::new();
    for gpu in &plan.gpus {
        let n = plan.gpu_matmul_n;
        let warm = gpu.clone();
        // The first product compiles the kernels: it is not timed.
        blocking(move || corex_ml::time_matmul(&warm, n, u64::MAX).map_err(compute_error)).await?;
        let mut speeds = Vec::new();
        for repeat in 0..repeats {
            let on = gpu.clone();
            let elapsed = blocking(move || {
                corex_ml::time_matmul(&on, n, u64::from(repeat)).map_err(compute_error)
            })
            .await?;
            speeds.push(mflops(n, elapsed));
            progress(&format!("matrix product on {}", gpu.kind()));
        }
        record(gpu.kind(), 0, &mut speeds);
        let values = plan.device_memory_bytes / 4;
        let mut passes = Vec::new();
        for repeat in 0..repeats {
            let on = gpu.clone();
            let elapsed = blocking(move || {
                corex_ml::time_device_pass(&on, values, u64::from(repeat)).map_err(compute_error)
            })
            .await?;
            passes.push(megabytes_per_second(8 * values, elapsed));
            progress(&format!("device memory on {}", gpu.kind()));
        }
        device_memory.push(DeviceBandwidth {
            backend: gpu.kind(),
            mbps: median(&mut passes),
        });
    }
    let mut memory = Vec::new();
    for _ in 0..repeats {
        let bytes = plan.memory_bytes;
        let elapsed = blocking(move || Ok(time_copy(bytes))).await?;
        memory.push(megabytes_per_second(bytes, elapsed));
        progress("memory copy");
    }
    let (round_trip_us, download_mbps) = match client {
        Some(client) => network(client, plan, repeats, &mut progress).await?,
        None => (0, 0),
    };
    Ok(DeviceBenchmark {
        matmul,
        memory_mbps: median(&mut memory),
        device_memory,
        round_trip_us,
        download_mbps,
        spread_ppm,
        repeats,
    })
}

/// `--backend auto`: of the CPU (at `threads`) and every GPU backend that opens, the one whose
/// 1024 × 1024 product is fastest (best of two after a warm-up), with the speeds measured.
pub fn pick_backend(threads: u32) -> Result<(Backend, Vec<(ComputeBackend, u64)>), NodeError> {
    let n = 1024;
    let mut best = (Backend::cpu(), 0u64);
    let mut speeds = Vec::new();
    let (gpus, _) = open_gpu_backends();
    for backend in std::iter::once(Backend::cpu()).chain(gpus) {
        let mut fastest = Duration::MAX;
        for seed in 0..3 {
            let elapsed = match backend.kind() {
                ComputeBackend::Cpu => cpu_matmul(n, threads, seed)?,
                _ => corex_ml::time_matmul(&backend, n, seed).map_err(compute_error)?,
            };
            if seed > 0 {
                fastest = fastest.min(elapsed);
            }
        }
        let speed = mflops(n, fastest);
        speeds.push((backend.kind(), speed));
        if speed > best.1 {
            best = (backend, speed);
        }
    }
    Ok((best.0, speeds))
}

async fn network(
    client: &CoordinatorClient,
    plan: &BenchPlan,
    repeats: u32,
    progress: &mut impl FnMut(&str),
) -> Result<(u64, u64), NodeError> {
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
        downloads.push(megabytes_per_second(got, started.elapsed()));
        progress("download");
    }
    Ok((median(&mut round_trips), median(&mut downloads)))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| NodeError::Compute(error.to_string()))?
}

fn compute_error(error: corex_ml::MlError) -> NodeError {
    NodeError::Compute(error.to_string())
}

/// One `n × n` product on the CPU backend, on a pool of `threads` threads.
fn cpu_matmul(n: usize, threads: u32, seed: u64) -> Result<Duration, NodeError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads as usize)
        .build()
        .map_err(|error| NodeError::Compute(error.to_string()))?;
    pool.install(|| corex_ml::time_matmul(&Backend::cpu(), n, seed))
        .map_err(compute_error)
}

fn mflops(n: usize, elapsed: Duration) -> u64 {
    (2.0 * (n as f64).powi(3) / elapsed.max(Duration::from_nanos(1)).as_secs_f64() / 1e6) as u64
}

fn megabytes_per_second(bytes: usize, elapsed: Duration) -> u64 {
    (bytes as f64 / elapsed.max(Duration::from_nanos(1)).as_secs_f64() / 1e6) as u64
}

/// How long one copy of `bytes` bytes takes, between buffers already in memory (both are
/// written first, so page faults are not timed).
fn time_copy(bytes: usize) -> Duration {
    let source = vec![1u8; bytes];
    let mut target = vec![2u8; bytes];
    let started = Instant::now();
    target.copy_from_slice(&source);
    let elapsed = started.elapsed();
    std::hint::black_box(&target);
    elapsed
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
        assert_eq!(
            BenchPlan::for_cores(8, Vec::new()).thread_counts,
            vec![1, 4, 8]
        );
        assert_eq!(
            BenchPlan::for_cores(2, Vec::new()).thread_counts,
            vec![1, 2]
        );
        assert_eq!(BenchPlan::for_cores(1, Vec::new()).thread_counts, vec![1]);
        assert_eq!(BenchPlan::for_cores(2, Vec::new()).steps(true), 5 * 5);
        assert_eq!(BenchPlan::for_cores(2, Vec::new()).steps(false), 5 * 3);
    }

    #[test]
    fn compute_and_memory_are_measured() {
        assert!(cpu_matmul(64, 1, 0).unwrap() > Duration::ZERO);
        assert!(time_copy(1 << 20) > Duration::ZERO);
        assert_eq!(median(&mut [5, 1, 3]), 3);
    }
}
