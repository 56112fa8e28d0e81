//! Resumable result uploads against a running coordinator, on real TLS sockets: the real client
//! talks through a TCP relay that cuts its connection in the middle of an upload (TLS passes
//! through untouched; the client still pins the coordinator's certificate). A cut once is
//! retried within the upload; an outage longer than the retries fails the upload, and the next
//! try sends only the chunks the coordinator lacks. Nodes that upload every result as chunks
//! train exactly the model of nodes that send them inline.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestNet, adam, small_job, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::chunk::Manifest;
use corex_core::messages::{JobState, LeaseResponse, ResultHeader};
use corex_core::result_frame::ResultTensor;
use corex_core::tensor::{bytes_to_f32s, f32s_to_bytes};
use corex_core::{Hash, JobSpec, Keypair, ModelSpec};
use corex_ml::Dataset;
use corex_net::{CoordinatorClient, TransferPolicy};
use corex_node::NodeConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const UPLOAD_CHUNK: usize = 1024;

/// A TCP relay in front of the coordinator that can cut the connection carrying the
/// clients' byte number `cut_at`, and then go down (every connection closed, new ones
/// refused) until healed.
struct CuttingRelay {
    address: SocketAddr,
    state: Arc<RelayState>,
}

struct RelayState {
    /// Bytes from clients forwarded so far, over all connections.
    forwarded: AtomicU64,
    /// Where the next cut falls, in forwarded bytes.
    cut_at: Mutex<Option<u64>>,
    /// Go down at the cut, until healed.
    stay_down: AtomicBool,
    down: watch::Sender<bool>,
    cuts: AtomicUsize,
}

impl RelayState {
    /// How many of `n` bytes from a client may pass; fewer means: cut here.
    fn allow(&self, n: usize) -> usize {
        let mut cut_at = self.cut_at.lock().unwrap();
        let before = self.forwarded.fetch_add(n as u64, Ordering::SeqCst);
        match *cut_at {
            Some(at) if before + n as u64 > at => {
                *cut_at = None;
                self.cuts.fetch_add(1, Ordering::SeqCst);
                if self.stay_down.load(Ordering::SeqCst) {
                    self.down.send_replace(true);
                }
                at.saturating_sub(before) as usize
            }
            _ => n,
        }
    }
}

impl CuttingRelay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(RelayState {
            forwarded: AtomicU64::new(0),
            cut_at: Mutex::new(None),
            stay_down: AtomicBool::new(false),
            down: watch::Sender::new(false),
            cuts: AtomicUsize::new(0),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *shared.down.borrow() {
                    continue;
                }
                let state = shared.clone();
                tokio::spawn(async move {
                    if let Ok(coordinator) = TcpStream::connect(upstream).await {
                        relay(client, coordinator, &state).await;
                    }
                });
            }
        });
        Self { address, state }
    }

    fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// Cuts the connection `after` bytes from now; `stay_down`: refuse connections afterwards.
    fn arm(&self, after: u64, stay_down: bool) {
        self.state.stay_down.store(stay_down, Ordering::SeqCst);
        let now = self.state.forwarded.load(Ordering::SeqCst);
        *self.state.cut_at.lock().unwrap() = Some(now + after);
    }

    fn heal(&self) {
        self.state.down.send_replace(false);
    }

    fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }
}

/// Copies both ways until either side closes, the state says to cut, or the relay goes down.
async fn relay(client: TcpStream, coordinator: TcpStream, state: &RelayState) {
    let mut down = state.down.subscribe();
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_coordinator, mut to_coordinator) = coordinator.into_split();
    let downstream = tokio::io::copy(&mut from_coordinator, &mut to_client);
    let upstream = async {
        let mut buffer = [0u8; 4096];
        loop {
            let n = from_client.read(&mut buffer).await?;
            if n == 0 {
                return to_coordinator.shutdown().await;
            }
            let allowed = state.allow(n);
            to_coordinator.write_all(&buffer[..allowed]).await?;
            if allowed < n {
                return Err(std::io::Error::other("cut"));
            }
        }
    };
    tokio::pin!(downstream, upstream);
    tokio::select! {
        _ = async { down.wait_for(|down| *down).await.map(|_| ()) } => {}
        _ = &mut downstream => {}
        closed = &mut upstream => if closed.is_ok() {
            let _ = downstream.await;
        }
    }
}

/// A job whose results are about 39 KB: 38 upload chunks of 1 KiB.
fn job() -> JobSpec {
    JobSpec {
        model: ModelSpec::mlp(64, vec![128], 10),
        ..small_job(adam())
    }
}

fn policy() -> TransferPolicy {
    TransferPolicy {
        attempts: 3,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        upload_chunk_size: UPLOAD_CHUNK,
    }
}

/// Registers the node `seed`, leases a fragment and computes its honest result.
async fn honest_result(net: &TestNet, spec: &JobSpec, seed: u8) -> (ResultHeader, Vec<u8>) {
    let key = Keypair::from_secret([seed; 32]);
    let client = net.client(seed);
    client
        .register(corex_node::device::detect(1, &corex_ml::Backend::cpu()))
        .await
        .unwrap();
    let LeaseResponse::Work { fragment, .. } = client.lease(0).await.unwrap() else {
        panic!("a fresh job has work");
    };
    let parameters = bytes_to_f32s(&client.fetch_blob(&fragment.model).await.unwrap()).unwrap();
    let dataset = Dataset::digits().unwrap();
    let computed = corex_ml::compute_gradient(
        &corex_ml::Backend::cpu(),
        &spec.model,
        &parameters,
        &dataset,
        &fragment.indices,
    )
    .unwrap();
    let tensor = f32s_to_bytes(&computed.gradient);
    let result_hash = Hash::of(&tensor);
    let header = common::signed_header(
        &key,
        fragment.id,
        fragment.model,
        result_hash,
        computed.loss,
        computed.samples,
        None,
    );
    (header, tensor)
}

/// Bytes a client sends to upload `tensor`: the chunks, and a rough allowance per request.
fn upload_bytes(tensor: &[u8]) -> u64 {
    (tensor.len() + tensor.len().div_ceil(UPLOAD_CHUNK) * 600) as u64
}

/// Finishes the job with node agents that upload as `policy` says; the final model.
async fn finish(net: &mut TestNet, spec_job: &Hash, policy: TransferPolicy) -> Hash {
    for seed in [21, 22] {
        let key = Keypair::from_secret([seed; 32]);
        let client = net.client(seed).with_transfer_policy(policy.clone());
        net.spawn_node_via(key, client, NodeConfig::default());
    }
    let status = wait_for_end(&net.client(100), spec_job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    status.model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_in_the_middle_resumes_and_the_result_is_taken() {
    let spec = job();

    // The model nodes reach when they send every result inline.
    let mut clean = TestNet::start(CoordinatorConfig::one_machine()).await;
    let job_id = clean.client(100).submit_job(&spec).await.unwrap();
    let inline = TransferPolicy {
        upload_chunk_size: usize::MAX,
        ..TransferPolicy::default()
    };
    let clean_model = finish(&mut clean, &job_id, inline).await;
    clean.shutdown().await;

    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    let job_id = net.client(100).submit_job(&spec).await.unwrap();
    let coordinator: SocketAddr = net.url.trim_start_matches("https://").parse().unwrap();
    let relay = CuttingRelay::start(coordinator).await;
    let through_relay = |seed: u8| {
        CoordinatorClient::new(&relay.url(), &net.pin, Keypair::from_secret([seed; 32]))
            .unwrap()
            .with_transfer_policy(policy())
    };

    // Cut once, halfway through: the cut chunk is sent again, nothing else is.
    let (header, tensor) = honest_result(&net, &spec, 1).await;
    let chunks = Manifest::of(&tensor, UPLOAD_CHUNK).chunks;
    relay.arm(upload_bytes(&tensor) / 2, false);
    let report = through_relay(1)
        .submit_result(&header, ResultTensor::from_bytes(tensor.clone()))
        .await
        .unwrap();
    assert_eq!(relay.cuts(), 1);
    assert!(report.retries >= 1, "{report:?}");
    assert_eq!(
        (report.chunks, report.already_staged, report.sent),
        (chunks.len(), 0, chunks.len()),
        "{report:?}"
    );

    // Cut halfway, then down for longer than the client retries: the upload fails, with part
    // of the chunks staged. The next try sends only the rest.
    let (header, tensor) = honest_result(&net, &spec, 2).await;
    let chunks = Manifest::of(&tensor, UPLOAD_CHUNK).chunks;
    relay.arm(upload_bytes(&tensor) / 2, true);
    let failed = through_relay(2)
        .submit_result(&header, ResultTensor::from_bytes(tensor.clone()))
        .await
        .unwrap_err();
    assert!(failed.is_transient(), "{failed}");
    let missing = net.client(2).missing_uploads(&chunks).await.unwrap();
    assert!(
        !missing.is_empty() && missing.len() < chunks.len(),
        "{} of {} chunks missing after the cut",
        missing.len(),
        chunks.len()
    );
    relay.heal();
    let report = through_relay(2)
        .submit_result(&header, ResultTensor::from_bytes(tensor.clone()))
        .await
        .unwrap();
    assert_eq!(
        (report.already_staged, report.sent),
        (chunks.len() - missing.len(), missing.len()),
        "{report:?}"
    );

    // Both results were taken: sending one again is refused as already done.
    let again = net
        .client(2)
        .with_transfer_policy(policy())
        .submit_result(&header, ResultTensor::from_bytes(tensor))
        .await
        .unwrap_err();
    assert_eq!(again.api_code(), Some("already_done"));

    // Nodes uploading every result in 1 KiB chunks finish the job with the inline model.
    let model = finish(&mut net, &job_id, policy()).await;
    assert_eq!(model, clean_model, "chunked uploads changed the model");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_taken_before_a_restart_is_kept() {
    let spec = job();
    let mut clean = TestNet::start(CoordinatorConfig::one_machine()).await;
    let job_id = clean.client(100).submit_job(&spec).await.unwrap();
    let clean_model = finish(&mut clean, &job_id, TransferPolicy::default()).await;
    clean.shutdown().await;

    // The same job (same owner, first submission: same id); one result taken, then a restart.
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    assert_eq!(net.client(100).submit_job(&spec).await.unwrap(), job_id);
    let (header, tensor) = honest_result(&net, &spec, 1).await;
    net.client(1)
        .submit_result(&header, ResultTensor::from_bytes(tensor.clone()))
        .await
        .unwrap();
    net.restart_server(CoordinatorConfig::one_machine()).await;

    // The restarted coordinator holds the result: sending it again is refused as done (a
    // coordinator that had lost it would answer that the fragment is not leased).
    let again = net
        .client(1)
        .submit_result(&header, ResultTensor::from_bytes(tensor))
        .await
        .unwrap_err();
    assert_eq!(again.api_code(), Some("already_done"), "{again}");
    let model = finish(&mut net, &job_id, TransferPolicy::default()).await;
    assert_eq!(model, clean_model, "the kept result changed the model");
    net.shutdown().await;
}
