//! The explorer and the metrics against a running coordinator whose public job had a cheater
//! among its nodes: the coordinator's `/metrics` parse as Prometheus text and move while the
//! job runs; every explorer page loads in headless Chromium (Debian's `chromium`, installed
//! by `.ci/run`) and shows what it must (the cheater's hard rejects and their evidence on its
//! node page, the job's curves drawn, the supply summing to 100,000,000 CXT), with nothing
//! private on any page; screenshots go to `target/explorer-screenshots/`. The explorer needs no
//! signature, and it refuses what it should.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::{TestNet, adam, small_job, wait_for_end, wait_for_proven_nodes};
use corex_coordinator::CoordinatorConfig;
use corex_core::JobSpec;
use corex_net::CoordinatorClient;
use corex_node::{Adversary, NodeConfig};

/// An unsigned GET: its status and body.
async fn get(client: &CoordinatorClient, path: &str) -> (u16, String) {
    let (status, body) = client
        .send_raw("GET", path, Bytes::new(), None)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the sample `name` with every label in `labels`, summed over the rest.
fn sample_sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
        .map(|sample| match &sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => *value,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map_or(0.0, |bucket| bucket.count)
            }
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

/// A plain-HTTP GET of `path` from `address`: the body.
async fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(" 200 "), "{head}");
    body.to_owned()
}

/// Fetches and parses the coordinator's metrics.
async fn scrape(client: &CoordinatorClient) -> prometheus_parse::Scrape {
    let (status, text) = get(client, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    parse_metrics(&text)
}

/// Parses an exposition, checking the OpenMetrics framing.
fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not a sample line: {line}");
    }
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    prometheus_parse::Scrape::parse(lines).unwrap()
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/explorer-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The page's DOM as headless Chromium built it, and a screenshot of it saved as `shot`.
async fn browse(url: &str, shot: &str) -> String {
    let browser = |extra: Vec<String>| async move {
        let output = tokio::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--ignore-certificate-errors",
                "--hide-scrollbars",
                "--window-size=1280,1800",
            ])
            .args(extra)
            .arg(url)
            .output()
            .await
            .expect("headless Chromium runs the browser test: apt-get install chromium");
        assert!(output.status.success(), "chromium failed on {url}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let path = screenshots_dir().join(shot);
    browser(vec![format!("--screenshot={}", path.display())]).await;
    assert!(path.exists(), "no screenshot of {url}");
    browser(vec!["--dump-dom".into()]).await
}

fn public_job() -> JobSpec {
    JobSpec {
        name: "explorer-public-digits".into(),
        rounds: 24,
        global_batch: 256,
        fragment_samples: 32,
        public: true,
        ..small_job(adam())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_and_the_metrics_show_a_job_with_a_cheater_and_nothing_private() {
    let mut net = TestNet::start(CoordinatorConfig {
        shared_hardware: false,
        ..CoordinatorConfig::one_machine()
    })
    .await;
    // Node 1 serves its metrics on a local port.
    let telemetry = std::sync::Arc::new(corex_node::NodeTelemetry::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node_metrics = listener.local_addr().unwrap();
    let (_stop_metrics, stop) = tokio::sync::watch::channel(false);
    let serving = corex_node::telemetry::serve_metrics(listener, telemetry.clone(), stop);
    tokio::spawn(serving);
    net.spawn_node_with(
        1,
        NodeConfig {
            telemetry: telemetry.clone(),
            ..NodeConfig::default()
        },
    );
    for seed in 2..=3 {
        net.spawn_node(seed);
    }
    let cheater_config = NodeConfig {
        adversary: Some(Adversary::Random),
        ..NodeConfig::default()
    };
    net.spawn_node_with(101, cheater_config);
    let owner = net.client(250);
    wait_for_proven_nodes(&owner, 4, Duration::from_secs(60)).await;
    let before = scrape(&owner).await;
    let node_before = parse_metrics(&http_get(node_metrics, "/metrics").await);

    // The public job first (the cheater is caught and banned in it), then a private job:
    // the explorer counts it and shows nothing of it.
    let public_id = owner.submit_job(&public_job()).await.unwrap();
    wait_for_end(&owner, &public_id, Duration::from_secs(300)).await;
    let secret = JobSpec {
        name: "secret-private-job".into(),
        rounds: 4,
        ..small_job(adam())
    };
    let private_id = owner.submit_job(&secret).await.unwrap();
    wait_for_end(&owner, &private_id, Duration::from_secs(120)).await;
    // Let the ledger recorder write the last rounds.
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The node reads its ledger figures every 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = scrape(&owner).await;
    let node_after = parse_metrics(&http_get(node_metrics, "/metrics").await);
    let computed = |scrape| sample_sum(scrape, "corex_node_fragments_computed_total", &[]);
    let accepted = |scrape| {
        let labels = [("verdict", "accepted")];
        sample_sum(scrape, "corex_node_results_judged_total", &labels)
    };
    println!(
        "node metrics: computed {} → {}, accepted on the ledger {} → {}; {}",
        computed(&node_before),
        computed(&node_after),
        accepted(&node_before),
        accepted(&node_after),
        telemetry.status_line().render()
    );
    assert!(computed(&node_after) > computed(&node_before));
    assert!(accepted(&node_after) > accepted(&node_before));
    assert!(sample_sum(&node_after, "corex_node_compute_speed_gflops", &[]) > 0.0);
    let results = |scrape| sample_sum(scrape, "corex_fragment_results_total", &[]);
    let rounds = |scrape| sample_sum(scrape, "corex_rounds_closed_total", &[]);
    let leases = |scrape| sample_sum(scrape, "corex_lease_request_duration_seconds_count", &[]);
    let taken = |scrape| sample_sum(scrape, "corex_result_request_duration_seconds_count", &[]);
    println!(
        "metrics: rounds {} → {}, results {} → {}, leases {} → {}, results taken {} → {}",
        rounds(&before),
        rounds(&after),
        results(&before),
        results(&after),
        leases(&before),
        leases(&after),
        taken(&before),
        taken(&after)
    );
    assert_eq!(
        rounds(&after) - rounds(&before),
        28.0,
        "every round closed is counted"
    );
    assert!(results(&after) > results(&before));
    assert!(
        leases(&after) > leases(&before),
        "the lease histogram fills"
    );
    assert!(taken(&after) > taken(&before), "the result histogram fills");
    let rejected = [("verdict", "rejected")];
    assert!(sample_sum(&after, "corex_fragment_results_total", &rejected) >= 1.0);
    assert!(sample_sum(&after, "corex_transfer_bytes_total", &[("what", "sent")]) > 0.0);
    assert!(
        sample_sum(&after, "corex_ledger_height", &[])
            > sample_sum(&before, "corex_ledger_height", &[])
    );
    assert_eq!(
        sample_sum(&after, "corex_nodes", &[]),
        4.0,
        "{:?}",
        after.samples
    );
    let supply = sample_sum(&after, "corex_supply_cxt", &[]);
    assert!((supply - 1e8).abs() < 1.0, "supply {supply}");

    // The pages, unsigned, through the same TLS port.
    let cheater = net.client(101).id();
    let pages = [
        ("/explorer".to_owned(), "overview.png"),
        (
            format!("/explorer/nodes/{}", cheater.to_hex()),
            "cheater-node.png",
        ),
        (
            format!("/explorer/nodes/{}", net.client(1).id().to_hex()),
            "honest-node.png",
        ),
        (format!("/explorer/jobs/{}", public_id.to_hex()), "job.png"),
        ("/explorer/ledger".to_owned(), "ledger.png"),
        ("/explorer/ledger/blocks/1".to_owned(), "block.png"),
    ];
    let mut doms = Vec::new();
    for (path, shot) in &pages {
        let (status, html) = get(&owner, path).await;
        assert_eq!(status, 200, "{path}: {html}");
        for private in ["secret-private-job", &private_id.to_hex(), "127.0.0.1"] {
            assert!(!html.contains(private), "{path} shows {private}");
        }
        let dom = browse(&format!("{}{path}", net.url), shot).await;
        doms.push(dom);
    }
    let [overview, cheater_page, honest_page, job, ledger, block] = &doms[..] else {
        unreachable!()
    };
    assert!(overview.contains("explorer-public-digits") && overview.contains("nodes online"));
    assert!(overview.contains("1 private job(s) not shown"));
    assert!(
        cheater_page.contains("hard reject, slashed"),
        "{cheater_page}"
    );
    assert!(cheater_page.contains("evidence"));
    assert!(
        cheater_page.contains(", round "),
        "the public job's reason is shown"
    );
    assert!(!honest_page.contains("hard reject, slashed"));
    assert!(honest_page.contains("payout") || honest_page.contains("work recorded"));
    assert!(job.contains("<polyline"), "the job's curve is drawn");
    assert!(job.contains("Fragments per node") && job.contains("Audits"));
    assert!(ledger.contains("sums to 100,000,000 CXT"), "{ledger}");
    let first: corex_ledger::Block = serde_json::from_slice(
        &owner
            .call("GET", "/v1/ledger/blocks/1", Vec::new())
            .await
            .unwrap(),
    )
    .unwrap();
    let hash = first.header.hash().to_hex();
    assert!(
        block.contains(&hash),
        "block 1's page shows its hash {hash}"
    );

    // What the explorer refuses.
    let refused = [
        "/explorer/nodes/not-a-node".to_owned(),
        format!("/explorer/jobs/{}", private_id.to_hex()),
        format!("/explorer/jobs/{}/weights", private_id.to_hex()),
        "/explorer/ledger/blocks/999999999".to_owned(),
        "/explorer/ledger/blocks/-1".to_owned(),
    ];
    for path in &refused {
        let (status, html) = get(&owner, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!html.contains("secret-private-job"));
    }
    let (status, _) = get(&owner, "/explorer/ledger?below=abc").await;
    assert_eq!(status, 400);
    // A public job's weights download without a signature.
    let (status, weights) = owner
        .send_raw(
            "GET",
            &format!("/explorer/jobs/{}/weights", public_id.to_hex()),
            Bytes::new(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(weights.len() > 1_000);
    // Signed API reads still need a signature.
    let (status, _) = get(&owner, "/v1/ledger").await;
    assert!((400..500).contains(&status), "{status}");
    net.shutdown().await;
    println!("screenshots in {}", screenshots_dir().display());
}
