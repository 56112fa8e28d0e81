//! Federated rounds: one local-steps fragment per data holder, over positions in the holder's
//! own dataset (the coordinator never sees the data, only how many samples each holder has).
//!
//! Without differential privacy a holder's samples come from its own seeded epoch stream, so
//! the indices are public and recomputable like a shared job's. Under differential privacy
//! the fragment names the whole local dataset as the pool and the node Poisson-samples it
//! with secret randomness: privacy amplification by subsampling needs the sample hidden.

use corex_core::{FederatedSpec, Fragment, FragmentKind, Hash, JobSpec, WorkSpec};

use crate::slicer::round_batch;

/// Fragments of round `round` of a federated job, one per holder in the spec's order.
pub fn slice_federated_round(
    job: &Hash,
    spec: &JobSpec,
    federated: &FederatedSpec,
    round: u32,
    model: Hash,
) -> Vec<Fragment> {
    let steps = match spec.work {
        WorkSpec::LocalSteps { steps, .. } => steps,
        _ => 1,
    };
    let flops_per_sample = spec.model.train_flops_per_sample();
    let round_samples = federated.local_batch.saturating_mul(steps);
    federated
        .holders
        .iter()
        .enumerate()
        .map(|(index, holder)| {
            let local: Vec<u32> = (0..holder.samples).collect();
            let indices = if federated.privacy.is_some() {
                local
            } else {
                round_batch(&local, round_samples, holder_seed(spec.seed, index), round)
            };
            Fragment {
                id: Fragment::derive_id(job, round, index as u32),
                job: *job,
                round,
                index: index as u32,
                model,
                kind: FragmentKind::LocalSteps,
                cost_flops: flops_per_sample.saturating_mul(u64::from(round_samples)),
                indices,
                holder: Some(holder.node),
                steps: None,
            }
        })
        .collect()
}

/// Seed of holder `index`'s epoch stream: distinct per holder, fixed by the job seed.
fn holder_seed(seed: u64, index: usize) -> u64 {
    let digest = Hash::of_parts(&[
        b"corex-holder-epochs",
        &seed.to_le_bytes(),
        &(index as u64).to_le_bytes(),
    ]);
    u64::from_le_bytes(digest.0[..8].try_into().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use corex_core::{DataHolder, Keypair, PrivacySpec};

    fn federated(privacy: Option<PrivacySpec>) -> (JobSpec, FederatedSpec) {
        let holders = (0..3u8)
            .map(|i| DataHolder {
                node: Keypair::from_secret([i + 1; 32]).id(),
                samples: 100 + u32::from(i) * 50,
            })
            .collect();
        let federated = FederatedSpec {
            holders,
            local_batch: 8,
            privacy,
        };
        let mut spec = JobSpec::digits_h16();
        spec.fragment_samples = 128;
        spec.federated = Some(federated.clone());
        (spec, federated)
    }

    #[test]
    fn each_holder_gets_one_fragment_over_its_own_positions() {
        let (spec, federated) = federated(None);
        let job = Hash::of(b"job");
        let fragments = slice_federated_round(&job, &spec, &federated, 3, Hash::of(b"m"));
        assert_eq!(fragments.len(), 3);
        for (fragment, holder) in fragments.iter().zip(&federated.holders) {
            assert_eq!(fragment.holder, Some(holder.node));
            assert_eq!(fragment.indices.len(), 8 * 16, "local_batch × steps");
            assert!(fragment.indices.iter().all(|&i| i < holder.samples));
        }
        assert_ne!(fragments[0].indices, fragments[1].indices[..]);
        let again = slice_federated_round(&job, &spec, &federated, 3, Hash::of(b"m"));
        assert_eq!(fragments, again, "public, recomputable indices");
    }

    #[test]
    fn under_privacy_the_pool_is_the_whole_local_dataset() {
        let privacy = PrivacySpec {
            clip_norm: 1.0,
            noise_multiplier: 1.0,
            delta: 1e-5,
        };
        let (spec, federated) = federated(Some(privacy));
        let fragments =
            slice_federated_round(&Hash::of(b"job"), &spec, &federated, 0, Hash::of(b"m"));
        for (fragment, holder) in fragments.iter().zip(&federated.holders) {
            assert_eq!(fragment.indices, (0..holder.samples).collect::<Vec<_>>());
        }
    }
}
