//! Adaptive granularity, pure: cuts a round's samples into fragments sized to the nodes that
//! will compute them, so that each fragment takes about a target time on its node and each
//! node's part of the round tracks its speed.

/// Fragment sizes (samples) for a round of `batch` samples over nodes of `speeds_mflops`: node
/// `i` is planned `batch × vᵢ / Σv` samples in pieces of about `vᵢ × target / cost_per_sample`
/// (at least `min_samples`), so every piece takes about `target_ms` on its node. Sizes come
/// back largest first and sum to `batch` exactly. With no speeds, one fragment per
/// `min_samples`.
pub fn plan_sizes(
    batch: u32,
    flops_per_sample: u64,
    speeds_mflops: &[u64],
    target_ms: u64,
    min_samples: u32,
) -> Vec<u32> {
    let min_samples = min_samples.clamp(1, batch.max(1));
    let total_speed: u128 = speeds_mflops.iter().map(|&v| u128::from(v)).sum();
    if batch == 0 {
        return Vec::new();
    }
    if total_speed == 0 {
        return split(batch, batch.div_ceil(min_samples));
    }
    let mut sizes = Vec::new();
    let mut planned = 0u32;
    for (index, &speed) in speeds_mflops.iter().enumerate() {
        let share = if index + 1 == speeds_mflops.len() {
            batch - planned
        } else {
            (u128::from(batch) * u128::from(speed) / total_speed) as u32
        };
        planned += share;
        if share == 0 {
            continue;
        }
        // Samples this node computes in the target time.
        let per_target = (u128::from(speed) * 1_000_000 * u128::from(target_ms)
            / 1_000
            / u128::from(flops_per_sample.max(1))) as u32;
        let piece = per_target.clamp(min_samples, share.max(min_samples));
        sizes.extend(split(share, share.div_ceil(piece)));
    }
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes
}

/// `total` split into `parts` near-equal positive sizes.
fn split(total: u32, parts: u32) -> Vec<u32> {
    let parts = parts.clamp(1, total.max(1));
    (0..parts)
        .map(|part| total / parts + u32::from(part < total % parts))
        .filter(|size| *size > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_sum_to_the_batch_and_follow_speed() {
        // 1 MFLOP per sample; 1,000 and 250 MFLOP/s nodes, 100 ms target: 100- and 25-sample
        // pieces; the fast node plans 800 samples, the slow one 200.
        let sizes = plan_sizes(1_000, 1_000_000, &[1_000, 250], 100, 4);
        assert_eq!(sizes.iter().sum::<u32>(), 1_000);
        assert_eq!(sizes.iter().filter(|s| **s == 100).count(), 8);
        assert_eq!(sizes.iter().filter(|s| **s == 25).count(), 8);
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn degenerate_inputs_still_cover_the_batch() {
        assert_eq!(plan_sizes(10, 1, &[], 100, 4).iter().sum::<u32>(), 10);
        assert_eq!(plan_sizes(10, 1, &[0, 0], 100, 4).iter().sum::<u32>(), 10);
        assert_eq!(plan_sizes(3, 1_000_000, &[1], 1, 8), vec![3]);
        assert!(plan_sizes(0, 1, &[5], 100, 4).is_empty());
        let sizes = plan_sizes(1_000, 1_000_000, &[1_000_000], 100, 4);
        assert_eq!(
            sizes,
            vec![1_000],
            "one piece when the node does it all in time"
        );
    }
}
