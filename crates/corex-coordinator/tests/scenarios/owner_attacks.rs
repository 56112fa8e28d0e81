//! Attacks by job owners on a running coordinator, over real sockets: specs that name the
//! coordinator's files, specs over the resource budget, keys the admission policy refuses,
//! reads of another owner's private job, and quota abuse. Each gets a clear 4xx and leaves no
//! job, dataset or allocation behind; owners can cancel their own jobs and no one else's.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestNet, adam, expect_error, small_job, wait_for_end};
use corex_coordinator::{Admission, AdmissionPolicy, CoordinatorConfig};
use corex_core::messages::JobState;
use corex_core::{DataHolder, DatasetSource, JobSpec, Keypair};

fn submission(spec: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "spec": spec })).unwrap()
}

/// Resident memory of this process (the coordinator runs in it), in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_naming_a_coordinator_path_reads_nothing() {
    let datasets = tempfile::tempdir().unwrap();
    std::fs::write(datasets.path().join("ok.csv"), "a,y\n1,0\n2,1\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", datasets.path().join("passwd.csv")).unwrap();
    let config = CoordinatorConfig {
        datasets_dir: Some(datasets.path().to_owned()),
        ..CoordinatorConfig::one_machine()
    };
    let net = TestNet::start(config).await;
    let owner = net.client(100);
    let mut spec = serde_json::to_value(small_job(adam())).unwrap();
    // The old path-bearing source no longer exists.
    spec["dataset"]["source"] = serde_json::json!({ "kind": "csv", "path": "/etc/passwd" });
    expect_error(
        &owner,
        "POST",
        "/v1/jobs",
        submission(&spec),
        400,
        "malformed_body",
    )
    .await;
    for name in ["../../etc/passwd", "/etc/passwd", ".hidden", "dev/zero"] {
        spec["dataset"]["source"] = serde_json::json!({ "kind": "named", "name": name });
        expect_error(
            &owner,
            "POST",
            "/v1/jobs",
            submission(&spec),
            422,
            "invalid_spec",
        )
        .await;
    }
    // A link out of the operator's directory is as unknown as a missing file, and the
    // answer never repeats what the file holds.
    for name in ["passwd.csv", "missing.csv"] {
        spec["dataset"]["source"] = serde_json::json!({ "kind": "named", "name": name });
        let message = expect_error(
            &owner,
            "POST",
            "/v1/jobs",
            submission(&spec),
            404,
            "unknown_dataset",
        )
        .await;
        assert!(!message.contains("root"), "{message}");
    }
    assert!(owner.nodes().await.unwrap().is_empty());
    let jobs: Vec<serde_json::Value> =
        serde_json::from_slice(&owner.call("GET", "/v1/jobs", Vec::new()).await.unwrap()).unwrap();
    assert!(jobs.is_empty(), "no job was created");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_specs_are_refused_before_anything_is_allocated() {
    let mut huge = serde_json::to_value(small_job(adam())).unwrap();
    huge["model"]["hidden"] = serde_json::json!(vec![8; 3_000_000]);
    let huge = submission(&huge);
    // Millions of layers do not fit the spec route's body limit: refused unread (the server
    // answers 413 and may close the connection before the client has sent it all).
    let net = TestNet::start(CoordinatorConfig::one_machine()).await;
    let owner = net.client(100);
    let headers = owner.signed_headers("POST", "/v1/jobs", &huge).unwrap();
    match owner
        .send_raw("POST", "/v1/jobs", huge.clone(), Some(&headers))
        .await
    {
        Ok((status, _)) => assert_eq!(status, 413),
        Err(error) => assert!(format!("{error:?}").contains("BrokenPipe"), "{error:?}"),
    }
    net.shutdown().await;

    // An operator who lets 64 MiB specs in still refuses them at the budget.
    let config = CoordinatorConfig {
        transport: corex_coordinator::TransportLimits {
            max_spec_body_bytes: 64 * 1024 * 1024,
            ..corex_coordinator::TransportLimits::one_machine()
        },
        ..CoordinatorConfig::one_machine()
    };
    let mut net = TestNet::start(config).await;
    let owner = net.client(100);
    // The honest job alone first: the reference.
    net.spawn_node(1);
    let clean = owner.submit_job(&small_job(adam())).await.unwrap();
    let reference = wait_for_end(&owner, &clean, Duration::from_secs(120)).await;
    assert_eq!(reference.state, JobState::Finished);
    let before = resident_kib();
    let message = expect_error(&owner, "POST", "/v1/jobs", huge, 422, "over_budget").await;
    assert!(message.contains("max_layers"), "{message}");
    // Tens of thousands of layers: refused by the budget.
    let mut deep = small_job(adam());
    deep.model = corex_core::ModelSpec::mlp(64, vec![8; 50_000], 10);
    let message = expect_error(
        &owner,
        "POST",
        "/v1/jobs",
        submission(&serde_json::to_value(&deep).unwrap()),
        422,
        "over_budget",
    )
    .await;
    assert!(message.contains("max_layers"), "{message}");
    // A holder declaring 4·10⁹ samples.
    let holder = DataHolder {
        node: Keypair::from_secret([7; 32]).id(),
        samples: 4_000_000_000,
    };
    let federated = JobSpec::digits_federated(vec![holder], None);
    let message = expect_error(
        &owner,
        "POST",
        "/v1/jobs",
        submission(&serde_json::to_value(&federated).unwrap()),
        422,
        "over_budget",
    )
    .await;
    assert!(message.contains("max_holder_samples"), "{message}");
    // More than the budget's 10¹⁸ FLOPs (about 2.6·10¹⁸).
    let mut long = small_job(adam());
    long.model = corex_core::ModelSpec::mlp(64, vec![2048, 2048], 10);
    long.rounds = 100_000;
    long.global_batch = 1 << 20;
    long.fragment_samples = 1024;
    let message = expect_error(
        &owner,
        "POST",
        "/v1/jobs",
        submission(&serde_json::to_value(&long).unwrap()),
        422,
        "over_budget",
    )
    .await;
    assert!(message.contains("max_job_flops"), "{message}");
    let grown_kib = resident_kib().saturating_sub(before);
    println!("resident memory grew by {grown_kib} KiB while refusing four oversized specs");
    let grown_mib = grown_kib / 1024;
    assert!(
        grown_mib < 64,
        "the coordinator grew by {grown_mib} MiB refusing specs"
    );

    // The honest job after them ends as it did alone.
    let job = owner.submit_job(&small_job(adam())).await.unwrap();
    let status = wait_for_end(&owner, &job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    assert_eq!(
        status.model, reference.model,
        "the refused specs changed nothing"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_policies_refuse_keys_they_do_not_admit() {
    let allowed = Keypair::from_secret([100; 32]).id();
    let operator = Keypair::from_secret([99; 32]).id();
    let config = CoordinatorConfig {
        admission: Admission {
            policy: AdmissionPolicy::AllowList(BTreeSet::from([allowed])),
            operators: BTreeSet::from([operator]),
        },
        ..CoordinatorConfig::one_machine()
    };
    let net = TestNet::start(config).await;
    let spec = submission(&serde_json::to_value(small_job(adam())).unwrap());
    let stranger = net.client(101);
    expect_error(
        &stranger,
        "POST",
        "/v1/jobs",
        spec.clone(),
        403,
        "not_admitted",
    )
    .await;
    let digits = corex_ml::Dataset::digits().unwrap().to_bytes();
    let error = stranger.upload_dataset(&digits).await.unwrap_err();
    assert_eq!(error.api_code(), Some("not_admitted"), "{error}");
    assert!(net.client(100).submit_job(&small_job(adam())).await.is_ok());
    assert!(
        net.client(99).submit_job(&small_job(adam())).await.is_ok(),
        "operators are admitted"
    );
    net.shutdown().await;

    // A stake policy: a key without stake is refused.
    let config = CoordinatorConfig {
        admission: Admission {
            policy: AdmissionPolicy::MinStake(1),
            operators: BTreeSet::new(),
        },
        ..CoordinatorConfig::one_machine()
    };
    let net = TestNet::start(config).await;
    let message = expect_error(
        &net.client(101),
        "POST",
        "/v1/jobs",
        spec,
        403,
        "not_admitted",
    )
    .await;
    assert!(message.contains("staked"), "{message}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_jobs_are_their_owners_and_cancel_is_the_owners_too() {
    let mut net = TestNet::start(CoordinatorConfig {
        max_running_jobs_per_owner: 2,
        ..CoordinatorConfig::one_machine()
    })
    .await;
    let (owner, stranger) = (net.client(100), net.client(101));
    // The owner trains on data it uploaded; nobody else can name that data.
    let digits = corex_ml::Dataset::digits().unwrap();
    let uploaded = owner.upload_dataset(&digits.to_bytes()).await.unwrap();
    assert_eq!(uploaded.dataset.0, digits.content_hash());
    let mut spec = small_job(adam());
    spec.dataset.source = DatasetSource::Uploaded {
        dataset: uploaded.dataset,
    };
    let error = stranger.submit_job(&spec).await.unwrap_err();
    assert_eq!(error.api_code(), Some("unknown_dataset"), "{error}");
    let private = owner.submit_job(&spec).await.unwrap();
    net.spawn_node(1);
    let status = wait_for_end(&owner, &private, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    let weights_hash: corex_core::Hash = serde_json::from_slice(
        &owner
            .call("GET", &format!("/v1/jobs/{private}/weights"), Vec::new())
            .await
            .unwrap(),
    )
    .unwrap();
    for path in [
        format!("/v1/jobs/{private}"),
        format!("/v1/jobs/{private}/report"),
        format!("/v1/jobs/{private}/weights"),
        format!("/v1/blobs/{weights_hash}"),
        format!("/v1/blobs/{weights_hash}/chunks/0"),
    ] {
        expect_error(&stranger, "GET", &path, Vec::new(), 403, "not_job_owner").await;
    }
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&stranger.call("GET", "/v1/jobs", Vec::new()).await.unwrap())
            .unwrap();
    assert!(listed.is_empty(), "a private job is not listed to others");
    // The node list shows no address or host name to anyone but the operators.
    let nodes = stranger.nodes().await.unwrap();
    assert!(!nodes.is_empty());
    assert!(
        nodes
            .values()
            .all(|info| info.endpoint.is_empty() && info.device.hostname.is_empty())
    );

    // A public job is readable by anyone.
    let public = owner
        .submit_job(&JobSpec {
            public: true,
            ..small_job(adam())
        })
        .await
        .unwrap();
    assert!(stranger.job_status(&public).await.is_ok());
    // Quotas: the owner now runs public and may start one more, not two.
    let long = JobSpec {
        rounds: 100_000,
        ..small_job(adam())
    };
    let running = owner.submit_job(&long).await.unwrap();
    let error = owner.submit_job(&long).await.unwrap_err();
    assert_eq!(error.api_code(), Some("owner_quota"), "{error}");
    // Only the owner cancels; a cancelled job frees its place.
    let error = stranger.cancel_job(&running).await.unwrap_err();
    assert_eq!(error.api_code(), Some("not_job_owner"), "{error}");
    owner.cancel_job(&running).await.unwrap();
    assert_eq!(
        owner.job_status(&running).await.unwrap().state,
        JobState::Cancelled
    );
    let error = owner.cancel_job(&running).await.unwrap_err();
    assert_eq!(error.api_code(), Some("job_not_running"), "{error}");
    let again = owner.submit_job(&long).await.unwrap();
    owner.cancel_job(&again).await.unwrap();
    wait_for_end(&owner, &public, Duration::from_secs(120)).await;
    net.shutdown().await;
}
