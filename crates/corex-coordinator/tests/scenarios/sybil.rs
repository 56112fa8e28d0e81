//! Limits against Sybil farms at registration: one live node per device fingerprint and four
//! per network endpoint by default. A refused registration is a 403 `sybil_limit` that names
//! the limit, and changes nothing; a registered node may register again.

use crate::common;

use common::TestNet;
use corex_coordinator::CoordinatorConfig;
use corex_core::Hash;
use corex_core::messages::DeviceReport;
use corex_net::NetError;

fn device(machine: &[u8]) -> DeviceReport {
    DeviceReport {
        fingerprint: Hash::of(machine),
        ..corex_node::device::detect(1, &corex_ml::Backend::cpu())
    }
}

fn refused(result: Result<impl std::fmt::Debug, NetError>) -> String {
    match result {
        Err(NetError::Api { status, error, .. }) => {
            assert_eq!((status, error.error.as_str()), (403, "sybil_limit"));
            error.message
        }
        other => panic!("expected a sybil_limit refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_per_fingerprint_and_per_endpoint_are_limited() {
    let config = CoordinatorConfig::default();
    assert_eq!(
        (
            config.max_nodes_per_fingerprint,
            config.max_nodes_per_endpoint
        ),
        (1, 4)
    );
    let net = TestNet::start(config).await;

    // Two identities on one machine: the second is refused, the first may re-register.
    net.client(1).register(device(b"machine-a")).await.unwrap();
    let message = refused(net.client(2).register(device(b"machine-a")).await);
    assert!(message.contains("fingerprint"), "{message}");
    net.client(1).register(device(b"machine-a")).await.unwrap();

    // Machines behind one endpoint (all test clients connect from 127.0.0.1): four at most.
    for (seed, machine) in [(3, b"machine-b"), (4, b"machine-c"), (5, b"machine-d")] {
        net.client(seed).register(device(machine)).await.unwrap();
    }
    let message = refused(net.client(6).register(device(b"machine-e")).await);
    assert!(message.contains("endpoint 127.0.0.1"), "{message}");

    // Nothing changed: the refused identities are unknown to the coordinator.
    let nodes = net.client(1).nodes().await.unwrap();
    assert_eq!(nodes.len(), 4);
    for seed in [2u8, 6] {
        let id = corex_core::Keypair::from_secret([seed; 32]).id();
        assert!(!nodes.contains_key(&id));
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_machine_network_lifts_the_limits() {
    let net = TestNet::start(CoordinatorConfig::one_machine()).await;
    for seed in 1..=6 {
        net.client(seed)
            .register(device(b"the-devnet-host"))
            .await
            .unwrap();
    }
    assert_eq!(net.client(1).nodes().await.unwrap().len(), 6);
    net.shutdown().await;
}
