//! The compute backend a node computes on: burn's flex CPU backend, always built, or its wgpu
//! backend (Vulkan, Metal, DirectX; Mesa's lavapipe where no GPU is present) in builds with
//! the `wgpu` feature. The same model code runs on either: a [`Backend`] only says which burn
//! device the tensors live on, and which GPU adapter is behind it.
//!
//! A wgpu runtime is opened once per process and shared (burn registers it globally); opening
//! it again returns the same device.

use burn::tensor::Device;
use corex_core::{ComputeBackend, GpuAdapter};

use crate::error::MlError;

/// Where a fragment's tensors live. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Backend {
    kind: ComputeBackend,
    device: Device,
    adapter: Option<GpuAdapter>,
}

impl Backend {
    /// burn's flex backend on this process's CPU threads.
    pub fn cpu() -> Self {
        Self {
            kind: ComputeBackend::Cpu,
            device: Device::flex(),
            adapter: None,
        }
    }

    /// Opens `kind`: an error names what is missing (a backend this build lacks, or no
    /// adapter on this machine).
    pub fn open(kind: ComputeBackend) -> Result<Self, MlError> {
        match kind {
            ComputeBackend::Cpu => Ok(Self::cpu()),
            ComputeBackend::Wgpu => open_wgpu(),
            ComputeBackend::Cuda => Err(MlError::Backend(
                "this build has no CUDA backend: burn's downloads an LLVM bundle while it builds, \
                 which an offline build cannot (docs/operations.md); NVIDIA GPUs work through \
                 --backend wgpu (Vulkan)"
                    .into(),
            )),
        }
    }

    /// The backends this build can open (whether this machine has an adapter for them is
    /// known only by opening them).
    pub fn built() -> Vec<ComputeBackend> {
        let mut built = vec![ComputeBackend::Cpu];
        if cfg!(feature = "wgpu") {
            built.push(ComputeBackend::Wgpu);
        }
        built
    }

    pub fn kind(&self) -> ComputeBackend {
        self.kind
    }

    /// The GPU adapter behind a GPU backend.
    pub fn adapter(&self) -> Option<&GpuAdapter> {
        self.adapter.as_ref()
    }

    /// The plain device (forward passes, matrix products).
    pub(crate) fn device(&self) -> Device {
        self.device.clone()
    }

    /// The device with autodiff (gradients, local steps).
    pub(crate) fn autodiff(&self) -> Device {
        self.device.clone().autodiff()
    }
}

#[cfg(feature = "wgpu")]
fn open_wgpu() -> Result<Backend, MlError> {
    use std::sync::OnceLock;

    static OPENED: OnceLock<Result<Backend, String>> = OnceLock::new();
    OPENED
        .get_or_init(|| {
            let (device, setup) = Device::wgpu_options().init_with_setup().map_err(|error| {
                format!(
                    "no wgpu adapter ({error}); on a machine without a GPU, Mesa's software \
                     Vulkan driver provides one (Debian: apt-get install mesa-vulkan-drivers)"
                )
            })?;
            Ok(Backend {
                kind: ComputeBackend::Wgpu,
                device,
                adapter: Some(describe_adapter(&setup.adapter.get_info())),
            })
        })
        .clone()
        .map_err(MlError::Backend)
}

#[cfg(not(feature = "wgpu"))]
fn open_wgpu() -> Result<Backend, MlError> {
    Err(MlError::Backend(
        "this build has no wgpu backend (build with the `wgpu` feature)".into(),
    ))
}

#[cfg(feature = "wgpu")]
fn describe_adapter(info: &burn::tensor::wgpu::wgpu::AdapterInfo) -> GpuAdapter {
    use burn::tensor::wgpu::wgpu::DeviceType;

    let kind = match info.device_type {
        DeviceType::DiscreteGpu => "discrete",
        DeviceType::IntegratedGpu => "integrated",
        DeviceType::VirtualGpu => "virtual",
        DeviceType::Cpu => "cpu",
        DeviceType::Other => "other",
    };
    GpuAdapter {
        name: info.name.clone(),
        vendor_id: info.vendor,
        device_id: info.device,
        kind: kind.into(),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_owned(),
        api: format!("{:?}", info.backend).to_lowercase(),
    }
}
