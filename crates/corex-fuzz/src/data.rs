//! Datasets (their canonical byte encoding and CSV text) and models as safetensors.
//!
//! Oracles beyond "no panic": dataset bytes that decode are exactly the canonical encoding of
//! what they decode to, hash to its content hash, split into a partition of the samples, and
//! give the same samples read by byte range (a node's sparse view) as decoded whole; a
//! CSV that loads gives a consistent dataset whose encoding round-trips, and a CSV that fails
//! gets a short error that cannot be repeating the data; a safetensors model that loads writes
//! back to one that loads to the same spec and the same bits.

use corex_core::{Hash, ModelSpec};
use corex_ml::{
    Dataset, DatasetKind, EncodedLayout, MlError, from_safetensors, init_parameters, to_safetensors,
};

pub fn dataset_bytes(data: &[u8]) {
    check_samples_by_range(data);
    let Ok(dataset) = Dataset::from_bytes(data) else {
        return;
    };
    assert_eq!(dataset.to_bytes(), data);
    assert_eq!(dataset.content_hash(), *Hash::of(data).as_bytes());
    check_split(&dataset, u64::from(data.len() as u32));
}

/// Reading samples by byte range, as a node does from the chunks it fetched, never panics
/// whatever the header says; for bytes that decode whole, the samples read that way are the
/// whole dataset's.
fn check_samples_by_range(data: &[u8]) {
    let Ok(layout) = EncodedLayout::parse(data) else {
        return;
    };
    let read = |range: std::ops::Range<u64>| {
        usize::try_from(range.start)
            .ok()
            .zip(usize::try_from(range.end).ok())
            .and_then(|(start, end)| data.get(start..end))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| MlError::Dataset("past the end of the bytes".into()))
    };
    let indices = [1, 0, 1];
    let subset = layout.subset(&indices, 2, read);
    if let Ok(whole) = Dataset::from_bytes(data)
        && whole.kind() != DatasetKind::Text
        && whole.len() >= 2
    {
        let (subset, local) = subset.expect("the samples of a dataset that decodes decode");
        assert_eq!(
            subset
                .feature_rows(&local)
                .expect("local indices are inside the subset"),
            whole
                .feature_rows(&indices)
                .expect("indices are inside the dataset")
        );
    }
}

/// A split's two sides hold every sample exactly once.
fn check_split(dataset: &Dataset, seed: u64) {
    let split = dataset.split(0.25, seed);
    let mut all: Vec<u32> = split.train.iter().chain(&split.test).copied().collect();
    all.sort_unstable();
    assert!(all.iter().copied().eq(0..dataset.len() as u32));
}

/// Longest error a CSV may get: every message names a line, a column and what is wrong, and
/// never repeats the data, so none comes near this.
const MAX_CSV_ERROR: usize = 256;

/// The label column the first byte picks: the last column, or one by name.
const LABEL_COLUMNS: [Option<&str>; 3] = [None, Some("label"), Some("y")];

pub fn dataset_csv(data: &[u8]) {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let label_column = LABEL_COLUMNS[usize::from(pick) % LABEL_COLUMNS.len()];
    let dataset = match Dataset::from_csv_reader(text, label_column, "fuzz.csv") {
        Ok(dataset) => dataset,
        Err(error) => {
            let message = error.to_string();
            assert!(message.len() <= MAX_CSV_ERROR, "long CSV error: {message}");
            return;
        }
    };
    assert!(!dataset.is_empty());
    assert!(dataset.class_count() >= 1);
    let labels = (0..dataset.len()).filter_map(|index| dataset.label_of(index));
    assert_eq!(
        labels.max().map(|label| label as usize + 1),
        Some(dataset.class_count())
    );
    let again = Dataset::from_bytes(&dataset.to_bytes()).expect("a loaded dataset re-decodes");
    assert_eq!(again, dataset);
    check_split(&dataset, dataset.len() as u64);
}

pub fn safetensors(data: &[u8]) {
    let Ok((spec, params)) = from_safetensors(data) else {
        return;
    };
    let written = to_safetensors(&spec, &params).expect("a loaded model writes back");
    let (again, again_params) = from_safetensors(&written).expect("a written model loads");
    assert_eq!(again, spec);
    let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&again_params), bits(&params));
}

pub(crate) fn dataset_bytes_seeds() -> Vec<Vec<u8>> {
    let parts: [(Vec<f32>, Vec<u32>, usize, usize); 3] = [
        (vec![0.5], vec![0], 1, 1),
        (vec![1.0, -2.0, 0.0, 3.5, -0.0, 1e-3], vec![1, 0, 2], 2, 4),
        (
            (0..40).map(|i| i as f32).collect(),
            (0..10).map(|i| i % 3).collect(),
            4,
            3,
        ),
    ];
    let mut seeds: Vec<Vec<u8>> = parts
        .into_iter()
        .map(|(features, labels, feature_count, class_count)| {
            Dataset::from_parts(features, labels, feature_count, class_count)
                .expect("a consistent dataset")
                .to_bytes()
        })
        .collect();
    seeds.push(Dataset::synthetic_text(64, 1).expect("a text").to_bytes());
    seeds.push(
        Dataset::synthetic_images(3, 4, 1)
            .expect("images")
            .to_bytes(),
    );
    seeds
}

pub(crate) fn dataset_csv_seeds() -> Vec<Vec<u8>> {
    let texts: [(u8, &str); 5] = [
        (0, "a,b,y\n1,2,0\n3.5,-4,1\n0,0,2\n"),
        (1, "label,x\n0,1e3\n1,-0.25\n"),
        (2, "x1 , y , x2\n 1 , 1 , 2\n\"3\",0,4\n"),
        (0, "f,class\n1,0\n2,1\n3,1\n4,0\n5,7\n"),
        (1, "a,label\r\n1,0\r\n2,1\r\n"),
    ];
    texts
        .iter()
        .map(|(pick, text)| {
            let mut seed = vec![*pick];
            seed.extend_from_slice(text.as_bytes());
            seed
        })
        .collect()
}

pub(crate) fn safetensors_seeds() -> Vec<Vec<u8>> {
    let specs = [
        ModelSpec::mlp(2, vec![], 2),
        ModelSpec::mlp(3, vec![4], 2),
        ModelSpec::mlp(1, vec![2, 2], 3),
        ModelSpec::Cnn(corex_core::CnnSpec {
            channels: 1,
            height: 4,
            width: 4,
            conv: vec![2],
            kernel: 3,
            hidden: vec![],
            classes: 2,
        }),
        ModelSpec::Transformer(corex_core::TransformerSpec {
            layers: 1,
            width: 4,
            heads: 2,
            context: 3,
            ff: Some(4),
        }),
    ];
    specs
        .iter()
        .enumerate()
        .map(|(seed, spec)| {
            to_safetensors(spec, &init_parameters(spec, seed as u64)).expect("a valid model")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_decodes() {
        for seed in dataset_bytes_seeds() {
            Dataset::from_bytes(&seed).expect("a seed decodes");
            dataset_bytes(&seed);
        }
        for seed in dataset_csv_seeds() {
            let label_column = LABEL_COLUMNS[usize::from(seed[0]) % LABEL_COLUMNS.len()];
            Dataset::from_csv_reader(&seed[1..], label_column, "seed").expect("a seed loads");
            dataset_csv(&seed);
        }
        for seed in safetensors_seeds() {
            from_safetensors(&seed).expect("a seed loads");
            safetensors(&seed);
        }
    }
}
