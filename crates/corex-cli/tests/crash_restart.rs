//! A coordinator killed with SIGKILL at ten seeded moments of a running job, and started again
//! on the same data directory each time, loses nothing: the node agents (separate processes)
//! ride out every restart by themselves, the job resumes from its last checkpoint and ends with
//! the very bits of an uninterrupted run of the same job, every round is on the ledger exactly
//! once, and `corex ledger audit` finds the chain clean.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use corex_core::Hash;

mod processes;

use processes::{CORE, Process, corex, corex_unchecked, node_args, spawn, wait_until};

/// The seed the kill moments are drawn from (printed, so a failure can be replayed).
const KILL_SEED: u64 = 18;
const KILLS: usize = 10;
/// Rounds of small gradient fragments take a few milliseconds each: enough of them that the
/// ten kills, 25 rounds apart, all come while the job runs, however late a kill lands after
/// its round (the status is read by starting `corex job status`, tens of milliseconds).
const ROUNDS: u32 = 300;

fn job_spec() -> corex_core::JobSpec {
    let mut spec = corex_core::JobSpec::digits_gradient();
    spec.name = "crash-restart".into();
    spec.model = corex_core::ModelSpec::mlp(64, vec![128], 10);
    spec.rounds = ROUNDS;
    spec.global_batch = 256;
    spec.fragment_samples = 64;
    spec.lease_ms = 2_000;
    spec
}

/// The seeded kill moments: after round `r` has closed and `delay_ms` more (up to 40 ms:
/// within a round or a few), ten distinct rounds spread over the job (at least 23 apart, so
/// that each is met after a restart).
fn kill_moments() -> Vec<(u32, u64)> {
    (0..KILLS as u32)
        .map(|index| {
            let draw = Hash::of_parts(&[
                b"corex-crash-test",
                &KILL_SEED.to_le_bytes(),
                &index.to_le_bytes(),
            ]);
            let bytes = draw.as_bytes();
            let round = 3 + index * 25 + u32::from(bytes[0] % 3);
            let delay_ms = u64::from(u16::from_le_bytes([bytes[1], bytes[2]]) % 40);
            (round, delay_ms)
        })
        .collect()
}

fn start_coordinator(dir: &Path, listen: &str, log: &Path) -> Process {
    let _ = std::fs::remove_file(dir.join("endpoint.json"));
    let process = spawn(
        &[
            "coordinator",
            "--listen",
            listen,
            "--data-dir",
            dir.to_str().unwrap(),
            "--allow-shared-hardware",
            "--admission",
            "open",
        ],
        log,
        "info",
    );
    let endpoint = dir.join("endpoint.json");
    wait_until(
        "the coordinator's endpoint",
        Duration::from_secs(60),
        || endpoint.exists(),
    );
    process
}

/// The job's status, or `None` while the coordinator is not answering.
fn try_status(id: &str, endpoint: &serde_json::Value, key: &Path) -> Option<serde_json::Value> {
    let output = corex_unchecked(&["job", "status", id, "--json"], endpoint, key);
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).ok())
        .flatten()
}

/// Runs the job on a fresh coordinator in `root` with two node processes, killing the
/// coordinator at `kills`; returns the final status and the ledger audit's output.
fn run(root: &Path, owner_key: &Path, kills: &[(u32, u64)]) -> (serde_json::Value, String) {
    let data = root.join("coordinator");
    let mut coordinator = start_coordinator(&data, "127.0.0.1:0", &root.join("coordinator-0.log"));
    let endpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("endpoint.json")).unwrap()).unwrap();
    let url = endpoint["url"].as_str().unwrap().to_owned();
    let listen = url.trim_start_matches("https://").to_owned();
    let pin = endpoint["fingerprint"].as_str().unwrap().to_owned();
    let _nodes: Vec<Process> = (0..2)
        .map(|index| {
            let args = node_args(&url, &pin, &root.join(format!("node-{index}")));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            spawn(&args, &root.join(format!("node-{index}.log")), "info")
        })
        .collect();
    let spec_path = root.join("job.toml");
    std::fs::write(&spec_path, job_spec().to_toml()).unwrap();
    let submitted = corex(
        &["job", "submit", spec_path.to_str().unwrap()],
        &endpoint,
        owner_key,
    );
    let id = String::from_utf8(submitted.stdout)
        .unwrap()
        .trim()
        .to_owned();

    for (restart, &(round, delay_ms)) in kills.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let status = try_status(&id, &endpoint, owner_key);
            let done = status
                .as_ref()
                .and_then(|status| status["round"].as_u64())
                .unwrap_or(0);
            if done >= u64::from(round) {
                assert_eq!(
                    status.unwrap()["state"]["state"],
                    "running",
                    "the job ended before kill {restart}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "round {round} never came");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        coordinator.0.kill().unwrap();
        coordinator.0.wait().unwrap();
        coordinator = start_coordinator(
            &data,
            &listen,
            &root.join(format!("coordinator-{}.log", restart + 1)),
        );
        let mut resumed = None;
        wait_until("the restarted coordinator", Duration::from_secs(60), || {
            resumed = try_status(&id, &endpoint, owner_key);
            resumed.is_some()
        });
        let resumed = resumed.unwrap()["round"].as_u64().unwrap();
        println!(
            "kill {restart}: SIGKILL after round {round} + {delay_ms} ms; resumed at round {resumed}"
        );
        assert!(
            resumed >= u64::from(round) - 2,
            "resumed at round {resumed}, the kill came after round {round}"
        );
    }
    let restored_results = (1..=kills.len())
        .map(|restart| {
            let log = std::fs::read_to_string(root.join(format!("coordinator-{restart}.log")))
                .unwrap_or_default();
            log.matches("accepted results restored").count()
        })
        .sum::<usize>();
    println!("restarts that took back accepted results of their open round: {restored_results}");

    let deadline = Instant::now() + Duration::from_secs(300);
    let finished = loop {
        if let Some(status) = try_status(&id, &endpoint, owner_key)
            && status["state"]["state"] != "running"
        {
            break status;
        }
        assert!(Instant::now() < deadline, "the job never ended");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(coordinator);
    let audit = std::process::Command::new(CORE)
        .args(["ledger", "audit", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "the ledger audit failed: {}",
        String::from_utf8_lossy(&audit.stderr)
    );
    (
        finished,
        String::from_utf8_lossy(&audit.stdout).into_owned(),
    )
}

#[test]
fn a_coordinator_killed_ten_times_mid_job_ends_with_the_bits_of_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let owner_key = dir.path().join("owner.key");
    let reference_root = dir.path().join("reference");
    let crashed_root = dir.path().join("crashed");
    std::fs::create_dir_all(&reference_root).unwrap();
    std::fs::create_dir_all(&crashed_root).unwrap();
    let moments = kill_moments();
    println!("kill seed {KILL_SEED}: {moments:?}");

    let (reference, _) = run(&reference_root, &owner_key, &[]);
    let (crashed, audit) = run(&crashed_root, &owner_key, &moments);
    println!("{audit}");

    // The same owner, spec and submission sequence: the same job id, on both coordinators.
    assert_eq!(crashed["job"], reference["job"]);
    assert_eq!(crashed["state"]["state"], "finished", "{crashed}");
    assert_eq!(crashed["round"], ROUNDS);
    assert_eq!(
        crashed["model"], reference["model"],
        "the final model's hash differs from the uninterrupted run's"
    );
    assert_eq!(crashed["last_test_loss"], reference["last_test_loss"]);
    assert!(audit.contains(": OK"), "{audit}");

    // Every round is on the ledger once, in order: a round computed again after a kill was
    // refused there, so its contributions were paid once.
    let job: Hash = serde_json::from_value(crashed["job"].clone()).unwrap();
    let (store, chain) = corex_ledger_store::LedgerStore::open_or_init(
        &crashed_root.join("coordinator").join("ledger.redb"),
        || unreachable!("the ledger exists"),
    )
    .unwrap();
    let recorded: Vec<u32> = (0..=chain.height())
        .filter_map(|height| store.block(height).unwrap())
        .flat_map(|block| block.txs)
        .filter_map(|tx| match tx.body {
            corex_ledger::TxBody::RecordRound { job: of, round, .. } if of == job => Some(round),
            _ => None,
        })
        .collect();
    assert_eq!(recorded, (0..ROUNDS).collect::<Vec<_>>());
}
