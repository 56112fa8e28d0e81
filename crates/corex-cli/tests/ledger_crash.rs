//! A coordinator killed with SIGKILL while it writes ledger blocks loses no acknowledged block:
//! every transaction it answered for is in the chain afterwards, the chain audits clean (also
//! through `corex ledger audit`), and the coordinator starts again on the same data.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corex_core::{Hash, Keypair, NodeId};
use corex_ledger::{DeviceClass, TxBody};
use corex_net::CoordinatorClient;

const CORE: &str = env!("CARGO_BIN_EXE_corex");

fn start_coordinator(dir: &Path, log: &Path) -> (Child, serde_json::Value) {
    let _ = std::fs::remove_file(dir.join("endpoint.json"));
    let child = Command::new(CORE)
        .args(["coordinator", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !dir.join("endpoint.json").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "coordinator did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint =
        serde_json::from_slice(&std::fs::read(dir.join("endpoint.json")).unwrap()).unwrap();
    (child, endpoint)
}

fn client(endpoint: &serde_json::Value, key: Keypair) -> CoordinatorClient {
    CoordinatorClient::new(
        endpoint["url"].as_str().unwrap(),
        endpoint["fingerprint"].as_str().unwrap(),
        key,
    )
    .unwrap()
}

fn registration(seed: u64) -> (Keypair, TxBody) {
    let mut secret = [7u8; 32];
    secret[..8].copy_from_slice(&seed.to_le_bytes());
    let body = TxBody::RegisterNode {
        device_fingerprint: Hash::of(&seed.to_le_bytes()),
        device_class: DeviceClass::Edge,
    };
    (Keypair::from_secret(secret), body)
}

#[test]
fn kill_9_during_block_writes_loses_no_acknowledged_block() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("coordinator");
    let (mut coordinator, endpoint) = start_coordinator(&data, &dir.path().join("first.log"));

    // Writers register new nodes as fast as they can; each answer is a stored block.
    let acknowledged: Arc<Mutex<Vec<(NodeId, u64)>>> = Arc::default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let writers: Vec<_> = (0..4u64)
        .map(|writer| {
            let acknowledged = acknowledged.clone();
            let endpoint = endpoint.clone();
            runtime.spawn(async move {
                for i in 0.. {
                    let (key, body) = registration(writer * 1_000_000 + i);
                    let id = key.id();
                    match client(&endpoint, key).submit_tx(body).await {
                        Ok(receipt) => acknowledged.lock().unwrap().push((id, receipt.height)),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 40 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "writers made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    coordinator.kill().unwrap(); // SIGKILL, in the middle of the writers' stream
    coordinator.wait().unwrap();
    for writer in writers {
        runtime.block_on(writer).unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let audit = corex_ledger_store::audit(&data.join("ledger.redb")).unwrap();
    let state = audit.chain.state();
    for (node, height) in &acknowledged {
        assert!(
            state.nodes.contains_key(node),
            "acknowledged registration of {} (block {height}) was lost",
            node.short()
        );
        assert!(*height <= audit.height);
    }
    println!(
        "killed after {} acknowledged blocks; the chain holds {} blocks and audits clean{}",
        acknowledged.len(),
        audit.height,
        if audit.repaired {
            " (after redb's allocator repair)"
        } else {
            ""
        }
    );

    let cli_audit = Command::new(CORE)
        .args(["ledger", "audit", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&cli_audit.stdout);
    assert!(cli_audit.status.success(), "{printed}");
    assert!(
        printed.contains("total") && printed.contains("100000000"),
        "{printed}"
    );

    // The coordinator comes back on the same data and goes on writing.
    let (mut again, endpoint) = start_coordinator(&data, &dir.path().join("second.log"));
    let (key, body) = registration(u64::MAX);
    let receipt = runtime
        .block_on(client(&endpoint, key).submit_tx(body))
        .unwrap();
    // Each start first commits a new audit seed chain anchor; the transaction follows it.
    assert_eq!(receipt.height, audit.height + 2);
    again.kill().unwrap();
    again.wait().unwrap();
    assert_eq!(
        corex_ledger_store::audit(&data.join("ledger.redb"))
            .unwrap()
            .height,
        receipt.height
    );
}
