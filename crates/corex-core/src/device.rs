//! What a node says about its hardware: the device report it sends when it registers, the
//! compute backend it computes on (and the GPU adapter behind it), and what `corex node bench`
//! measured. Self-reported: the capability challenge, run on the reported backend, checks the
//! speed; nothing can check a name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hash::Hash;

/// The burn backend a node computes on: its fragments, the audits it replays and its capability
/// challenge all run there.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ComputeBackend {
    /// burn's flex backend on the CPU.
    #[default]
    Cpu,
    /// burn's wgpu backend: Vulkan, Metal or DirectX, including software drivers such as
    /// Mesa's lavapipe.
    Wgpu,
    /// burn's CUDA backend (NVIDIA).
    Cuda,
}

impl ComputeBackend {
    pub const ALL: [ComputeBackend; 3] = [Self::Cpu, Self::Wgpu, Self::Cuda];

    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }

    /// Whether results come from GPU kernels (another order of floating-point operations
    /// than the CPU backend's).
    pub fn is_gpu(self) -> bool {
        !matches!(self, Self::Cpu)
    }
}

impl fmt::Display for ComputeBackend {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for ComputeBackend {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|backend| backend.name() == text)
            .ok_or_else(|| format!("unknown compute backend {text:?} (cpu, wgpu or cuda)"))
    }
}

/// The GPU adapter a GPU backend computes on, as its driver describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuAdapter {
    /// The adapter's name (`NVIDIA H100 PCIe`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// PCI vendor and device ids (0 where the driver gives none).
    pub vendor_id: u32,
    pub device_id: u32,
    /// `discrete`, `integrated`, `virtual`, `cpu` (a software driver) or `other`.
    pub kind: String,
    /// Driver name and version as the driver reports them.
    pub driver: String,
    /// Graphics API: `vulkan`, `metal`, `dx12`, `gl`, `cuda`.
    pub api: String,
}

impl GpuAdapter {
    /// A driver that runs the GPU path on the CPU (Mesa's lavapipe, SwiftShader, WARP).
    pub fn is_software(&self) -> bool {
        self.kind == "cpu"
    }

    /// One line for tables: name, and what it is when that is not obvious.
    pub fn describe(&self) -> String {
        if self.is_software() {
            format!("{} (software driver)", self.name)
        } else {
            self.name.clone()
        }
    }
}

/// What a node reports about its hardware when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    pub hostname: String,
    pub os: String,
    pub cpu_model: String,
    pub logical_cores: u32,
    pub memory_bytes: u64,
    /// GPUs found on the host (names); empty when none.
    pub gpus: Vec<String>,
    /// Threads the node will use for compute.
    pub compute_threads: u32,
    pub agent_version: String,
    /// Speed the node claims (GFLOP/s), if any; the capability challenge checks it.
    #[serde(default)]
    pub claimed_gflops: Option<u64>,
    /// Hash of the machine's hardware identifiers (machine id, network MAC addresses, CPU,
    /// memory, GPUs and every GPU adapter's identity): nodes on one machine share it, whatever
    /// backend each computes on. Self-reported, so it limits honest operators and lazy Sybil
    /// farms, not a determined liar.
    #[serde(default)]
    pub fingerprint: Hash,
    /// What `corex node bench` measured, when it has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benchmark: Option<DeviceBenchmark>,
    /// The backend the node computes on.
    #[serde(default)]
    pub backend: ComputeBackend,
    /// The GPU adapter behind a GPU backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<GpuAdapter>,
}

/// A device's measured performance (`corex node bench`), medians over repeated runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceBenchmark {
    /// Matrix-product speed (MFLOP/s) per compute backend and thread count.
    pub matmul: Vec<MatmulSpeed>,
    /// Host memory copy bandwidth, MB/s.
    pub memory_mbps: u64,
    /// Device memory bandwidth per GPU backend (a copy inside the device's memory), MB/s.
    #[serde(default)]
    pub device_memory: Vec<DeviceBandwidth>,
    /// Round trip of a signed request to the coordinator, microseconds (0 when measured
    /// without a coordinator).
    pub round_trip_us: u64,
    /// Download throughput from the coordinator over TLS, MB/s (0 without a coordinator).
    pub download_mbps: u64,
    /// Largest spread (max − min over median) of the repeated matrix products, parts per
    /// million: how steady the device is.
    pub spread_ppm: u32,
    pub repeats: u32,
}

impl DeviceBenchmark {
    /// The fastest matrix product measured on `backend`, MFLOP/s.
    pub fn best_mflops(&self, backend: ComputeBackend) -> Option<u64> {
        self.matmul
            .iter()
            .filter(|speed| speed.backend == backend)
            .map(|speed| speed.mflops)
            .max()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatmulSpeed {
    pub backend: ComputeBackend,
    /// CPU threads (the CPU backend); 0 on a GPU backend.
    pub threads: u32,
    pub mflops: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceBandwidth {
    pub backend: ComputeBackend,
    pub mbps: u64,
}

#[cfg(test)]
mod tests {
    use super::ComputeBackend;

    #[test]
    fn backends_read_back_from_their_names() {
        for backend in ComputeBackend::ALL {
            assert_eq!(backend.name().parse::<ComputeBackend>(), Ok(backend));
            assert_eq!(
                serde_json::to_string(&backend).ok(),
                Some(format!("\"{backend}\""))
            );
        }
        assert!("tpu".parse::<ComputeBackend>().is_err());
    }
}
