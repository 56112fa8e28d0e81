//! Device detection: what this machine is, and the backend and GPU adapter this node computes
//! on, as reported to the coordinator at registration.

use corex_core::Hash;
use corex_core::messages::DeviceReport;
use corex_ml::Backend;

/// Describes this host. `compute_threads` and `backend` are what the node will actually use.
pub fn detect(compute_threads: u32, backend: &Backend) -> DeviceReport {
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
    let mut report = DeviceReport {
        hostname: sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into()),
        os: sysinfo::System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into()),
        cpu_model: cpu_model.unwrap_or_else(|| std::env::consts::ARCH.to_owned()),
        logical_cores,
        memory_bytes,
        gpus: detect_gpus(),
        compute_threads,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        claimed_gflops: None,
        fingerprint: Hash::default(),
        benchmark: None,
        backend: backend.kind(),
        adapter: backend.adapter().cloned(),
    };
    report.fingerprint = fingerprint(&report, &machine_identifiers());
    report
}

/// The machine's own identifiers: `/etc/machine-id`, the MAC addresses of its network
/// interfaces (loopback and all-zero addresses left out) and the PCI identity (vendor, device,
/// slot) of every GPU the kernel lists under `/sys/class/drm`, sorted. Every node on the machine
/// sees the same GPUs, whichever backend it computes on.
fn machine_identifiers() -> Vec<String> {
    let mut identifiers: Vec<String> = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("address")).ok())
        .map(|address| address.trim().to_owned())
        .filter(|address| !address.is_empty() && address != "00:00:00:00:00:00")
        .collect();
    identifiers.extend(gpu_identities());
    identifiers.sort();
    if let Ok(machine_id) = std::fs::read_to_string("/etc/machine-id") {
        identifiers.push(machine_id.trim().to_owned());
    }
    identifiers
}

/// Hardware identifiers hashed with the host's shape: every node on one machine gets the
/// same fingerprint, whatever its thread count or data directory.
fn fingerprint(report: &DeviceReport, identifiers: &[String]) -> Hash {
    Hash::of_parts(&[
        b"corex-device-v2",
        identifiers.join("\n").as_bytes(),
        report.hostname.as_bytes(),
        report.cpu_model.as_bytes(),
        &report.logical_cores.to_le_bytes(),
        &report.memory_bytes.to_le_bytes(),
        report.gpus.join("\n").as_bytes(),
    ])
}

/// `vendor:device@slot` of each display device the kernel lists (`/sys/class/drm/card*`).
fn gpu_identities() -> Vec<String> {
    let read = |path: std::path::PathBuf| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .unwrap_or_default()
    };
    std::fs::read_dir("/sys/class/drm")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("card") && !name.contains('-')
        })
        .map(|entry| entry.path().join("device"))
        .filter(|device| device.join("vendor").exists())
        .map(|device| {
            let slot = std::fs::canonicalize(&device)
                .ok()
                .and_then(|path| {
                    path.file_name()
                        .map(|name| name.to_string_lossy().into_owned())
                })
                .unwrap_or_default();
            format!(
                "gpu {}:{}@{slot}",
                read(device.join("vendor")),
                read(device.join("device"))
            )
        })
        .collect()
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
        let report = super::detect(2, &corex_ml::Backend::cpu());
        assert!(report.logical_cores >= 1);
        assert!(report.memory_bytes > 0);
        assert_eq!(report.compute_threads, 2);
    }

    #[test]
    fn nodes_on_one_machine_share_a_fingerprint() {
        let cpu = corex_ml::Backend::cpu();
        let (one, other) = (super::detect(1, &cpu), super::detect(4, &cpu));
        assert_eq!(one.fingerprint, other.fingerprint);
        assert_ne!(one.fingerprint, corex_core::Hash::default());
    }
}
