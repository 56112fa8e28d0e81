//! Class-skewed partitions for federated experiments: how a dataset's samples would sit on
//! data holders that each see only a few classes (the non-IID case federated averaging has to
//! survive), and the CSV a holder keeps them in.
//!
//! The partition follows McMahan et al. (2017): sort the samples by label, cut the sorted list
//! into `2 × holders` contiguous shards, and deal each holder two shards picked by a seeded
//! permutation, so with ten classes and four holders each holder sees at most half of them.

use std::fmt::Write as _;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::dataset::Dataset;
use crate::error::MlError;

/// Splits `indices` (positions in `data`) among `holders` by class as described above; every
/// index goes to exactly one holder, and the result depends only on its inputs and `seed`.
pub fn class_skewed_partition(
    data: &Dataset,
    indices: &[u32],
    holders: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>, MlError> {
    if holders == 0 || indices.len() < 2 * holders {
        return Err(MlError::Dataset(format!(
            "{} samples cannot be dealt to {holders} holders two shards each",
            indices.len()
        )));
    }
    if data.kind() == crate::DatasetKind::Text {
        return Err(MlError::Dataset(
            "a text has no classes to partition by".into(),
        ));
    }
    data.check_indices(indices)?;
    let mut sorted = indices.to_vec();
    sorted.sort_by_key(|&index| (data.label_of(index as usize), index));
    let shard_count = 2 * holders;
    let shards: Vec<&[u32]> = (0..shard_count)
        .map(|shard| {
            &sorted[shard * sorted.len() / shard_count..(shard + 1) * sorted.len() / shard_count]
        })
        .collect();
    let mut order: Vec<usize> = (0..shard_count).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    Ok(order
        .chunks(2)
        .map(|pair| {
            pair.iter()
                .flat_map(|&shard| shards[shard])
                .copied()
                .collect()
        })
        .collect())
}

impl Dataset {
    /// The samples at `indices` as a new tabular dataset with the same feature and class
    /// counts (images become pixel rows in `[0, 1]`).
    pub fn subset(&self, indices: &[u32]) -> Result<Self, MlError> {
        if self.kind() == crate::DatasetKind::Text {
            return Err(MlError::Dataset("a text has no rows to take".into()));
        }
        self.check_indices(indices)?;
        let (features, labels) = self.gather(indices);
        Self::from_parts(features, labels, self.feature_count(), self.class_count())
    }

    /// CSV with a header `f0,…,f{n-1},label` that [`Dataset::from_csv`] reads back to the same
    /// values (Rust prints the shortest decimal that round-trips an `f32`).
    pub fn to_csv(&self) -> String {
        let mut text = String::new();
        for feature in 0..self.feature_count() {
            let _ = write!(text, "f{feature},");
        }
        text.push_str("label\n");
        let all: Vec<u32> = (0..self.len() as u32).collect();
        let (features, labels) = self.gather(&all);
        let width = self.feature_count().max(1);
        for (row, label) in features.chunks(width).zip(labels) {
            for value in row {
                let _ = write!(text, "{value},");
            }
            let _ = writeln!(text, "{label}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_sample_goes_to_one_holder_and_holders_see_few_classes() {
        let digits = Dataset::digits().unwrap();
        let split = digits.split(0.2, 42);
        let parts = class_skewed_partition(&digits, &split.train, 4, 9).unwrap();
        let mut all: Vec<u32> = parts.iter().flatten().copied().collect();
        all.sort_unstable();
        let mut train = split.train.clone();
        train.sort_unstable();
        assert_eq!(all, train);
        for part in &parts {
            let classes: BTreeSet<u32> = part
                .iter()
                .filter_map(|&index| digits.label_of(index as usize))
                .collect();
            assert!(
                classes.len() <= 5,
                "a holder sees {classes:?}: not half the classes"
            );
        }
        assert_eq!(
            parts,
            class_skewed_partition(&digits, &split.train, 4, 9).unwrap()
        );
    }

    #[test]
    fn a_subset_survives_the_csv_round_trip_bit_for_bit() {
        let digits = Dataset::digits().unwrap();
        let subset = digits.subset(&[5, 900, 17]).unwrap();
        let path = std::env::temp_dir().join(format!("corex-subset-{}.csv", std::process::id()));
        std::fs::write(&path, subset.to_csv()).unwrap();
        let back = Dataset::from_csv(&path, None).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back.len(), 3);
        let all = [0, 1, 2];
        assert_eq!(back.feature_rows(&all), subset.feature_rows(&all));
        for sample in 0..3 {
            assert_eq!(back.label_of(sample), subset.label_of(sample));
        }
    }
}
