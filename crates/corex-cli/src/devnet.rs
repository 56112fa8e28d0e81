//! `corex devnet`: a coordinator and N node processes on 127.0.0.1 that run one job (training,
//! or inference or a transform).
//!
//! The devnet starts real processes of this binary, talks to them only over the signed, pinned
//! TLS API, shows a live progress bar, and keeps everything it made (keys, logs, weights or
//! outputs, report) in its data directory so the run can be inspected and audited afterwards.
//! Ctrl-C stops every process it started.
//!
//! A federated devnet stands for data owners too: it deals the digits training split out by
//! class into each node's `local-data.csv` (in the node's own directory, read only by that
//! node) and names the nodes as the job's data holders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use corex_core::messages::{JobReport, JobState, NodeInfo};
use corex_core::{ComputeBackend, DataHolder, Hash, JobSpec, NodeId, PrivacySpec};
use corex_net::{CoordinatorClient, load_or_create_keypair};
use serde::{Deserialize, Serialize};

use crate::devnet_follow::{follow, wait_for_nodes, wait_for_settlement, warm_up};
use crate::endpoint::Endpoint;
use crate::processes::Children;
use crate::serve::shutdown_signal;

const MARKER: &str = "devnet.json";

pub struct DevnetOptions {
    pub nodes: u32,
    pub data_dir: PathBuf,
    pub spec: JobSpec,
    pub threads: u32,
    pub timeout: Duration,
    pub show_progress: bool,
    /// The first nodes cheat this way, one kind per node (the adversary kit).
    pub adversaries: Vec<corex_node::Adversary>,
    /// Let the nodes, which share this machine, replay each other's results; otherwise the
    /// coordinator replays every audit, as it does for nodes on one machine in production.
    pub node_audits: bool,
    /// Device profiles of the first nodes (the rest are fast).
    pub profiles: Vec<Profile>,
    /// Run the federated digits job instead of `spec`, every node a data holder.
    pub federated: Option<FederatedDevnet>,
    /// Load the explorer's pages every second while the job runs (`bench overhead --explorer`).
    pub explorer_poll: bool,
    /// Shape each node's link to the coordinator to this rate each way (see `link`).
    pub link: Option<crate::link::LinkRate>,
    /// Run the job first with another seed, for enough rounds that its nodes' audit rates
    /// reach the floor (`devnet_follow::warm_up`), on the same network: they then come to the
    /// reported job with the audit records the first earned (they persist across jobs).
    pub warm_up: bool,
}

/// Where a devnet stood when its warm-up job had finished (see [`DevnetOptions::warm_up`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarmUp {
    pub job: Hash,
    pub wall_s: f64,
    /// CPU seconds of this process, and of each devnet process by name, at that moment.
    pub own_cpu_s: f64,
    pub process_cpu_s: Vec<(String, f64)>,
}

/// A federated devnet: [`JobSpec::digits_federated`] with this privacy.
#[derive(Debug, Clone, Copy)]
pub struct FederatedDevnet {
    pub privacy: Option<PrivacySpec>,
}

/// A device profile a devnet node stands for: a speed (its work slowed down to stand for
/// weaker hardware) and the backend it computes on. Written `SPEED`, `BACKEND` or
/// `SPEED+BACKEND` (`edge`, `wgpu`, `medium+wgpu`); the default is `fast+cpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub speed: Speed,
    pub backend: ComputeBackend,
}

/// How fast a devnet node works, against this machine's speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speed {
    Fast,
    Medium,
    Edge,
}

impl Speed {
    const ALL: [Speed; 3] = [Self::Fast, Self::Medium, Self::Edge];

    /// How many times slower than this machine the node works.
    pub fn slowdown(self) -> u32 {
        match self {
            Self::Fast => 1,
            Self::Medium => 3,
            Self::Edge => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Medium => "medium",
            Self::Edge => "edge",
        }
    }
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            speed: Speed::Fast,
            backend: ComputeBackend::Cpu,
        }
    }
}

impl Profile {
    /// `speed+backend`, as written on the command line.
    pub fn name(self) -> String {
        format!("{}+{}", self.speed.name(), self.backend)
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut profile = Profile::default();
        for part in text.split('+') {
            if let Some(speed) = Speed::ALL.into_iter().find(|speed| speed.name() == part) {
                profile.speed = speed;
            } else if let Ok(backend) = part.parse::<ComputeBackend>() {
                profile.backend = backend;
            } else {
                return Err(format!(
                    "unknown profile part '{part}' in '{text}': a speed (fast, medium, edge) \
                     and/or a backend (cpu, wgpu, cuda), joined by '+'"
                ));
            }
        }
        Ok(profile)
    }
}

/// What a devnet run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevnetOutcome {
    pub job: Hash,
    pub report: JobReport,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Each node's name and role (honest, or the adversary it plays).
    pub roles: BTreeMap<NodeId, String>,
    pub data_dir: PathBuf,
    pub weights_path: PathBuf,
    /// Where the rows of an inference or transform job went (`outputs.f32`, with
    /// `outputs.indices.u32`), when it finished.
    #[serde(default)]
    pub outputs_path: Option<PathBuf>,
    pub report_path: PathBuf,
    pub wall_s: f64,
    /// CPU seconds of each process just before it was stopped, by name.
    pub process_cpu_s: Vec<(String, f64)>,
    /// Whether nodes replayed each other's results (see [`DevnetOptions::node_audits`]).
    #[serde(default)]
    pub node_audits: bool,
    /// The coordinator's ledger, audited after every process stopped.
    pub ledger: Option<crate::ledger::LedgerAudit>,
    /// Explorer pages loaded while the job ran (with [`DevnetOptions::explorer_poll`]).
    #[serde(default)]
    pub explorer_pages: u64,
    /// Bytes the coordinator moved over the whole run, from its `/metrics` at the end.
    #[serde(default)]
    pub transfer: Option<crate::transfer::Transfer>,
    /// The warm-up job run first, if any; `wall_s` then counts from its end.
    #[serde(default)]
    pub warm_up: Option<WarmUp>,
}

impl DevnetOutcome {
    pub fn succeeded(&self) -> bool {
        self.report.status.state == JobState::Finished
    }
}

pub async fn run(options: DevnetOptions) -> anyhow::Result<DevnetOutcome> {
    anyhow::ensure!(options.nodes >= 1, "a devnet needs at least one node");
    prepare_data_dir(&options.data_dir)?;
    let mut children = Children::new();
    let outcome = tokio::select! {
        outcome = drive(&options, &mut children) => outcome,
        () = shutdown_signal() => Err(anyhow::anyhow!("interrupted; stopping every devnet process")),
    };
    children.stop_all(Duration::from_secs(5)).await;
    let mut outcome = outcome?;
    // Every process has stopped, so the ledger file is free: audit it and keep the result.
    outcome.ledger = Some(crate::ledger::audit(&outcome.data_dir)?);
    std::fs::write(&outcome.report_path, serde_json::to_vec_pretty(&outcome)?)?;
    std::fs::write(
        outcome.data_dir.join(MARKER),
        serde_json::to_vec_pretty(&serde_json::json!({
            "nodes": options.nodes, "job": outcome.job, "finished": outcome.succeeded()
        }))?,
    )?;
    Ok(outcome)
}

/// A devnet directory is reused only if a devnet made it; anything else is left alone.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        anyhow::ensure!(
            empty || dir.join(MARKER).exists(),
            "{} exists and is not a devnet directory; choose another --data-dir",
            dir.display()
        );
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::write(dir.join(MARKER), b"{\"state\": \"running\"}")?;
    Ok(())
}

async fn drive(options: &DevnetOptions, children: &mut Children) -> anyhow::Result<DevnetOutcome> {
    let started = Instant::now();
    let dir = std::fs::canonicalize(&options.data_dir)?;
    let coordinator_dir = dir.join("coordinator");
    std::fs::create_dir_all(&coordinator_dir)?;
    let mut coordinator_args = vec![
        "coordinator".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        coordinator_dir.display().to_string(),
        "--threads".into(),
        options.threads.to_string(),
        // A devnet admits any key as a job owner.
        "--admission".into(),
        "open".into(),
        // Two-second ledger epochs (the main rules' half-life), so a job of seconds is paid.
        "--devnet-ledger".into(),
    ];
    // Every devnet node runs on this one machine: the Sybil limits (nodes per device
    // fingerprint and per endpoint) are lifted, and with node audits the nodes may audit
    // each other.
    if options.node_audits {
        coordinator_args.push("--allow-shared-hardware".into());
    } else {
        for limit in ["--max-nodes-per-fingerprint", "--max-nodes-per-endpoint"] {
            coordinator_args.extend([limit.into(), options.nodes.to_string()]);
        }
    }
    children.spawn(
        "coordinator",
        &coordinator_args,
        &[("RUST_LOG", child_log_filter())],
        &dir.join("logs/coordinator.log"),
    )?;
    let endpoint = wait_for_endpoint(&coordinator_dir, children).await?;
    let collusion = dir.join("collusion");
    if !options.adversaries.is_empty() {
        std::fs::create_dir_all(&collusion)?;
    }
    let spec = match options.federated {
        Some(federated) => deal_local_data(&dir, options.nodes, federated.privacy)?,
        None => options.spec.clone(),
    };
    let owner = load_or_create_keypair(&dir.join("owner.key"))?;
    let mut relays = Vec::new();
    for index in 1..=options.nodes {
        let name = format!("node-{index}");
        // Each node's own shaped link to the coordinator, when asked for.
        let url = match options.link {
            Some(rate) => {
                let upstream = endpoint.url.trim_start_matches("https://").parse()?;
                let (relay, task) = crate::link::relay(upstream, rate).await?;
                relays.push(task);
                format!("https://{relay}")
            }
            None => endpoint.url.clone(),
        };
        let mut args = vec![
            "node".into(),
            "--coordinator".into(),
            url,
            "--pin".into(),
            endpoint.fingerprint.clone(),
            "--data-dir".into(),
            dir.join(&name).display().to_string(),
            "--threads".into(),
            options.threads.to_string(),
            "--slowdown".into(),
            profile(options, index).speed.slowdown().to_string(),
            "--backend".into(),
            profile(options, index).backend.to_string(),
        ];
        if !options.adversaries.is_empty() {
            // Every node leaks its results where copying adversaries can find them.
            args.extend(["--collusion-dir".into(), collusion.display().to_string()]);
        }
        if let Some(adversary) = options.adversaries.get(index as usize - 1) {
            args.extend(["--adversary".into(), adversary.name().into()]);
        }
        if options.federated.is_some() {
            let local = dir.join(&name).join(LOCAL_DATA);
            args.extend(["--local-data".into(), local.display().to_string()]);
            // The holders agree to compute the devnet owner's job.
            args.extend(["--holder-allow-owner".into(), owner.id().to_hex()]);
        }
        children.spawn(
            &name,
            &args,
            &[("RUST_LOG", child_log_filter())],
            &dir.join(format!("logs/{name}.log")),
        )?;
    }

    let client = CoordinatorClient::new(&endpoint.url, &endpoint.fingerprint, owner)?;
    wait_for_nodes(&client, options.nodes, children).await?;
    // A devnet's job is public, so that its explorer shows it (a federated job's stays private).
    let spec = JobSpec {
        public: spec.public || spec.federated.is_none(),
        ..spec
    };
    let warm_up = match options.warm_up {
        true => Some(warm_up(&client, &spec, options, children, started).await?),
        false => None,
    };
    let job = client.submit_job(&spec).await?;
    if options.show_progress {
        println!(
            "explorer: {}/explorer/jobs/{} · metrics: {}/metrics",
            endpoint.url,
            job.to_hex(),
            endpoint.url
        );
    }
    let loaded = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let poller = options.explorer_poll.then(|| {
        let poll = crate::explorer_poll::poll_explorer(client.clone(), job, loaded.clone());
        tokio::spawn(poll)
    });
    let followed = follow(&client, &job, &spec, options, children).await;
    if let Some(poller) = poller {
        poller.abort();
    }
    let report = followed?;
    wait_for_settlement(&client).await?;
    let transfer = match client.send_raw("GET", "/metrics", Vec::new(), None).await {
        Ok((200, body)) => crate::transfer::Transfer::from_metrics(&String::from_utf8_lossy(&body)),
        _ => None,
    };

    let weights_path = dir.join("weights.safetensors");
    let report_path = dir.join("report.json");
    let mut outputs_path = None;
    if report.status.state == JobState::Finished {
        if spec.work.trains() {
            std::fs::write(&weights_path, client.download_weights(&job).await?)?;
        } else {
            let values = dir.join("outputs.f32");
            crate::job::download_outputs(&client, &job, &values).await?;
            outputs_path = Some(values);
        }
    }
    let nodes = client.nodes().await?;
    let mut roles = BTreeMap::new();
    for index in 1..=options.nodes {
        let key = corex_net::load_keypair(&dir.join(format!("node-{index}")).join("node.key"))?;
        let role = options
            .adversaries
            .get(index as usize - 1)
            .map_or("honest", |adversary| adversary.name());
        roles.insert(
            key.id(),
            format!("node-{index} {} {role}", profile(options, index).name()),
        );
    }
    for relay in relays {
        relay.abort();
    }
    let outcome = DevnetOutcome {
        job,
        report,
        nodes,
        roles,
        data_dir: dir,
        weights_path,
        outputs_path,
        report_path: report_path.clone(),
        wall_s: started.elapsed().as_secs_f64() - warm_up.as_ref().map_or(0.0, |w| w.wall_s),
        process_cpu_s: children.cpu_seconds(),
        node_audits: options.node_audits,
        ledger: None,
        explorer_pages: loaded.load(std::sync::atomic::Ordering::Relaxed),
        transfer,
        warm_up,
    };
    std::fs::write(&report_path, serde_json::to_vec_pretty(&outcome)?)?;
    Ok(outcome)
}

/// Where a federated devnet node keeps its local data, inside its own directory.
const LOCAL_DATA: &str = "local-data.csv";

/// Deals the digits training split out by class to nodes 1..=`nodes` (their keys are made
/// here, so the job can name them), writes each share as the node's local CSV, and returns
/// the federated job over them.
fn deal_local_data(
    dir: &Path,
    nodes: u32,
    privacy: Option<PrivacySpec>,
) -> anyhow::Result<JobSpec> {
    let template = JobSpec::digits_federated(Vec::new(), privacy);
    let digits = corex_ml::Dataset::digits()?;
    let split = digits.split(template.dataset.test_fraction, template.dataset.split_seed);
    let shares =
        corex_ml::class_skewed_partition(&digits, &split.train, nodes as usize, template.seed)?;
    let mut holders = Vec::with_capacity(shares.len());
    for (index, share) in shares.iter().enumerate() {
        let node_dir = dir.join(format!("node-{}", index + 1));
        let key = load_or_create_keypair(&node_dir.join("node.key"))?;
        std::fs::write(node_dir.join(LOCAL_DATA), digits.subset(share)?.to_csv())?;
        holders.push(DataHolder {
            node: key.id(),
            samples: share.len() as u32,
        });
    }
    let spec = JobSpec::digits_federated(holders, privacy);
    spec.validate()?;
    Ok(spec)
}

/// The log filter of the processes devnet starts: `RUST_LOG` when set, else `info`.
fn child_log_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())
}

/// The profile of node `index` (1-based).
fn profile(options: &DevnetOptions, index: u32) -> Profile {
    options
        .profiles
        .get(index as usize - 1)
        .copied()
        .unwrap_or_default()
}

async fn wait_for_endpoint(dir: &Path, children: &mut Children) -> anyhow::Result<Endpoint> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(endpoint) = Endpoint::read(dir)? {
            return Ok(endpoint);
        }
        if let Some(name) = children.exited() {
            anyhow::bail!(
                "{name} exited during start-up; see its log in the devnet's logs/ folder"
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the coordinator did not start within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
