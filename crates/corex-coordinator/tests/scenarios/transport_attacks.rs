//! Attacks on the transport of a running coordinator, over real sockets: a 64 MiB body that is
//! unsigned (or too large for its route) is refused before it is read, and 500 stalled
//! (slowloris) connections neither stop a node from leasing and submitting nor outlive the
//! header timeout. The honest job beside the attack ends with the same model as a clean run.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestNet, adam, small_job, wait_for_end};
use corex_coordinator::{CoordinatorConfig, TransportLimits};
use corex_core::messages::JobState;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

type Tls = TlsStream<TcpStream>;

/// A TLS connection to the coordinator that speaks whatever bytes the test writes.
async fn raw_tls(net: &TestNet) -> Tls {
    let config = corex_net::pinned_client_config(&net.pin).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(net.url.trim_start_matches("https://"))
        .await
        .unwrap();
    let name = ServerName::try_from("corex").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// The status line the coordinator answers with, within `within`.
async fn status_line(connection: &mut Tls, within: Duration) -> String {
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(within, connection.read(&mut answer))
        .await
        .expect("the coordinator answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..read]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_body_is_refused_before_it_is_read() {
    let net = TestNet::start(CoordinatorConfig::one_machine()).await;
    let declared = 64 * 1024 * 1024;
    for (path, expected) in [
        // Over the spec route's body limit: refused on the declared length.
        ("/v1/jobs", "HTTP/1.1 413"),
        // Within the result route's limit, but unsigned: refused on the headers.
        ("/v1/results", "HTTP/1.1 401"),
    ] {
        let mut connection = raw_tls(&net).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: corex\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
        );
        connection.write_all(head.as_bytes()).await.unwrap();
        // One 64 KiB slice of the 64 MiB: the answer must come without the rest.
        connection.write_all(&vec![b'x'; 64 * 1024]).await.unwrap();
        let status = status_line(&mut connection, Duration::from_secs(5)).await;
        assert!(status.starts_with(expected), "{path}: {status}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_stalled_connections_do_not_stop_an_honest_node() {
    const HEADER_TIMEOUT_MS: u64 = 4_000;
    let config = CoordinatorConfig {
        transport: TransportLimits {
            header_timeout_ms: HEADER_TIMEOUT_MS,
            handshake_timeout_ms: HEADER_TIMEOUT_MS,
            ..TransportLimits::one_machine()
        },
        ..CoordinatorConfig::one_machine()
    };
    let mut net = TestNet::start(config).await;
    let owner = net.client(100);
    // The reference: the same job with nobody attacking.
    net.spawn_node(1);
    net.spawn_node(2);
    let clean = owner.submit_job(&small_job(adam())).await.unwrap();
    let clean_started = Instant::now();
    let reference = wait_for_end(&owner, &clean, Duration::from_secs(120)).await;
    println!(
        "with nobody attacking the job took {} ms",
        clean_started.elapsed().as_millis()
    );
    assert_eq!(reference.state, JobState::Finished);

    // 250 connections that never start TLS, 250 that send half a request head and stall.
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..250 {
        silent.push(
            TcpStream::connect(net.url.trim_start_matches("https://"))
                .await
                .unwrap(),
        );
    }
    let mut stalled = Vec::new();
    for _ in 0..250 {
        let mut connection = raw_tls(&net).await;
        connection
            .write_all(b"POST /v1/lease HTTP/1.1\r\nhost: corex\r\ncontent-le")
            .await
            .unwrap();
        stalled.push(connection);
    }
    let attacked = owner.submit_job(&small_job(adam())).await.unwrap();
    let under_attack = Instant::now();
    let status = wait_for_end(&owner, &attacked, Duration::from_secs(120)).await;
    println!(
        "under 500 stalled connections the job took {} ms",
        under_attack.elapsed().as_millis()
    );
    assert_eq!(status.state, JobState::Finished);
    assert_eq!(status.model, reference.model, "the attack changed nothing");

    // Every stalled connection is closed once the header timeout has passed.
    let wait = Duration::from_millis(HEADER_TIMEOUT_MS + 3_000).saturating_sub(started.elapsed());
    tokio::time::sleep(wait).await;
    for connection in &mut stalled {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), connection.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a stalled request head was still open after the header timeout"
        );
    }
    for connection in &mut silent {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), connection.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a connection that never shook hands was still open after the handshake timeout"
        );
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_is_slowed_down_and_others_are_not() {
    let config = CoordinatorConfig {
        transport: TransportLimits {
            requests_per_key_per_s: 5,
            request_burst_per_key: 20,
            ..TransportLimits::one_machine()
        },
        ..CoordinatorConfig::one_machine()
    };
    let net = TestNet::start(config).await;
    let flooder = net.client(50);
    let mut refused = 0;
    for _ in 0..60 {
        let path = "/v1/jobs";
        let headers = flooder.signed_headers("GET", path, &[]).unwrap();
        let (status, _) = flooder
            .send_raw("GET", path, Vec::new(), Some(&headers))
            .await
            .unwrap();
        if status == 429 {
            refused += 1;
        }
    }
    assert!(refused >= 30, "only {refused} of 60 requests were refused");
    let other = net.client(51);
    assert!(
        other.ledger_summary().await.is_ok(),
        "another key is not slowed"
    );
    net.shutdown().await;
}
