//! Helpers for tests that run `corex` as separate processes: children killed when the test
//! ends, signals, the `corex` command against a coordinator's endpoint, polling.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const CORE: &str = env!("CARGO_BIN_EXE_corex");

/// A child process that is killed when the test ends, however it ends.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(args: &[&str], log: &Path, filter: &str) -> Process {
    let log = std::fs::File::create(log).unwrap();
    Process(
        Command::new(CORE)
            .args(args)
            .env("RUST_LOG", filter)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

pub fn signal(process: &Process, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(process.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

pub fn corex_unchecked(args: &[&str], endpoint: &serde_json::Value, key: &Path) -> Output {
    Command::new(CORE)
        .args(args)
        .arg("--coordinator")
        .arg(endpoint["url"].as_str().unwrap())
        .arg("--pin")
        .arg(endpoint["fingerprint"].as_str().unwrap())
        .arg("--key")
        .arg(key)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn corex(args: &[&str], endpoint: &serde_json::Value, key: &Path) -> Output {
    let output = corex_unchecked(args, endpoint, key);
    assert!(
        output.status.success(),
        "corex {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn status(id: &str, endpoint: &serde_json::Value, key: &Path) -> serde_json::Value {
    let output = corex(&["job", "status", id, "--json"], endpoint, key);
    serde_json::from_slice(&output.stdout).unwrap()
}

pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The arguments of `corex node` against `coordinator` (pinned to `pin`), one compute thread
/// on the CPU backend, its files in `dir`.
pub fn node_args(coordinator: &str, pin: &str, dir: &Path) -> Vec<String> {
    [
        "node",
        "--coordinator",
        coordinator,
        "--pin",
        pin,
        "--threads",
        "1",
        "--backend",
        "cpu",
        "--data-dir",
        dir.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}
