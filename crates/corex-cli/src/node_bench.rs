//! `corex node bench` (the device table, with or without a coordinator) and `corex node
//! --backend`: which backend a node computes on, `auto` picking the fastest present.

use std::path::Path;

use anyhow::Context;
use corex_core::ComputeBackend;
use corex_ml::Backend;
use corex_net::{CoordinatorClient, load_or_create_keypair};

/// `--backend`: one backend, or the fastest present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Only(ComputeBackend),
}

impl std::str::FromStr for BackendChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "auto" {
            return Ok(Self::Auto);
        }
        text.parse()
            .map(Self::Only)
            .map_err(|error: String| format!("{error}; or auto (the fastest present)"))
    }
}

impl BackendChoice {
    /// Opens the backend (for `auto`, after measuring each one present at `threads`).
    pub fn open(self, threads: u32) -> anyhow::Result<Backend> {
        let backend = match self {
            Self::Only(kind) => Backend::open(kind)
                .with_context(|| format!("opening the {kind} backend (--backend {kind})"))?,
            Self::Auto => {
                let (backend, speeds) = corex_node::bench::pick_backend(threads)?;
                let measured: Vec<String> = speeds
                    .iter()
                    .map(|(kind, mflops)| format!("{kind} {:.1} GFLOP/s", *mflops as f64 / 1e3))
                    .collect();
                println!(
                    "backend auto: {} (measured {})",
                    backend.kind(),
                    measured.join(", ")
                );
                backend
            }
        };
        match backend.adapter() {
            Some(adapter) => println!(
                "computing on {}: {} ({} {}, driver {})",
                backend.kind(),
                adapter.describe(),
                adapter.kind,
                adapter.api,
                adapter.driver
            ),
            None => println!("computing on the CPU ({threads} threads)"),
        }
        Ok(backend)
    }
}

/// `corex node bench`: measures the device with a progress bar and prints the table; with a
/// coordinator (and its pin), also measures the link to it and sends the measurement in the
/// node's signed device report.
pub async fn node_bench(
    coordinator: Option<(String, Option<String>)>,
    data_dir: &Path,
    threads: u32,
    repeats: u32,
) -> anyhow::Result<()> {
    let client = match coordinator {
        Some((url, pin)) => {
            let pin = pin.context("give --pin FINGERPRINT (or COREX_PIN) with --coordinator")?;
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let key = load_or_create_keypair(&data_dir.join("node.key"))?;
            Some(CoordinatorClient::new(&url, &pin, key)?)
        }
        None => None,
    };
    let (gpus, missing) = corex_node::bench::open_gpu_backends();
    let mut report = corex_node::device::detect(threads, &Backend::cpu());
    let plan = corex_node::bench::BenchPlan {
        repeats: repeats.max(1),
        ..corex_node::bench::BenchPlan::for_cores(report.logical_cores, gpus.clone())
    };
    println!(
        "{} ({} cores, {:.1} GiB), {} repeats of each measurement",
        report.cpu_model,
        report.logical_cores,
        report.memory_bytes as f64 / f64::from(1u32 << 30),
        plan.repeats
    );
    for gpu in &gpus {
        if let Some(adapter) = gpu.adapter() {
            println!(
                "  {}: {} ({}, {} {})",
                gpu.kind(),
                adapter.describe(),
                adapter.kind,
                adapter.api,
                adapter.driver
            );
        }
    }
    for (kind, why) in &missing {
        println!("  {kind}: not measured ({why})");
    }
    let bar = indicatif::ProgressBar::new(plan.steps(client.is_some()));
    bar.set_style(
        indicatif::ProgressStyle::with_template("  {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let benchmark = corex_node::bench::measure(client.as_ref(), &plan, |step| {
        bar.set_message(step.to_owned());
        bar.inc(1);
    })
    .await?;
    bar.finish_and_clear();
    let cpu_best = benchmark
        .best_mflops(ComputeBackend::Cpu)
        .unwrap_or(0)
        .max(1);
    println!("  {:<40} {:>14} {:>10}", "measurement", "median", "vs CPU");
    for speed in &benchmark.matmul {
        let what = match speed.backend {
            ComputeBackend::Cpu => format!("matrix product, cpu, {} thread(s)", speed.threads),
            gpu => format!("matrix product, {gpu}"),
        };
        println!(
            "  {:<40} {:>8.1} GFLOP/s {:>9.2}×",
            what,
            speed.mflops as f64 / 1e3,
            speed.mflops as f64 / cpu_best as f64
        );
    }
    println!(
        "  {:<40} {:>9} MB/s",
        "host memory copy", benchmark.memory_mbps
    );
    for device in &benchmark.device_memory {
        println!(
            "  {:<40} {:>9} MB/s {:>9.2}×",
            format!("device memory pass, {}", device.backend),
            device.mbps,
            device.mbps as f64 / benchmark.memory_mbps.max(1) as f64
        );
    }
    if gpus
        .iter()
        .any(|gpu| gpu.adapter().is_some_and(|a| a.is_software()))
    {
        println!(
            "  (a software driver runs the GPU path on this CPU: its figures are not a GPU's)"
        );
    }
    println!(
        "  {:<40} {:>8.1} %",
        "spread of the repeats (max − min)",
        f64::from(benchmark.spread_ppm) / 1e4
    );
    let Some(client) = client else {
        println!("no --coordinator: nothing sent");
        return Ok(());
    };
    println!(
        "  {:<40} {:>9.2} ms",
        "round trip to the coordinator",
        benchmark.round_trip_us as f64 / 1e3
    );
    println!(
        "  {:<40} {:>9} MB/s",
        "download from the coordinator", benchmark.download_mbps
    );
    report.benchmark = Some(benchmark);
    let registered = client.register(report).await?;
    println!(
        "signed device report sent to coordinator {}",
        registered.coordinator.short()
    );
    Ok(())
}
