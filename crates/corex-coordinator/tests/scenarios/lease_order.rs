//! Scarce work goes to the higher-priority node: two nodes wait for work when a job of one
//! fragment per round arrives, and the one with a ledger reputation takes it, even though the
//! other began waiting first. The other finds nothing left.

use crate::common;

use std::time::Duration;

use common::{TestNet, adam, small_job};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::LeaseResponse;
use corex_ledger::{DeviceClass, TxBody};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_node_of_higher_priority_takes_the_scarce_fragment() {
    let mut spec = small_job(adam());
    spec.global_batch = spec.fragment_samples;

    for trial in 0..3u8 {
        let net = TestNet::start(CoordinatorConfig::one_machine()).await;
        let owner = net.client(100);
        let low = net.client(20 + 2 * trial);
        let high = net.client(21 + 2 * trial);
        for client in [&low, &high] {
            client
                .register(corex_node::device::detect(1, &corex_ml::Backend::cpu()))
                .await
                .unwrap();
        }
        // Only the high node joins the ledger: it has a reputation, the low one none.
        let device = corex_node::device::detect(1, &corex_ml::Backend::cpu());
        high.submit_tx(TxBody::RegisterNode {
            device_fingerprint: device.fingerprint,
            device_class: DeviceClass::Cpu,
        })
        .await
        .unwrap();
        let view = high
            .ledger_account(&corex_core::Keypair::from_secret([21 + 2 * trial; 32]).id())
            .await
            .unwrap()
            .unwrap();
        assert!(view.node.unwrap().profile.score > 0);

        let low_waits = tokio::spawn(async move { low.lease(1_500).await.unwrap() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let high_waits = tokio::spawn(async move { high.lease(1_500).await.unwrap() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        owner.submit_job(&spec).await.unwrap();

        assert!(
            matches!(high_waits.await.unwrap(), LeaseResponse::Work { .. }),
            "trial {trial}: the high-priority node gets the fragment"
        );
        assert!(
            matches!(low_waits.await.unwrap(), LeaseResponse::Idle { .. }),
            "trial {trial}: nothing is left for the low-priority node"
        );
        net.shutdown().await;
    }
}
