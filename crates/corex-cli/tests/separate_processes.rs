//! The parts apart, as across machines: `corex coordinator`, `corex node` and `corex job` run
//! as separate processes and talk only over TLS. A node is killed with SIGKILL in the middle
//! of a fragment; its lease expires, the fragment goes to the other node (an audit task left
//! at its deadline, to the coordinator), the job finishes.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod processes;

use processes::{
    CORE, corex, corex_unchecked, node_args, signal, spawn, status, stdout, wait_until,
};

/// True when the node's log shows a fragment leased and no result sent after it: it is in the
/// middle of the fragment, and the coordinator still counts the lease as its.
/// A plain-HTTP GET: the body.
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    body.to_owned()
}

fn holds_a_fragment(log: &Path) -> bool {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    match (
        text.rfind("fragment leased"),
        text.rfind("submitting the result"),
    ) {
        (Some(leased), Some(accepted)) => leased > accepted,
        (Some(_), None) => true,
        _ => false,
    }
}

#[test]
fn job_commands_against_separate_processes_survive_a_node_killed_mid_job() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let coordinator_dir = root.join("coordinator");
    let _coordinator = spawn(
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            coordinator_dir.to_str().unwrap(),
            // Both nodes run on this machine.
            "--allow-shared-hardware",
            "--admission",
            "open",
        ],
        &root.join("coordinator.log"),
        "info",
    );
    let endpoint_file = coordinator_dir.join("endpoint.json");
    wait_until(
        "the coordinator's endpoint",
        Duration::from_secs(60),
        || endpoint_file.exists(),
    );
    let endpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&endpoint_file).unwrap()).unwrap();
    let url = endpoint["url"].as_str().unwrap().to_owned();
    let pin = endpoint["fingerprint"].as_str().unwrap().to_owned();
    let node = |name: &str, filter: &str, extra: &[&str]| {
        let mut args = node_args(&url, &pin, &root.join(name));
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spawn(&args, &root.join(format!("{name}.log")), filter)
    };
    let mut doomed = node("node-doomed", "corex_node=debug", &[]);
    let metrics = ["--metrics-listen", "127.0.0.1:0"];
    let _survivor = node("node-survivor", "info", &metrics);

    // A small job with short leases, so that the killed node's lease expires quickly.
    let mut spec = corex_core::JobSpec::digits_gradient();
    spec.name = "separate-processes".into();
    spec.model = corex_core::ModelSpec::mlp(64, vec![256], 10);
    spec.rounds = 400;
    spec.global_batch = 256;
    spec.fragment_samples = 128;
    spec.lease_ms = 1_500;
    let spec_path = root.join("job.toml");
    std::fs::write(&spec_path, spec.to_toml()).unwrap();
    let key = root.join("owner.key");
    let submitted = corex(
        &["job", "submit", spec_path.to_str().unwrap()],
        &endpoint,
        &key,
    );
    let id = String::from_utf8(submitted.stdout)
        .unwrap()
        .trim()
        .to_owned();

    // Once the job is under way, freeze the doomed node at a moment when it holds a fragment
    // (read from its log while it is stopped) and kill it there with SIGKILL.
    wait_until("the first rounds", Duration::from_secs(120), || {
        status(&id, &endpoint, &key)["round"].as_u64().unwrap() >= 1
    });
    let doomed_log = root.join("node-doomed.log");
    let mut caught = false;
    for _ in 0..500 {
        signal(&doomed, "STOP");
        if holds_a_fragment(&doomed_log) {
            caught = true;
            break;
        }
        signal(&doomed, "CONT");
        std::thread::sleep(Duration::from_millis(7));
    }
    assert!(
        caught,
        "never caught the doomed node in the middle of a fragment"
    );
    doomed.0.kill().unwrap();
    doomed.0.wait().unwrap();
    let killed_at_round = status(&id, &endpoint, &key)["round"].as_u64().unwrap();
    assert!(
        killed_at_round < u64::from(spec.rounds),
        "the node must die before the job ends"
    );

    wait_until("the job to finish", Duration::from_secs(300), || {
        status(&id, &endpoint, &key)["state"]["state"] == "finished"
    });
    let finished = status(&id, &endpoint, &key);
    println!(
        "killed a node at round {killed_at_round}; {} fragments re-issued; accuracy {:.2}%",
        finished["re_issued_fragments"],
        finished["last_test_accuracy"].as_f64().unwrap() * 100.0
    );
    assert_eq!(finished["round"].as_u64().unwrap(), u64::from(spec.rounds));
    assert!(
        finished["re_issued_fragments"].as_u64().unwrap() >= 1,
        "the killed node's fragment should have been re-issued: {finished}"
    );

    // The network at a glance, and the surviving node's own metrics.
    let glance = stdout(&corex(&["status"], &endpoint, &key));
    println!("{glance}");
    assert!(glance.contains("2 nodes registered") && glance.contains("separate-processes"));
    let log = std::fs::read_to_string(root.join("node-survivor.log")).unwrap();
    let address = log
        .lines()
        .find_map(|line| line.strip_prefix("metrics at http://"))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .expect("the node printed its metrics address");
    let exposition = http_get(address, "/metrics");
    let computed = exposition
        .lines()
        .filter(|line| line.starts_with("corex_node_fragments_computed_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(computed >= 1.0, "{exposition}");

    let out = root.join("download");
    corex(
        &["job", "download", &id, "--out", out.to_str().unwrap()],
        &endpoint,
        &key,
    );
    let short = &id[..8];
    let (model, parameters) = corex_ml::from_safetensors(
        &std::fs::read(out.join(format!("{short}.safetensors"))).unwrap(),
    )
    .unwrap();
    assert_eq!(model, spec.model);
    assert_eq!(parameters.len(), spec.model.parameter_count());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{short}.report.json"))).unwrap())
            .unwrap();
    assert_eq!(
        report["rounds"].as_array().unwrap().len(),
        spec.rounds as usize
    );

    // The surviving node was paid on the ledger; its key works as a wallet.
    let survivor_key = root.join("node-survivor").join("node.key");
    let wallet = |args: &[&str]| corex(&[&["wallet"], args].concat(), &endpoint, &survivor_key);
    let balance = stdout(&wallet(&["balance"]));
    println!("{balance}");
    assert!(balance.contains("locked reward"), "{balance}");
    // Rewards vest three two-second epochs of ledger time after the epoch that earned them
    // (the devnet rules); the coordinator's timer settles them while the ledger is idle.
    let spendable = |text: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix("balance"))
            .and_then(|amount| corex_ledger::parse_cxt(amount.trim().trim_end_matches(" CXT")).ok())
            .unwrap_or_default()
    };
    wait_until(
        "the survivor's rewards to vest",
        Duration::from_secs(30),
        || spendable(&stdout(&wallet(&["balance"]))) >= corex_ledger::parse_cxt("0.2").unwrap(),
    );
    let owner = stdout(&corex(
        &["wallet", "keygen"],
        &endpoint,
        &root.join("friend.key"),
    ));
    let friend = owner.trim();
    let paid = stdout(&wallet(&["transfer", friend, "0.0125"]));
    assert!(paid.contains("included"), "{paid}");
    let friend_balance = stdout(&corex(&["wallet", "balance", friend], &endpoint, &key));
    assert!(
        friend_balance.contains("balance          0.0125 CXT"),
        "{friend_balance}"
    );
    wallet(&["stake", "0.1"]);
    wallet(&["unstake", "0.04"]);
    let early = corex_unchecked(&["wallet", "withdraw"], &endpoint, &survivor_key);
    assert!(!early.status.success());
    let refusal = String::from_utf8_lossy(&early.stderr);
    assert!(refusal.contains("unbonding"), "{refusal}");
    let too_much = corex_unchecked(&["wallet", "unstake", "0.061"], &endpoint, &survivor_key);
    assert!(!too_much.status.success());
    let refusal = String::from_utf8_lossy(&too_much.stderr);
    assert!(refusal.contains("unstake_too_much"), "{refusal}");
    let staked = stdout(&wallet(&["balance"]));
    assert!(staked.contains("stake            0.06 CXT"), "{staked}");

    // The surviving node measures its device and sends the result in its signed report.
    let bench = Command::new(CORE)
        .args([
            "node",
            "bench",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--coordinator",
            &url,
        ])
        .args(["--pin", &pin, "--data-dir"])
        .arg(root.join("node-survivor"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let table = stdout(&bench);
    assert!(
        bench.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    for line in [
        "matrix product, cpu, 1 thread(s)",
        "host memory copy",
        "round trip",
        "download",
    ] {
        assert!(table.contains(line), "{table}");
    }
    // With the GPU backend built, its matrix product and device memory are measured too (on
    // Mesa's lavapipe where the machine has no GPU).
    #[cfg(feature = "wgpu")]
    for line in ["matrix product, wgpu", "device memory pass, wgpu"] {
        assert!(table.contains(line), "{table}");
    }
    assert!(table.contains("signed device report sent"), "{table}");
}
