//! A cheater the ledger has removed gets no more work, even from a restarted coordinator that
//! has forgotten its failed audits: the ledger, which survives restarts, keeps it out.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestNet, adam, small_job, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::Keypair;
use corex_core::messages::JobState;
use corex_ledger::NodeStatus;
use corex_net::NetError;
use corex_node::{Adversary, NodeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_cheater_gets_no_work_after_a_restart() {
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    let owner = net.client(100);
    let job = owner.submit_job(&small_job(adam())).await.unwrap();
    net.spawn_node(11);
    net.spawn_node_with(
        12,
        NodeConfig {
            adversary: Some(Adversary::Random),
            ..NodeConfig::default()
        },
    );
    let status = wait_for_end(&owner, &job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    let cheater = Keypair::from_secret([12; 32]).id();
    // The ledger records rounds behind the engine: wait for the removal to land.
    let mut removed = false;
    for _ in 0..100 {
        let view = owner.ledger_account(&cheater).await.unwrap().unwrap();
        if view.node.unwrap().profile.status == NodeStatus::Removed {
            removed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(removed, "the cheater is removed on the ledger");
    let dir = net.shutdown().await;

    let net = TestNet::start_in(CoordinatorConfig::one_machine(), dir).await;
    let owner = net.client(100);
    owner.submit_job(&small_job(adam())).await.unwrap();
    let comeback = net.client(12);
    comeback
        .register(corex_node::device::detect(1))
        .await
        .unwrap();
    match comeback.lease(0).await {
        Err(NetError::Api { status, error, .. }) => {
            assert_eq!((status, error.error.as_str()), (403, "banned"));
        }
        other => panic!("a removed node got an answer other than banned: {other:?}"),
    }
    // An honest node still works there.
    let honest = net.client(11);
    honest
        .register(corex_node::device::detect(1))
        .await
        .unwrap();
    assert!(honest.lease(0).await.is_ok());
    net.shutdown().await;
}
