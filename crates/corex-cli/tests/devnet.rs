//! The main job, as a user runs it: `corex devnet --nodes 4` starts real processes on
//! 127.0.0.1, trains the default digits job over TLS and keeps weights and report.

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn the_default_devnet_job_reaches_95_percent_with_4_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("devnet");
    let output = Command::new(env!("CARGO_BIN_EXE_corex"))
        .args(["devnet", "--nodes", "4", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "devnet failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("report.json")).unwrap()).unwrap();
    let status = &report["report"]["status"];
    assert_eq!(status["state"]["state"], "finished");
    let accuracy = status["last_test_accuracy"].as_f64().unwrap();
    println!(
        "devnet test accuracy with 4 nodes: {:.2}%",
        accuracy * 100.0
    );
    assert!(accuracy >= 0.95, "accuracy {accuracy} is below 95%");
    let nodes = status["nodes"].as_object().unwrap();
    assert_eq!(
        nodes.len(),
        4,
        "every node should have done work: {nodes:?}"
    );

    let (model, parameters) =
        corex_ml::from_safetensors(&std::fs::read(data_dir.join("weights.safetensors")).unwrap())
            .unwrap();
    assert_eq!(parameters.len(), model.parameter_count());
    assert!(data_dir.join("logs/coordinator.log").exists());

    // The coordinator recorded every round on its ledger, which audits clean after the run.
    let ledger = &report["ledger"];
    let nodes = ledger["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    let tasks: u64 = nodes
        .iter()
        .map(|n| n["tasks_done"].as_u64().unwrap())
        .sum();
    let spec = corex_core::JobSpec::default_digits();
    let rounds = report["report"]["rounds"].as_array().unwrap();
    let node_audits = rounds
        .iter()
        .filter_map(|round| round["audits"].as_array())
        .flatten()
        .count() as u64;
    println!("audit replays computed by nodes: {node_audits}");
    assert!(node_audits > 0, "the devnet's nodes audit each other");
    assert_eq!(
        tasks,
        u64::from(spec.rounds * spec.fragments_per_round()) + node_audits,
        "one accept verdict per fragment and per audit replay"
    );
    assert!(
        nodes
            .iter()
            .all(|n| n["rewards_locked"].as_f64().unwrap() > 0.0),
        "every node earned rewards: {nodes:?}"
    );
    assert!(stdout.contains("audited clean"));
    assert!(stdout.contains("test accuracy"));
}

/// Two nodes on the wgpu backend (Mesa's lavapipe where the machine has no GPU) beside two on
/// the CPU: the default job reaches the CPU-only devnet's bar, the wgpu nodes work, audits cross
/// backends, nothing honest is rejected, and the summary shows each node's backend and adapter.
#[cfg(feature = "wgpu")]
#[test]
fn a_devnet_of_wgpu_and_cpu_nodes_trains_the_default_job_as_well() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("devnet");
    let output = Command::new(env!("CARGO_BIN_EXE_corex"))
        .args(["devnet", "--profiles", "wgpu,wgpu", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "devnet failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("report.json")).unwrap()).unwrap();
    let status = &report["report"]["status"];
    let accuracy = status["last_test_accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.95, "accuracy {accuracy} is below 95%");
    let backend = |node: &serde_json::Value| {
        report["nodes"][node.as_str().unwrap()]["device"]["backend"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (mut across, mut results, mut from_wgpu) = (0, 0, 0);
    for result in report["report"]["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|round| round["results"].as_array().unwrap())
    {
        results += 1;
        assert_eq!(result["verdict"]["verdict"], "accepted", "{result}");
        if backend(&result["node"]) == "wgpu" {
            from_wgpu += 1;
        }
        if !result["audited_by"].is_null()
            && backend(&result["audited_by"]) != backend(&result["node"])
        {
            across += 1;
        }
    }
    println!(
        "{results} results, {from_wgpu} from wgpu nodes, {across} audited by a node on the other backend"
    );
    // Lavapipe is slow, the more so beside other tests: the wgpu nodes' share varies, but
    // they must have contributed, and been audited across backends.
    assert!(from_wgpu > 0, "the wgpu nodes did no work");
    assert!(across > 0, "no audit crossed backends");
    assert!(stdout.contains("wgpu") && stdout.contains("software driver"));
}

/// Heterogeneous nodes (one fast, one 3× slower, one 8× slower) on a job with adaptive
/// granularity: each node's share of the work follows its measured speed.
#[test]
fn a_heterogeneous_devnets_work_follows_each_nodes_speed() {
    let dir = tempfile::tempdir().unwrap();
    let spec_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../jobs/digits-heterogeneous.toml"
    ))
    .unwrap();
    let mut spec = corex_core::JobSpec::from_toml(&spec_text).unwrap();
    spec.rounds = 10;
    let job = dir.path().join("job.toml");
    std::fs::write(&job, spec.to_toml()).unwrap();
    let data_dir = dir.path().join("devnet");
    let output = Command::new(env!("CARGO_BIN_EXE_corex"))
        .args([
            "devnet",
            "--nodes",
            "3",
            "--profiles",
            "fast,medium,edge",
            "--job",
        ])
        .arg(&job)
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "devnet failed:\n{stdout}");
    println!("{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("report.json")).unwrap()).unwrap();
    let nodes = report["report"]["status"]["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 3);
    let field = |node: &serde_json::Value, name: &str| node[name].as_f64().unwrap();
    let speeds: Vec<f64> = nodes
        .values()
        .map(|n| field(n, "flops") / field(n, "busy_ms"))
        .collect();
    let work: Vec<f64> = nodes.values().map(|n| field(n, "flops")).collect();
    let (total_speed, total_work) = (speeds.iter().sum::<f64>(), work.iter().sum::<f64>());
    for (speed, work) in speeds.iter().zip(&work) {
        let (speed_share, work_share) = (speed / total_speed, work / total_work);
        println!("speed share {speed_share:.3}, work share {work_share:.3}");
        assert!(
            (speed_share - work_share).abs() <= 0.08,
            "work share {work_share:.3} is far from speed share {speed_share:.3}"
        );
    }
    assert!(stdout.contains("round time"));
}

/// `corex devnet --federated`: four holders with class-skewed local data (each sees at most
/// half the classes) train the shared model; the data stays in each node's own directory.
/// With `--dp-noise` the report gives each holder's ε at the job's δ.
#[test]
fn a_federated_devnet_learns_from_class_skewed_holders_and_accounts_privacy() {
    let run = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("devnet");
        let output = Command::new(env!("CARGO_BIN_EXE_corex"))
            .args(["devnet", "--federated", "--data-dir"])
            .arg(&data_dir)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "federated devnet failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data_dir.join("report.json")).unwrap()).unwrap();
        for node in 1..=4 {
            assert!(
                data_dir
                    .join(format!("node-{node}/local-data.csv"))
                    .exists()
            );
        }
        (report, String::from_utf8_lossy(&output.stdout).into_owned())
    };

    let (report, stdout) = run(&[]);
    let status = &report["report"]["status"];
    assert_eq!(status["state"]["state"], "finished");
    let accuracy = status["last_test_accuracy"].as_f64().unwrap();
    println!(
        "federated devnet, 4 class-skewed holders: {:.2}%",
        accuracy * 100.0
    );
    assert!(accuracy >= 0.90, "accuracy {accuracy} is below 90%");
    let results: Vec<&serde_json::Value> = report["report"]["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|round| round["results"].as_array().unwrap())
        .collect();
    assert_eq!(results.len(), 50 * 4);
    assert!(
        results
            .iter()
            .all(|r| r["data_commitment"]["shard"].is_string())
    );
    assert!(report["report"]["privacy"].is_null());
    assert!(stdout.contains("federated: 4 data holders"));

    let (report, stdout) = run(&["--dp-noise", "2"]);
    let privacy = &report["report"]["privacy"];
    let epsilon = privacy["epsilon"].as_f64().unwrap();
    let holder = &privacy["holders"][0];
    let expected = corex_ml::epsilon(
        2.0,
        holder["sampling_rate"].as_f64().unwrap(),
        holder["steps"].as_u64().unwrap(),
        1e-5,
    )
    .unwrap()
    .epsilon;
    println!(
        "with DP σ = 2: ε = {epsilon:.3} at δ = 1e-5, accuracy {:.2}%",
        report["report"]["status"]["last_test_accuracy"]
            .as_f64()
            .unwrap()
            * 100.0
    );
    assert_eq!(holder["steps"].as_u64().unwrap(), 50 * 16);
    assert!(epsilon.is_finite() && epsilon >= expected && epsilon < 20.0);
    assert!(stdout.contains("differential privacy"));
}

/// The inference and transform job files run on a devnet: each passes over the 1,797 digits
/// once and leaves its rows (`outputs.f32`) and their sample indices next to the report; the
/// transform's rows are the single-process transform's, bit for bit.
#[test]
fn the_inference_and_transform_job_files_run_on_a_devnet() {
    for (file, width) in [("digits-inference.toml", 10), ("digits-transform.toml", 16)] {
        let dir = tempfile::tempdir().unwrap();
        let job = format!("{}/../../jobs/{file}", env!("CARGO_MANIFEST_DIR"));
        let data_dir = dir.path().join("devnet");
        let output = Command::new(env!("CARGO_BIN_EXE_corex"))
            .args(["devnet", "--nodes", "3", "--job", &job, "--data-dir"])
            .arg(&data_dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{file}: devnet failed:\n{stdout}");
        println!("{stdout}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data_dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(report["report"]["status"]["state"]["state"], "finished");
        assert_eq!(report["report"]["outputs"]["rows"], 1797);
        let rows = std::fs::read(data_dir.join("outputs.f32")).unwrap();
        let indices = std::fs::read(data_dir.join("outputs.indices.u32")).unwrap();
        assert_eq!((rows.len(), indices.len()), (1797 * width * 4, 1797 * 4));
        assert!(stdout.contains("outputs.f32"));
        let spec = corex_core::JobSpec::from_toml(&std::fs::read_to_string(&job).unwrap()).unwrap();
        if let corex_core::WorkSpec::Transform { transform } = spec.work {
            let digits = corex_ml::Dataset::digits().unwrap();
            let all: Vec<u32> = (0..1797).collect();
            let features = digits.feature_rows(&all).unwrap();
            let expected: Vec<u8> = corex_ml::apply_transform(&transform, &features, 64)
                .unwrap()
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect();
            assert!(
                rows == expected,
                "the transform's rows differ from a single process's"
            );
        } else {
            assert!(stdout.contains("predictions"), "{stdout}");
        }
    }
}
