//! Device detection: what this machine is, as reported to the coordinator at registration.

use corex_core::messages::DeviceReport;

/// Describes this host. `compute_threads` is what the node will actually use.
pub fn detect(compute_threads: u32) -> DeviceReport {
    let (cpu_model, logical_cores, memory_bytes) = match sysinfo::System::new() {
        Ok(mut system) => {
            system.refresh_cpu_all();
            system.refresh_memory();
            let brand = system
                .cpus()
                .first()
                .map(|cpu| cpu.brand().trim().to_owned())
                .filter(|brand| !brand.is_empty());
            (brand, system.cpus().len() as u32, system.total_memory())
        }
        Err(_) => (None, 0, 0),
    };
    let logical_cores = if logical_cores == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
    } else {
        logical_cores
    };
    DeviceReport {
        hostname: sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into()),
        os: sysinfo::System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into()),
        cpu_model: cpu_model.unwrap_or_else(|| std::env::consts::ARCH.to_owned()),
        logical_cores,
        memory_bytes,
        gpus: detect_gpus(),
        compute_threads,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        claimed_gflops: None,
    }
}

/// NVIDIA GPUs as the kernel driver lists them; none on hosts without the driver.
fn detect_gpus() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc/driver/nvidia/gpus") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("information")).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("Model:"))
                .map(|model| model.trim().to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_is_described() {
        let report = super::detect(2);
        assert!(report.logical_cores >= 1);
        assert!(report.memory_bytes > 0);
        assert_eq!(report.compute_threads, 2);
    }
}
