//! What a node does each time it registers, beside registering: warm up a GPU backend's
//! kernels (before anything is timed), join the coordinator's ledger, and answer the
//! capability challenge on its backend.

use std::time::Instant;

use corex_core::messages::DeviceReport;
use corex_core::tensor::f32s_to_bytes;
use corex_ledger::{DeviceClass, TxBody};

use super::NodeAgent;
use crate::adversary::Adversary;
use crate::error::NodeError;
use crate::pacing::throttle;

impl NodeAgent {
    /// On a GPU backend, compiles the matrix-product kernels before anything is timed: the
    /// capability challenge measures the device, not its shader compiler.
    pub(super) async fn warm_up(&self) {
        let backend = self.config.backend.clone();
        if !backend.kind().is_gpu() {
            return;
        }
        let warmed = tokio::task::spawn_blocking(move || {
            corex_ml::time_matmul(&backend, corex_verify::CHALLENGE_SIZE, 0)
        })
        .await;
        if let Ok(Err(error)) = warmed {
            tracing::warn!(%error, "warming the GPU backend up failed");
        }
    }

    /// Registers this node on the coordinator's ledger (once; a restart finds it there), so
    /// that its verified work is recorded and paid. Failure is logged: the node still works.
    pub(super) async fn join_ledger(&self, report: &DeviceReport) {
        let registration = async {
            if let Some(view) = self.client.ledger_account(&self.key.id()).await?
                && view.node.is_some()
            {
                return Ok(None);
            }
            let body = TxBody::RegisterNode {
                device_fingerprint: report.fingerprint,
                device_class: device_class(report),
            };
            self.client.submit_tx(body).await.map(Some)
        };
        match registration.await {
            Ok(Some(receipt)) => {
                tracing::info!(height = receipt.height, "registered on the ledger")
            }
            Ok(None) => tracing::info!("already registered on the ledger"),
            Err(error) => {
                tracing::warn!(%error, "could not register on the ledger; work will not be paid")
            }
        }
    }

    /// Answers the coordinator's capability challenge: computes the seeded product, commits to
    /// it, then sends it for the check. Failure is logged: the node can still work.
    pub(super) async fn prove_capability(&self) {
        let proof = async {
            let challenge = self.client.challenge().await?;
            let n = challenge.n as usize;
            let started = Instant::now();
            let backend = self.config.backend.clone();
            let product = tokio::task::spawn_blocking(move || {
                let (a, b) = corex_verify::challenge_matrices(challenge.seed, n);
                corex_ml::matmul(&backend, &a, &b, n)
            })
            .await
            .map_err(|error| NodeError::Compute(error.to_string()))?
            .map_err(|error| NodeError::Compute(error.to_string()))?;
            // A bait-and-switch node takes the benchmark at full speed.
            if self.config.adversary != Some(Adversary::BaitAndSwitch) {
                throttle(started.elapsed(), self.config.slowdown).await;
            }
            self.client
                .commit_challenge(corex_verify::commit_product(&product))
                .await?;
            Ok::<_, NodeError>(
                self.client
                    .answer_challenge(f32s_to_bytes(&product))
                    .await?,
            )
        };
        match proof.await {
            Ok(capability) => tracing::info!(
                mflops = capability.demonstrated_mflops,
                believed = capability.believed,
                "capability challenge answered"
            ),
            Err(error) => tracing::warn!(%error, "capability challenge failed"),
        }
    }
}

/// The class a node declares (a GPU: one the kernel lists, or a hardware adapter it computes
/// on; a software driver is the CPU); tiers from measured performance come with benchmarking.
fn device_class(report: &DeviceReport) -> DeviceClass {
    const EDGE_MEMORY: u64 = 4 * 1024 * 1024 * 1024;
    let computes_on_a_gpu = report
        .adapter
        .as_ref()
        .is_some_and(|adapter| !adapter.is_software());
    if !report.gpus.is_empty() || computes_on_a_gpu {
        DeviceClass::Gpu
    } else if report.logical_cores <= 2 && report.memory_bytes < EDGE_MEMORY {
        DeviceClass::Edge
    } else {
        DeviceClass::Cpu
    }
}
