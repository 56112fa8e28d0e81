//! A coordinator served on 127.0.0.1 over real TLS, with node agents as tasks, for tests.

use std::time::{Duration, Instant};

use corex_coordinator::CoordinatorConfig;
use corex_core::fragment::result_commitment;
use corex_core::messages::{ApiError, JobState, JobStatus, ResultHeader};
use corex_core::trace::{StepTrace, checkpoint_root, segment_bounds, traced_commitment};
use corex_core::{DatasetSource, DatasetSpec, Hash, JobSpec, Keypair, ModelSpec, OptimizerSpec};
use corex_ml::Dataset;
use corex_net::{CoordinatorClient, TlsIdentity};
use corex_node::{Adversary, NodeAgent, NodeConfig};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

type NodeTask = (
    watch::Sender<bool>,
    JoinHandle<Result<corex_node::NodeRunSummary, corex_node::NodeError>>,
);

pub struct TestNet {
    pub url: String,
    pub pin: String,
    stop_server: Option<oneshot::Sender<()>>,
    server: Option<Server>,
    nodes: Vec<NodeTask>,
    pub dir: tempfile::TempDir,
}

impl TestNet {
    pub async fn start(config: CoordinatorConfig) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), config).await
    }

    /// A coordinator on the data directory `dir` (a restart, when `dir` holds an earlier
    /// run's files): the same key, certificate and ledger.
    pub async fn start_in(dir: tempfile::TempDir, config: CoordinatorConfig) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let (pin, stop_server, server) = serve(&dir, listener, config);
        Self {
            url,
            pin,
            stop_server: Some(stop_server),
            server: Some(server),
            nodes: Vec::new(),
            dir,
        }
    }

    /// Stops the coordinator, leaving the nodes running, and starts a fresh one on the same
    /// data directory and address (what a process restart looks like to the nodes).
    pub async fn restart_server(&mut self, config: CoordinatorConfig) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let address = self.url.trim_start_matches("https://");
        let listener = std::net::TcpListener::bind(address).unwrap();
        let (pin, stop_server, server) = serve(&self.dir, listener, config);
        assert_eq!(pin, self.pin, "the same certificate");
        self.stop_server = Some(stop_server);
        self.server = Some(server);
    }

    /// A client signing with the key made from `seed`.
    pub fn client(&self, seed: u8) -> CoordinatorClient {
        CoordinatorClient::new(&self.url, &self.pin, Keypair::from_secret([seed; 32])).unwrap()
    }

    /// Starts a real node agent (as a task) with the key made from `seed`.
    pub fn spawn_node(&mut self, seed: u8) {
        self.spawn_node_with(seed, NodeConfig::default());
    }

    /// Starts a node agent with `config` (an adversary, a collusion directory).
    pub fn spawn_node_with(&mut self, seed: u8, config: NodeConfig) {
        let key = Keypair::from_secret([seed; 32]);
        let client = CoordinatorClient::new(&self.url, &self.pin, key.clone()).unwrap();
        self.spawn_node_via(key, client, config);
    }

    /// Starts a node agent signing as `key` that talks through `client` (its own transfer
    /// policy, or a relay in front of the coordinator).
    pub fn spawn_node_via(&mut self, key: Keypair, client: CoordinatorClient, config: NodeConfig) {
        let (stop, stopped) = watch::channel(false);
        let config = NodeConfig {
            compute_threads: 1,
            lease_wait_ms: 1_000,
            ..config
        };
        let handle = tokio::spawn(NodeAgent::new(client, key, config).run(stopped));
        self.nodes.push((stop, handle));
    }

    /// Stops every node; what each run did, in the order they were started.
    pub async fn stop_nodes(&mut self) -> Vec<corex_node::NodeRunSummary> {
        let mut summaries = Vec::new();
        for (stop, handle) in self.nodes.drain(..) {
            let _ = stop.send(true);
            summaries.push(handle.await.unwrap().unwrap());
        }
        summaries
    }

    /// Stops every node and the server; returns the coordinator's data directory, which
    /// lives as long as the returned value.
    pub async fn shutdown(mut self) -> tempfile::TempDir {
        for (stop, handle) in self.nodes.drain(..) {
            let _ = stop.send(true);
            let _ = handle.await;
        }
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.dir
    }
}

type Server = JoinHandle<Result<(), corex_coordinator::CoordinatorError>>;

/// Serves a coordinator on `listener` from `dir`: its certificate pin, its stop switch, its task.
fn serve(
    dir: &tempfile::TempDir,
    listener: std::net::TcpListener,
    config: CoordinatorConfig,
) -> (String, oneshot::Sender<()>, Server) {
    let tls = TlsIdentity::load_or_create(dir.path()).unwrap();
    let pin = tls.fingerprint();
    let (stop_server, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(corex_coordinator::run(
        listener,
        Keypair::from_secret([200; 32]),
        tls,
        config,
        dir.path().to_owned(),
        async move {
            let _ = stopped.await;
        },
    ));
    (pin, stop_server, server)
}

/// Polls until at least `count` nodes have answered their capability challenge (so that a job
/// submitted next finds them all ready to work), or panics after `timeout`.
pub async fn wait_for_proven_nodes(client: &CoordinatorClient, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let proven = client
            .nodes()
            .await
            .unwrap()
            .values()
            .filter(|info| info.capability.is_some())
            .count();
        if proven >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{proven} of {count} nodes proved their capability in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the job leaves the running state, or panics after `timeout`.
pub async fn wait_for_end(client: &CoordinatorClient, job: &Hash, timeout: Duration) -> JobStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let status = client.job_status(job).await.unwrap();
        if status.state != JobState::Running {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "job did not finish in {timeout:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small digits job that trains in seconds.
pub fn small_job(optimizer: OptimizerSpec) -> JobSpec {
    JobSpec {
        name: "small-digits".into(),
        model: ModelSpec::mlp(64, vec![32], 10),
        dataset: DatasetSpec {
            source: DatasetSource::Digits,
            test_fraction: 0.2,
            split_seed: 3,
            scaling: Default::default(),
        },
        optimizer,
        rounds: 12,
        global_batch: 200,
        fragment_samples: 64,
        seed: 11,
        eval_every: 4,
        schedule: Default::default(),
        aggregation: corex_core::spec::AggregationSpec::Mean,
        lease_ms: 10_000,
        work: corex_core::WorkSpec::Gradient,
        granularity: corex_core::Granularity::Fixed,
        federated: None,
        public: false,
        compression: corex_core::compression::CompressionSpec::None,
        download_compression: corex_core::compression::CompressionSpec::None,
    }
}

pub fn adam() -> OptimizerSpec {
    OptimizerSpec::Adam {
        learning_rate: 0.01,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
    }
}

/// Single-process training of `spec` on `data` on the CPU, over the batches the coordinator
/// draws for it: `(initial weights, trained weights)`.
pub fn single_process_training(spec: &JobSpec, data: &Dataset) -> (Vec<f32>, Vec<f32>) {
    let split = data.split_for(
        &spec.model,
        spec.dataset.test_fraction,
        spec.dataset.split_seed,
    );
    let batches: Vec<Vec<u32>> = (0..spec.rounds)
        .map(|round| {
            corex_scheduler::round_batch(&split.train, spec.global_batch, spec.seed, round)
        })
        .collect();
    let initial = corex_ml::init_parameters(&spec.model, spec.seed);
    let trained =
        corex_ml::train_reference(&spec.model, &initial, &spec.optimizer, data, &batches).unwrap();
    (initial, trained)
}

pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / norm).sqrt()
}

/// A signed request; asserts the status and error code, returns the message.
pub async fn expect_error(
    client: &CoordinatorClient,
    method: &str,
    path: &str,
    body: Vec<u8>,
    status: u16,
    code: &str,
) -> String {
    let headers = client.signed_headers(method, path, &body).unwrap();
    let (got, bytes) = client
        .send_raw(method, path, body, Some(&headers))
        .await
        .unwrap();
    assert_refused(got, &bytes, status, code)
}

/// Asserts that an answer is the JSON error `code` with `status` and a message; returns it.
pub fn assert_refused(got: u16, bytes: &[u8], status: u16, code: &str) -> String {
    let error: ApiError = serde_json::from_slice(bytes).unwrap_or_else(|_| {
        panic!(
            "expected a JSON error, got {got} {}",
            String::from_utf8_lossy(bytes)
        )
    });
    assert_eq!(
        (got, error.error.as_str()),
        (status, code),
        "message: {}",
        error.message
    );
    assert!(!error.message.is_empty());
    error.message
}

/// The header `key` signs for a result of `id` at `model` whose tensor bytes hash to
/// `result_hash`, with `trace` bound into the commitment when there is one.
pub fn signed_header(
    key: &Keypair,
    id: Hash,
    model: Hash,
    result_hash: Hash,
    loss: f32,
    samples: u32,
    trace: Option<StepTrace>,
) -> ResultHeader {
    let mut commitment = result_commitment(&key.id(), &id, &model, &result_hash);
    if let Some(trace) = &trace {
        commitment = traced_commitment(&commitment, trace);
    }
    ResultHeader {
        feedback: None,
        state_paths: None,
        checkpoint_paths: None,
        fragment: id,
        model,
        loss,
        samples,
        compute_ms: 1,
        result_hash,
        commitment_signature: key.sign(commitment.as_bytes()),
        data_commitment: None,
        trace,
    }
}

/// A net of `honest` honest nodes (seeds 1, 2, …) and the `cheaters` (seed, adversary), all
/// proven before anything is submitted (a short job can end before a late node is admitted),
/// with the job owner's client (seed 250).
pub async fn start_with_cheaters(
    config: CoordinatorConfig,
    honest: u8,
    cheaters: &[(u8, Adversary)],
) -> (TestNet, CoordinatorClient) {
    let mut net = TestNet::start(config).await;
    for seed in 1..=honest {
        net.spawn_node(seed);
    }
    for &(seed, adversary) in cheaters {
        net.spawn_node_with(
            seed,
            NodeConfig {
                adversary: Some(adversary),
                ..NodeConfig::default()
            },
        );
    }
    let owner = net.client(250);
    let nodes = usize::from(honest) + cheaters.len();
    wait_for_proven_nodes(&owner, nodes, Duration::from_secs(60)).await;
    (net, owner)
}

/// The key and client of a node driven by hand (seed `seed`), registered on the CPU.
pub async fn hand_driven_node(net: &TestNet, seed: u8) -> (Keypair, CoordinatorClient) {
    let node = net.client(seed);
    node.register(corex_node::device::detect(1, &corex_ml::Backend::cpu()))
        .await
        .unwrap();
    (Keypair::from_secret([seed; 32]), node)
}

/// A traced fragment of `spec` (local steps) computed honestly on the CPU from `parameters`:
/// its steps, the trace a node commits to, and the segment bounds it is cut at.
pub fn traced_fragment(
    spec: &JobSpec,
    parameters: &[f32],
    dataset: &Dataset,
    indices: &[u32],
) -> (corex_ml::TracedSteps, StepTrace, Vec<u32>) {
    let corex_core::WorkSpec::LocalSteps { steps, inner } = &spec.work else {
        panic!("only local steps are traced")
    };
    let bounds = segment_bounds(&spec.work, &spec.compression, indices.len()).unwrap();
    let traced = corex_ml::compute_traced_local_steps(
        &corex_ml::Backend::cpu(),
        &spec.model,
        parameters,
        dataset,
        indices,
        *steps,
        inner,
        &bounds[1..bounds.len() - 1],
    )
    .unwrap();
    let trace = StepTrace {
        checkpoints: traced
            .checkpoints
            .iter()
            .map(|c| checkpoint_root(c))
            .collect(),
        losses: traced.losses.clone(),
    };
    (traced, trace, bounds)
}
