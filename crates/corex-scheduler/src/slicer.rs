//! The slicer: turns a job's round into fragments (of the job's work kind) over seeded sample indices.
//!
//! A training job visits its training set as an endless stream of epochs; epoch `e` is the
//! train split permuted by a ChaCha8 generator seeded from `H("corex-epoch" ‖ seed ‖ e)`.
//! Round `r` takes stream positions `[r·B, (r+1)·B)`. A job of output work (inference,
//! transforms) passes over its samples once, in order: round `r` takes `[r·B, (r+1)·B)` of
//! them, the last round fewer. Anyone holding the job spec can recompute every index, so a
//! fragment's samples are never the node's choice.

use corex_core::{Fragment, Granularity, Hash, JobSpec};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::granularity::plan_sizes;

/// The permutation of the train split used in epoch `epoch`.
pub fn epoch_order(train: &[u32], seed: u64, epoch: u64) -> Vec<u32> {
    let digest = Hash::of_parts(&[b"corex-epoch", &seed.to_le_bytes(), &epoch.to_le_bytes()]);
    let mut rng = ChaCha8Rng::from_seed(digest.0);
    let mut order = train.to_vec();
    order.shuffle(&mut rng);
    order
}

/// The global batch of round `round`: `global_batch` sample indices from the epoch stream.
pub fn round_batch(train: &[u32], global_batch: u32, seed: u64, round: u32) -> Vec<u32> {
    if train.is_empty() {
        return Vec::new();
    }
    let n = train.len() as u64;
    let start = u64::from(round) * u64::from(global_batch);
    let end = start + u64::from(global_batch);
    let mut batch = Vec::with_capacity(global_batch as usize);
    let mut position = start;
    while position < end {
        let epoch = position / n;
        let order = epoch_order(train, seed, epoch);
        let from = (position % n) as usize;
        let take = ((end - position).min(n - from as u64)) as usize;
        batch.extend_from_slice(&order[from..from + take]);
        position += take as u64;
    }
    batch
}

/// The samples of round `round` of a job that passes over `samples` once:
/// `samples[round·B .. (round+1)·B]`, cut at the end (empty past it).
pub fn pass_batch(samples: &[u32], global_batch: u32, round: u32) -> Vec<u32> {
    let start = (u64::from(round) * u64::from(global_batch)).min(samples.len() as u64) as usize;
    let end = (start + global_batch as usize).min(samples.len());
    samples[start..end].to_vec()
}

/// Cuts round `round` of `spec` into fragments that start from model version `model`: of
/// `fragment_samples` each, or with adaptive granularity sized to nodes of `speeds_mflops`
/// (see [`plan_sizes`]). The round's samples are the same either way: from the epoch stream
/// over `pool` (the train split) for a training job, the next stretch of `pool` for a job of
/// output work.
pub fn slice_round(
    job: &Hash,
    spec: &JobSpec,
    pool: &[u32],
    round: u32,
    model: Hash,
    speeds_mflops: &[u64],
) -> Vec<Fragment> {
    let flops_per_sample = spec.work.flops_per_sample(&spec.model);
    let batch = if spec.work.trains() {
        round_batch(pool, spec.global_batch, spec.seed, round)
    } else {
        pass_batch(pool, spec.global_batch, round)
    };
    let sizes: Vec<u32> = match spec.granularity {
        Granularity::Fixed => batch
            .chunks(spec.fragment_samples as usize)
            .map(|chunk| chunk.len() as u32)
            .collect(),
        Granularity::Adaptive { target_ms } => plan_sizes(
            batch.len() as u32,
            flops_per_sample,
            speeds_mflops,
            target_ms,
            spec.fragment_samples,
        ),
    };
    let mut offset = 0usize;
    sizes
        .iter()
        .map(|&size| {
            let indices = &batch[offset..offset + size as usize];
            offset += size as usize;
            indices
        })
        .enumerate()
        .map(|(index, indices)| Fragment {
            id: Fragment::derive_id(job, round, index as u32),
            job: *job,
            round,
            index: index as u32,
            model,
            kind: spec.work.fragment_kind(),
            indices: indices.to_vec(),
            cost_flops: flops_per_sample.saturating_mul(indices.len() as u64),
            holder: None,
            steps: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn consecutive_rounds_visit_each_sample_once_per_epoch(n in 1u32..200, batch in 1u32..64, seed in any::<u64>()) {
            let train: Vec<u32> = (0..n).map(|i| i * 3).collect();
            let rounds = n.div_ceil(batch) * 2;
            let stream: Vec<u32> = (0..rounds).flat_map(|r| round_batch(&train, batch, seed, r)).collect();
            for epoch in stream.chunks(n as usize).filter(|c| c.len() == n as usize) {
                let mut sorted = epoch.to_vec();
                sorted.sort_unstable();
                prop_assert_eq!(&sorted, &train);
            }
        }
    }

    #[test]
    fn slicing_is_a_pure_function_of_the_spec() {
        let spec = JobSpec::digits_gradient();
        let train: Vec<u32> = (0..1437).collect();
        let job = Hash::of(b"job");
        let first = slice_round(&job, &spec, &train, 3, Hash::of(b"w3"), &[]);
        assert_eq!(
            first,
            slice_round(&job, &spec, &train, 3, Hash::of(b"w3"), &[7])
        );
        assert_eq!(first.len() as u32, spec.fragments_per_round());
        let samples: usize = first.iter().map(|f| f.indices.len()).sum();
        assert_eq!(samples as u32, spec.global_batch);
        assert_eq!(
            first[0].cost_flops,
            spec.model.train_flops_per_sample() * u64::from(spec.fragment_samples)
        );
        assert_ne!(
            first[0].indices,
            slice_round(&job, &spec, &train, 4, Hash::of(b"w4"), &[])[0].indices
        );
    }

    #[test]
    fn an_output_job_passes_over_its_samples_once_in_order() {
        let spec = JobSpec {
            work: corex_core::WorkSpec::Inference { weights: None },
            global_batch: 100,
            fragment_samples: 30,
            ..JobSpec::digits_gradient()
        };
        let samples: Vec<u32> = (0..250).collect();
        let job = Hash::of(b"job");
        let rounds: Vec<Vec<Fragment>> = (0..3)
            .map(|round| slice_round(&job, &spec, &samples, round, Hash::of(b"w"), &[]))
            .collect();
        let passed: Vec<u32> = rounds
            .iter()
            .flatten()
            .flat_map(|f| f.indices.clone())
            .collect();
        assert_eq!(passed, samples);
        let sizes: Vec<usize> = rounds[2].iter().map(|f| f.indices.len()).collect();
        assert_eq!(sizes, [30, 20]);
        assert_eq!(rounds[0][0].kind, corex_core::FragmentKind::Inference);
        assert_eq!(
            rounds[0][0].cost_flops,
            30 * 2 * spec.model.forward_macs_per_sample()
        );
        assert!(pass_batch(&samples, 100, 3).is_empty());
    }

    #[test]
    fn adaptive_rounds_cover_the_same_samples_in_node_sized_fragments() {
        let fixed = JobSpec::digits_gradient();
        let spec = JobSpec {
            granularity: Granularity::Adaptive { target_ms: 100 },
            fragment_samples: 16,
            ..fixed.clone()
        };
        let train: Vec<u32> = (0..1437).collect();
        let job = Hash::of(b"job");
        // One node 4× faster than the other: its pieces are 4× larger.
        let speed = spec.model.train_flops_per_sample() * 128 * 10 / 1_000_000;
        let adaptive = slice_round(&job, &spec, &train, 2, Hash::of(b"w"), &[speed, speed / 4]);
        let sizes: Vec<usize> = adaptive.iter().map(|f| f.indices.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), spec.global_batch as usize);
        assert!(sizes[0] >= 3 * sizes[sizes.len() - 1], "{sizes:?}");
        let mut samples: Vec<u32> = adaptive.iter().flat_map(|f| f.indices.clone()).collect();
        let mut same: Vec<u32> = slice_round(&job, &fixed, &train, 2, Hash::of(b"w"), &[])
            .into_iter()
            .flat_map(|f| f.indices)
            .collect();
        samples.sort_unstable();
        same.sort_unstable();
        assert_eq!(samples, same);
    }
}
