//! Data holders decide, over real TLS: a holder computes only federated jobs of owners it
//! allows, with at least its differential-privacy floor. A job from an owner the holder did
//! not allow, or one without noise (batch 1, one step: each round's model diff would carry one
//! training sample), is declined: its fragments leave the job, nothing is recorded against the
//! holder, and the allowed owner's private job beside it finishes.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{TestNet, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::messages::JobState;
use corex_core::{DataHolder, JobSpec, Keypair, PrivacySpec, WorkSpec};
use corex_ml::{Dataset, class_skewed_partition};
use corex_node::{HolderPolicy, NodeConfig};

const HOLDER_SEEDS: [u8; 2] = [71, 72];
const ALLOWED_OWNER: u8 = 90;

fn federated(
    locals: &[Dataset],
    privacy: Option<PrivacySpec>,
    local_batch: u32,
    steps: u32,
) -> JobSpec {
    let holders = HOLDER_SEEDS
        .iter()
        .zip(locals)
        .map(|(seed, local)| DataHolder {
            node: Keypair::from_secret([*seed; 32]).id(),
            samples: local.len() as u32,
        })
        .collect();
    let mut spec = JobSpec::digits_federated(holders, privacy);
    spec.rounds = 4;
    spec.lease_ms = 2_000;
    spec.work = WorkSpec::LocalSteps {
        steps,
        inner: corex_core::OptimizerSpec::Sgd {
            learning_rate: 0.1,
            momentum: 0.0,
        },
    };
    if let Some(federated) = spec.federated.as_mut() {
        federated.local_batch = local_batch;
    }
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_compute_only_what_they_agreed_to() {
    let digits = Dataset::digits().unwrap();
    let split = digits.split(0.2, 42);
    let shares = class_skewed_partition(&digits, &split.train, 2, 7).unwrap();
    let locals: Vec<Dataset> = shares.iter().map(|s| digits.subset(s).unwrap()).collect();
    let mut net = TestNet::start(CoordinatorConfig::one_machine()).await;
    for (seed, local) in HOLDER_SEEDS.iter().zip(&locals) {
        net.spawn_node_with(
            *seed,
            NodeConfig {
                local_data: Some(Arc::new(local.clone())),
                holder: HolderPolicy {
                    allowed_owners: BTreeSet::from(
                        [Keypair::from_secret([ALLOWED_OWNER; 32]).id()],
                    ),
                    min_noise_multiplier: 1.0,
                    max_epsilon: Some(50.0),
                },
                ..NodeConfig::default()
            },
        );
    }
    let private = Some(PrivacySpec {
        clip_norm: 1.0,
        noise_multiplier: 1.1,
        delta: 1e-5,
    });

    // An owner the holders never allowed.
    let stranger = net.client(91);
    let refused = stranger
        .submit_job(&federated(&locals, private, 32, 16))
        .await
        .unwrap();
    let status = wait_for_end(&stranger, &refused, Duration::from_secs(60)).await;
    assert!(
        matches!(&status.state, JobState::Failed { reason } if reason.contains("declined")),
        "{:?}",
        status.state
    );
    assert!(status.nodes.is_empty(), "no holder computed anything");

    // The allowed owner, without noise, one sample a step: below the holders' floor.
    let owner = net.client(ALLOWED_OWNER);
    let leaky = owner
        .submit_job(&federated(&locals, None, 1, 1))
        .await
        .unwrap();
    let status = wait_for_end(&owner, &leaky, Duration::from_secs(60)).await;
    assert!(
        matches!(status.state, JobState::Failed { .. }),
        "{:?}",
        status.state
    );
    assert!(status.nodes.is_empty());

    // The allowed owner with enough noise: computed to the end.
    let agreed = owner
        .submit_job(&federated(&locals, private, 32, 16))
        .await
        .unwrap();
    let status = wait_for_end(&owner, &agreed, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    assert_eq!(status.nodes.len(), 2, "both holders computed it");

    // Declining cost the holders nothing on the ledger.
    for seed in HOLDER_SEEDS {
        let holder = Keypair::from_secret([seed; 32]).id();
        let view = owner.ledger_account(&holder).await.unwrap().unwrap();
        let profile = view.node.unwrap().profile;
        assert_eq!(
            (profile.hard_rejects, profile.failures),
            (0, 0),
            "{profile:?}"
        );
    }
    net.shutdown().await;
}
