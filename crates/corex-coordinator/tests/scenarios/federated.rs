//! Federated jobs over real TLS: data holders train on local data that never reaches the
//! coordinator (checked against everything it received, stored and published), the job
//! learns from class-skewed shards, and a holder sending garbage is caught by the held-out
//! validation check although nobody can replay its work.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{TestNet, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::fragment::result_commitment;
use corex_core::messages::{
    JobState, LeaseResponse, LocalDataCommitment, ResultHeader, ResultVerdict,
};
use corex_core::result_frame::ResultTensor;
use corex_core::tensor::bytes_to_f32s;
use corex_core::{DataHolder, Fragment, Hash, JobSpec, Keypair, ModelSpec, WorkSpec};
use corex_ml::{Dataset, class_skewed_partition};
use corex_net::{CoordinatorClient, NetError};
use corex_node::{Adversary, HolderPolicy, NodeConfig};

const HOLDER_SEEDS: [u8; 4] = [61, 62, 63, 64];

/// The digits training split dealt out by class to four holders, and the job over them (a
/// small model so that the test is quick).
fn federated_setup() -> (JobSpec, Vec<Dataset>) {
    let template = JobSpec::digits_federated(Vec::new(), None);
    let digits = Dataset::digits().unwrap();
    let split = digits.split(template.dataset.test_fraction, template.dataset.split_seed);
    let shares = class_skewed_partition(&digits, &split.train, 4, template.seed).unwrap();
    let locals: Vec<Dataset> = shares.iter().map(|s| digits.subset(s).unwrap()).collect();
    let holders = HOLDER_SEEDS
        .iter()
        .zip(&locals)
        .map(|(seed, local)| DataHolder {
            node: Keypair::from_secret([*seed; 32]).id(),
            samples: local.len() as u32,
        })
        .collect();
    let spec = JobSpec {
        model: ModelSpec::mlp(64, vec![64], 10),
        rounds: 40,
        eval_every: 10,
        ..JobSpec::digits_federated(holders, None)
    };
    (spec, locals)
}

/// Starts holder agents from the `first`-th on, each with its local data; the first holder
/// plays `adversary` when one is given.
fn spawn_holders(
    net: &mut TestNet,
    locals: &[Dataset],
    first: usize,
    adversary: Option<Adversary>,
) {
    for (index, (seed, local)) in HOLDER_SEEDS.iter().zip(locals).enumerate().skip(first) {
        net.spawn_node_with(
            *seed,
            NodeConfig {
                local_data: Some(Arc::new(local.clone())),
                holder: HolderPolicy {
                    allowed_owners: BTreeSet::from([Keypair::from_secret([90; 32]).id()]),
                    ..HolderPolicy::default()
                },
                adversary: adversary.filter(|_| index == 0),
                ..NodeConfig::default()
            },
        );
    }
}

/// Finds raw samples in bytes: every sample's features as little-endian `f32`s (how a tensor
/// would carry them), as its CSV row (how the holder stores it) and as a JSON array.
struct SampleScanner {
    binary: Vec<Vec<u8>>,
    text: Vec<String>,
    /// A distinctive 32-byte window of each binary form, to find candidates fast.
    windows: HashMap<[u8; 32], Vec<usize>>,
}

impl SampleScanner {
    fn new(datasets: &[Dataset]) -> Self {
        let mut scanner = Self {
            binary: Vec::new(),
            text: Vec::new(),
            windows: HashMap::new(),
        };
        for dataset in datasets {
            for sample in 0..dataset.len() as u32 {
                let features = dataset.feature_rows(&[sample]).unwrap();
                let bytes: Vec<u8> = features.iter().flat_map(|v| v.to_le_bytes()).collect();
                // The window with the most non-zero bytes: corners of digits are blank.
                let start = (0..=bytes.len() - 32)
                    .step_by(4)
                    .max_by_key(|&s| bytes[s..s + 32].iter().filter(|b| **b != 0).count())
                    .unwrap();
                let window: [u8; 32] = bytes[start..start + 32].try_into().unwrap();
                scanner
                    .windows
                    .entry(window)
                    .or_default()
                    .push(scanner.binary.len());
                scanner.binary.push(bytes);
                let row: Vec<String> = features.iter().map(f32::to_string).collect();
                scanner.text.push(row.join(","));
                scanner.text.push(serde_json::to_string(&features).unwrap());
            }
        }
        scanner
    }

    /// How many distinct raw samples appear in `haystack`.
    fn found_in(&self, haystack: &[u8]) -> usize {
        let mut found = BTreeSet::new();
        for offset in 0..haystack.len().saturating_sub(31) {
            let window: [u8; 32] = haystack[offset..offset + 32].try_into().unwrap();
            for &candidate in self.windows.get(&window).into_iter().flatten() {
                let needle = &self.binary[candidate];
                if haystack
                    .windows(needle.len())
                    .any(|slice| slice == needle.as_slice())
                {
                    found.insert(candidate);
                }
            }
        }
        let text = String::from_utf8_lossy(haystack);
        let texts = self
            .text
            .iter()
            .filter(|row| row.len() > 40 && text.contains(row.as_str()))
            .count();
        found.len() + texts
    }
}

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_sample_reaches_the_coordinator_and_the_model_learns() {
    let (spec, locals) = federated_setup();
    let scanner = SampleScanner::new(&locals);
    // The scanner finds a sample that is there, in either form.
    let mut planted = b"POST /v1/results 999\n".to_vec();
    planted.extend_from_slice(&scanner.binary[17]);
    assert_eq!(
        scanner.found_in(&planted),
        1,
        "the scanner finds a planted tensor"
    );
    assert!(scanner.found_in(scanner.text[40].as_bytes()) >= 1);

    let config = CoordinatorConfig {
        journal: true,
        ..CoordinatorConfig::one_machine()
    };
    let mut net = TestNet::start(config).await;
    spawn_holders(&mut net, &locals, 0, None);
    let owner = net.client(90);
    let job = owner.submit_job(&spec).await.unwrap();
    let status = wait_for_end(&owner, &job, Duration::from_secs(240)).await;
    assert_eq!(status.state, JobState::Finished);
    let accuracy = status.last_test_accuracy.unwrap();
    println!("federated small model on class-skewed shards: {accuracy:.4}");
    assert!(accuracy >= 0.90, "accuracy {accuracy}");

    // Every result carries its holder's commitment, the same shard all job long.
    let report = owner.job_report(&job).await.unwrap();
    let mut shards: HashMap<_, BTreeSet<_>> = HashMap::new();
    for record in report.rounds.iter().flat_map(|round| &round.results) {
        let data = record.data_commitment.expect("a data commitment");
        shards.entry(record.node).or_default().insert(data.shard);
        assert!(record.validation_loss.unwrap().is_finite());
        assert!(record.validation_gain.unwrap().is_finite());
        assert!(
            matches!(record.verdict, ResultVerdict::Accepted { .. }),
            "an honest result is rejected: {:?}",
            record.verdict
        );
    }
    assert_eq!(shards.len(), 4);
    assert!(shards.values().all(|set| set.len() == 1));
    let published = serde_json::to_vec(&report).unwrap();
    let weights = owner.download_weights(&job).await.unwrap();
    let dir = net.shutdown().await;

    let stored = files_under(dir.path());
    let journal = stored
        .iter()
        .find(|(path, _)| path.ends_with(corex_coordinator::journal::JOURNAL_FILE))
        .expect("the journal was written");
    assert!(
        journal.1.len() > 100_000,
        "the journal holds the received updates"
    );
    for (path, bytes) in &stored {
        assert_eq!(scanner.found_in(bytes), 0, "raw samples in {path}");
    }
    assert_eq!(scanner.found_in(&published), 0, "raw samples in the report");
    assert_eq!(scanner.found_in(&weights), 0, "raw samples in the weights");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_sending_garbage_is_rejected_by_held_out_validation() {
    // Garbage and scaled updates are rejected from the first round; a sign flip looks
    // ordinary alone and may pass its first round, while it barely hurts yet.
    for (adversary, may_slip) in [
        (Adversary::Random, 0),
        (Adversary::Scaled, 0),
        (Adversary::SignFlipped, 1),
    ] {
        let (honest, cheater) = run_with_cheating_holder(adversary).await;
        println!("{adversary:?}: honest (accepted, rejected) {honest:?}, cheater {cheater:?}");
        assert_eq!(
            honest,
            (24, 0),
            "{adversary:?}: no honest holder is rejected"
        );
        assert!(
            cheater.0 <= may_slip,
            "{adversary:?}: cheater accepted {cheater:?}"
        );
        assert_eq!(
            cheater.0 + cheater.1,
            8,
            "{adversary:?}: one result a round"
        );
    }
}

/// Runs a short federated job whose first holder cheats; (accepted, rejected) results of the
/// honest holders and of the cheater.
async fn run_with_cheating_holder(adversary: Adversary) -> ((u32, u32), (u32, u32)) {
    let (spec, locals) = federated_setup();
    let spec = JobSpec { rounds: 8, ..spec };
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    spawn_holders(&mut net, &locals, 0, Some(adversary));
    let owner = net.client(90);
    let job = owner.submit_job(&spec).await.unwrap();
    let status = wait_for_end(&owner, &job, Duration::from_secs(240)).await;
    assert_eq!(status.state, JobState::Finished, "the others carry the job");
    let report = owner.job_report(&job).await.unwrap();
    net.shutdown().await;
    let cheater = Keypair::from_secret([HOLDER_SEEDS[0]; 32]).id();
    let (mut honest, mut cheating) = ((0, 0), (0, 0));
    for record in report.rounds.iter().flat_map(|round| &round.results) {
        let counts = if record.node == cheater {
            &mut cheating
        } else {
            &mut honest
        };
        match record.verdict {
            ResultVerdict::Accepted { .. } => counts.0 += 1,
            ResultVerdict::Rejected { .. } | ResultVerdict::Discarded { .. } => counts.1 += 1,
        }
    }
    (honest, cheating)
}

/// The update an honest holder with `local` data computes for `fragment`.
async fn honest_update(
    client: &CoordinatorClient,
    spec: &JobSpec,
    fragment: &Fragment,
    local: &Dataset,
) -> Vec<f32> {
    let parameters = bytes_to_f32s(&client.fetch_blob(&fragment.model).await.unwrap()).unwrap();
    let WorkSpec::LocalSteps { steps, inner } = &spec.work else {
        panic!("federated work is local steps");
    };
    corex_ml::compute_local_steps(
        &corex_ml::Backend::cpu(),
        &spec.model,
        &parameters,
        local,
        &fragment.indices,
        *steps,
        inner,
    )
    .unwrap()
    .gradient
}

/// Submits through `client` a result of `gradient` for `fragment`, signed by `key`, with
/// `data` as its commitment.
async fn submit(
    client: &CoordinatorClient,
    key: &Keypair,
    fragment: &Fragment,
    gradient: &[f32],
    data: Option<LocalDataCommitment>,
) -> Result<(), NetError> {
    let tensor = ResultTensor::from_values(gradient);
    let result_hash = tensor.hash();
    let commitment = result_commitment(&key.id(), &fragment.id, &fragment.model, &result_hash);
    let header = ResultHeader {
        feedback: None,
        state_paths: None,
        checkpoint_paths: None,
        fragment: fragment.id,
        model: fragment.model,
        loss: 1.0,
        samples: fragment.indices.len() as u32,
        compute_ms: 1,
        result_hash,
        commitment_signature: key.sign(commitment.as_bytes()),
        data_commitment: data,
        trace: None,
    };
    client.submit_result(&header, tensor).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_intake_refuses_what_a_holder_may_not_send() {
    let (spec, locals) = federated_setup();
    let spec = JobSpec { rounds: 2, ..spec };
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    let owner = net.client(90);
    let job = owner.submit_job(&spec).await.unwrap();
    let device = corex_node::device::detect(1, &corex_ml::Backend::cpu());
    let holder_key = Keypair::from_secret([HOLDER_SEEDS[0]; 32]);
    let holder = net.client(HOLDER_SEEDS[0]);
    let outsider = net.client(99);
    holder.register(device.clone()).await.unwrap();
    outsider.register(device).await.unwrap();
    // The other three holders are ordinary agents.
    spawn_holders(&mut net, &locals, 1, None);

    // Nobody but a holder gets a federated fragment.
    assert!(matches!(
        outsider.lease(0).await.unwrap(),
        LeaseResponse::Idle { .. }
    ));
    let LeaseResponse::Work { fragment, .. } = holder.lease(0).await.unwrap() else {
        panic!("the holder's fragment is waiting");
    };
    assert_eq!(fragment.holder, Some(holder_key.id()));
    let update = honest_update(&holder, &spec, &fragment, &locals[0]).await;
    let commitment = |shard: &[u8]| LocalDataCommitment {
        shard: Hash::of(shard),
        samples: Hash::of(b"samples"),
    };

    let refused = submit(&holder, &holder_key, &fragment, &update, None)
        .await
        .unwrap_err();
    assert_eq!(refused.api_code(), Some("missing_data_commitment"));
    let stolen = submit(
        &outsider,
        &Keypair::from_secret([99; 32]),
        &fragment,
        &update,
        Some(commitment(b"shard")),
    )
    .await
    .unwrap_err();
    assert_eq!(stolen.api_code(), Some("leased_to_other"));
    submit(
        &holder,
        &holder_key,
        &fragment,
        &update,
        Some(commitment(b"shard")),
    )
    .await
    .unwrap();

    // The next round: the holder may not switch to other data mid-job.
    let fragment = loop {
        if let LeaseResponse::Work { fragment, .. } = holder.lease(1_000).await.unwrap() {
            break fragment;
        }
    };
    assert_eq!(fragment.round, 1);
    let update = honest_update(&holder, &spec, &fragment, &locals[0]).await;
    for (shard, refusal) in [
        (&b"another shard"[..], Some("shard_changed")),
        (b"shard", None),
    ] {
        let outcome = submit(
            &holder,
            &holder_key,
            &fragment,
            &update,
            Some(commitment(shard)),
        )
        .await;
        assert_eq!(
            outcome
                .err()
                .and_then(|e| e.api_code().map(str::to_owned))
                .as_deref(),
            refusal
        );
    }
    let status = wait_for_end(&owner, &job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    assert_eq!(status.nodes[&holder_key.id()].fragments, 2);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_never_comes_does_not_stall_the_job() {
    let (spec, locals) = federated_setup();
    let spec = JobSpec {
        rounds: 5,
        lease_ms: 500,
        ..spec
    };
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    // Three of the four holders come.
    spawn_holders(&mut net, &locals, 1, None);
    let owner = net.client(90);
    let job = owner.submit_job(&spec).await.unwrap();
    let status = wait_for_end(&owner, &job, Duration::from_secs(60)).await;
    let report = owner.job_report(&job).await.unwrap();
    net.shutdown().await;
    assert_eq!(status.state, JobState::Finished);
    let absent = Keypair::from_secret([HOLDER_SEEDS[0]; 32]).id();
    assert!(!status.nodes.contains_key(&absent));
    for round in &report.rounds {
        assert_eq!(
            round.results.len(),
            3,
            "each round closed with the three present"
        );
    }
}
