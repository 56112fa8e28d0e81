//! Several hosts on one machine, and a network that misbehaves: the coordinator and three node
//! agents each in a Linux network namespace of their own, joined by veth pairs on a bridge,
//! with addresses of this test's own. The same job runs twice: on the clean network, then
//! with faults: node 1 behind a slow link (`tbf`, 8 Mbit/s), node 2 cut off (`ip link set …
//! down`) for twice the job's lease, node 3 behind this test's seeded fault proxy (200 ms ±
//! 50 ms per forwarded chunk each way, stalled chunks, connections cut). The job completes and
//! no honest node is rejected; the figures (rounds, fragments re-issued, wall time against the
//! clean run) are printed. Needs root and network namespaces; says so and stops where the
//! kernel or the sandbox does not allow them.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod processes;

use processes::{CORE, Process, node_args, wait_until};

const SUBNET: &str = "10.77.0";
const COORDINATOR_ADDRESS: &str = "10.77.0.1";
const ROOT_ADDRESS: &str = "10.77.0.254";
const PORT: u16 = 7443;
const LEASE_MS: u64 = 2_000;
const PROXY_SEED: u64 = 21;
const ROUNDS: u32 = 60;

/// Runs a shell command line, panicking with its output when it fails.
fn sh(line: &str) {
    let output = Command::new("sh").arg("-c").arg(line).output().unwrap();
    assert!(
        output.status.success(),
        "`{line}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The namespaces and links of one run; torn down when dropped.
struct Network {
    prefix: String,
}

impl Network {
    /// Namespaces `<prefix>hub` (the bridge), `<prefix>c` (coordinator), `<prefix>n1..3`, and
    /// a veth from this (root) namespace into the bridge for the fault proxy. `None` when the
    /// kernel or the sandbox does not allow it (why is printed).
    fn create() -> Option<Self> {
        let prefix = format!("cx{}", std::process::id() % 10_000);
        let probe = Command::new("ip")
            .args(["netns", "add", &format!("{prefix}hub")])
            .output();
        match probe {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                println!(
                    "SKIPPED: network namespaces are not allowed here (`ip netns add`: {})",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                return None;
            }
            Err(error) => {
                println!("SKIPPED: no `ip` command ({error})");
                return None;
            }
        }
        let network = Self { prefix };
        let p = &network.prefix;
        sh(&format!(
            "ip -n {p}hub link add br0 type bridge && ip -n {p}hub link set br0 up"
        ));
        for (host, last) in [("c", 1), ("n1", 11), ("n2", 12), ("n3", 13)] {
            sh(&format!(
                "ip netns add {p}{host} && \
                 ip link add {p}{host}h type veth peer name {p}{host}b && \
                 ip link set {p}{host}h netns {p}{host} && \
                 ip link set {p}{host}b netns {p}hub && \
                 ip -n {p}hub link set {p}{host}b master br0 up && \
                 ip -n {p}{host} link set lo up && \
                 ip -n {p}{host} addr add {SUBNET}.{last}/24 dev {p}{host}h && \
                 ip -n {p}{host} link set {p}{host}h up"
            ));
        }
        sh(&format!(
            "ip link add {p}rh type veth peer name {p}rb && \
             ip link set {p}rb netns {p}hub && \
             ip -n {p}hub link set {p}rb master br0 up && \
             ip addr add {ROOT_ADDRESS}/24 dev {p}rh && ip link set {p}rh up"
        ));
        Some(network)
    }

    fn namespace(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    /// The interface of `host` on the bridge, inside its namespace.
    fn interface(&self, host: &str) -> String {
        format!("{}{host}h", self.prefix)
    }

    /// `corex args` inside `host`'s namespace, logged to `log`.
    fn spawn(&self, host: &str, args: &[&str], log: &Path) -> Process {
        let file = std::fs::File::create(log).unwrap();
        Process(
            Command::new("ip")
                .args(["netns", "exec", &self.namespace(host), CORE])
                .args(args)
                .env("RUST_LOG", "info")
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap(),
        )
    }

    /// `corex args` inside `host`'s namespace, waited for.
    fn run(&self, host: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.namespace(host), CORE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let p = &self.prefix;
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{p}rh")])
            .output();
        for host in ["c", "n1", "n2", "n3", "hub"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{p}{host}")])
                .output();
        }
    }
}

/// A seeded fault-injecting TCP proxy. Every chunk forwarded, either way, arrives 200 ms ±
/// 50 ms after it was read (latency, not a throughput limit: chunks in flight overlap, in
/// order); one chunk in 40 is stalled 1.5 s more; every connection is cut 4 to 8 s after
/// it opened (the node reconnects).
struct FaultProxy {
    address: String,
    chunks: Arc<AtomicU64>,
    cut: Arc<AtomicU64>,
}

/// xorshift64*: the proxy's seeded draws.
fn draw(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

impl FaultProxy {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind(format!("{ROOT_ADDRESS}:0")).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let chunks = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicU64::new(0));
        let (counted, cuts) = (chunks.clone(), cut.clone());
        std::thread::spawn(move || {
            for (index, client) in listener.incoming().enumerate() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut state = (PROXY_SEED.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64) | 1;
                // Every connection is cut after 4 to 8 s (long enough to register and prove the
                // node's capability on the first one).
                let cut_after = Duration::from_millis(4_000 + draw(&mut state) % 4_001);
                for (from, to, salt, limit) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        1,
                        Some(cut_after),
                    ),
                    (server, client, 2, None),
                ] {
                    let (counted, cuts) = (counted.clone(), cuts.clone());
                    std::thread::spawn(move || {
                        if pump(from, to, state ^ salt, limit, &counted) {
                            cuts.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            }
        });
        Self {
            address,
            chunks,
            cut,
        }
    }
}

/// Forwards `from` to `to` with the proxy's delays; true when it cut the connection, at the
/// first chunk after it had lived `limit`.
fn pump(
    mut from: TcpStream,
    to: TcpStream,
    seed: u64,
    limit: Option<Duration>,
    counted: &AtomicU64,
) -> bool {
    let opened = Instant::now();
    let (sender, receiver) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let mut writer = to.try_clone().unwrap();
    let delivery = std::thread::spawn(move || {
        for (due, bytes) in receiver {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if writer.write_all(&bytes).is_err() {
                break;
            }
        }
    });
    let mut state = seed | 1;
    let mut buffer = vec![0u8; 16 * 1024];
    let mut last_due = Instant::now();
    let mut cut = false;
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let mut delay_ms = 150 + draw(&mut state) % 101;
        if draw(&mut state).is_multiple_of(40) {
            delay_ms += 1_500;
        }
        // In order: a chunk never overtakes the one before it.
        last_due = last_due.max(Instant::now() + Duration::from_millis(delay_ms));
        if sender.send((last_due, buffer[..read].to_vec())).is_err() {
            break;
        }
        counted.fetch_add(1, Ordering::Relaxed);
        if limit.is_some_and(|limit| opened.elapsed() >= limit) {
            cut = true;
            break;
        }
    }
    drop(sender);
    let _ = delivery.join();
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    cut
}

/// The job's status (as the owner reads it inside the coordinator's namespace).
fn status(
    network: &Network,
    id: &str,
    url: &str,
    pin: &str,
    key: &Path,
) -> Option<serde_json::Value> {
    let output = network.run(
        "c",
        &[
            "job",
            "status",
            id,
            "--json",
            "--coordinator",
            url,
            "--pin",
            pin,
            "--key",
            key.to_str().unwrap(),
        ],
    );
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).ok())
        .flatten()
}

struct RunFigures {
    wall_s: f64,
    status: serde_json::Value,
}

/// One run of the job on `network`; with `faults`, the three faults are applied to the nodes.
fn run_job(network: &Network, root: &Path, faults: bool) -> RunFigures {
    let data = root.join("coordinator");
    let listen = format!("{COORDINATOR_ADDRESS}:{PORT}");
    let _coordinator = network.spawn(
        "c",
        &[
            "coordinator",
            "--listen",
            &listen,
            "--data-dir",
            data.to_str().unwrap(),
            "--allow-shared-hardware",
            "--admission",
            "open",
        ],
        &root.join("coordinator.log"),
    );
    let endpoint_file = data.join("endpoint.json");
    wait_until("the coordinator", Duration::from_secs(60), || {
        endpoint_file.exists()
    });
    let endpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&endpoint_file).unwrap()).unwrap();
    let url = endpoint["url"].as_str().unwrap().to_owned();
    let pin = endpoint["fingerprint"].as_str().unwrap().to_owned();

    let proxy = faults.then(|| FaultProxy::start(format!("{COORDINATOR_ADDRESS}:{PORT}")));
    if faults {
        let n1 = network.namespace("n1");
        let dev = network.interface("n1");
        let shaped = Command::new("ip")
            .args([
                "netns", "exec", &n1, "tc", "qdisc", "add", "dev", &dev, "root", "tbf",
            ])
            .args(["rate", "8mbit", "burst", "32kb", "latency", "400ms"])
            .output()
            .unwrap();
        if !shaped.status.success() {
            println!(
                "SKIPPED the slow link (no tbf here: {})",
                String::from_utf8_lossy(&shaped.stderr).trim()
            );
        }
    }
    let _nodes: Vec<Process> = ["n1", "n2", "n3"]
        .iter()
        .map(|host| {
            let coordinator = match (&proxy, *host) {
                (Some(proxy), "n3") => format!("https://{}", proxy.address),
                _ => url.clone(),
            };
            let args = node_args(&coordinator, &pin, &root.join(host));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            network.spawn(host, &args, &root.join(format!("{host}.log")))
        })
        .collect();

    // Every node proven before the job comes (the proxied one takes seconds to register).
    let log = root.join("coordinator.log");
    wait_until("three proven nodes", Duration::from_secs(180), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("capability challenge answered")
            .count()
            >= 3
    });
    let mut spec = corex_core::JobSpec::digits_gradient();
    spec.name = "network-faults".into();
    spec.model = corex_core::ModelSpec::mlp(64, vec![64], 10);
    spec.rounds = ROUNDS;
    spec.global_batch = 384;
    spec.fragment_samples = 64;
    spec.lease_ms = LEASE_MS;
    let spec_path = root.join("job.toml");
    std::fs::write(&spec_path, spec.to_toml()).unwrap();
    let key = root.join("owner.key");
    let submitted = network.run(
        "c",
        &[
            "job",
            "submit",
            spec_path.to_str().unwrap(),
            "--coordinator",
            &url,
            "--pin",
            &pin,
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let id = String::from_utf8(submitted.stdout)
        .unwrap()
        .trim()
        .to_owned();
    let started = Instant::now();

    let mut partitioned = !faults;
    let deadline = Instant::now() + Duration::from_secs(600);
    let finished = loop {
        let current = status(network, &id, &url, &pin, &key);
        if let Some(current) = &current {
            if current["state"]["state"] != "running" {
                break current.clone();
            }
            // Node 2 is cut off for twice the lease once the job is a third done.
            if !partitioned && current["round"].as_u64().unwrap_or(0) >= u64::from(ROUNDS / 3) {
                partitioned = true;
                let (n2, dev) = (network.namespace("n2"), network.interface("n2"));
                sh(&format!("ip -n {n2} link set {dev} down"));
                std::thread::sleep(Duration::from_millis(2 * LEASE_MS));
                sh(&format!("ip -n {n2} link set {dev} up"));
                println!("node 2 was cut off for {} ms", 2 * LEASE_MS);
            }
        }
        assert!(Instant::now() < deadline, "the job never ended");
        std::thread::sleep(Duration::from_millis(200));
    };
    if faults {
        let log = std::fs::read_to_string(root.join("n3.log")).unwrap_or_default();
        println!(
            "node 3 (behind the proxy): {} warnings (fragments it could not finish: model fetches and results too late for rounds of milliseconds)",
            log.matches("WARN").count()
        );
    }
    if let Some(proxy) = &proxy {
        println!(
            "fault proxy: {} chunks forwarded 150–250 ms late, {} connections cut",
            proxy.chunks.load(Ordering::Relaxed),
            proxy.cut.load(Ordering::Relaxed)
        );
    }
    RunFigures {
        wall_s: started.elapsed().as_secs_f64(),
        status: finished,
    }
}

#[test]
fn a_job_completes_over_a_slow_link_a_partition_delays_stalls_and_cuts() {
    let Some(network) = Network::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clean_root: PathBuf = dir.path().join("clean");
    let faulty_root: PathBuf = dir.path().join("faulty");
    std::fs::create_dir_all(&clean_root).unwrap();
    std::fs::create_dir_all(&faulty_root).unwrap();
    let clean = run_job(&network, &clean_root, false);
    let faulty = run_job(&network, &faulty_root, true);
    for (name, run) in [("clean", &clean), ("faults", &faulty)] {
        for (node, contribution) in run.status["nodes"].as_object().unwrap() {
            println!(
                "  {name}: node {} {} fragments, {} audits, {} rejected",
                &node[..8],
                contribution["fragments"],
                contribution["audits_done"],
                contribution["rejected"]
            );
        }
        println!(
            "{name}: {} of {} rounds, {} fragments re-issued, {:.1} s wall, state {}",
            run.status["round"],
            run.status["rounds"],
            run.status["re_issued_fragments"],
            run.wall_s,
            run.status["state"]["state"]
        );
    }
    println!(
        "wall time with faults / clean: {:.2}×",
        faulty.wall_s / clean.wall_s
    );
    assert_eq!(
        faulty.status["state"]["state"], "finished",
        "{}",
        faulty.status
    );
    assert_eq!(faulty.status["round"], ROUNDS);
    for (node, contribution) in faulty.status["nodes"].as_object().unwrap() {
        assert_eq!(
            contribution["rejected"], 0,
            "honest node {node} had results rejected: {contribution}"
        );
    }
}
