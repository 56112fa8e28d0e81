//! A fragment computed on a dataset of just its samples, read by byte range from the encoding
//! (what a node does with the chunks it fetched), gives the bits the whole dataset gives, for
//! every kind and family; a sample outside the dataset or bytes of the wrong length are refused.

use corex_core::{CnnSpec, ModelSpec, TransformerSpec, WorkSpec};
use corex_ml::Backend;
use corex_ml::{Dataset, EncodedLayout, MlError, init_parameters, run_fragment};

fn cases() -> Vec<(ModelSpec, Dataset, usize)> {
    let lm = ModelSpec::Transformer(TransformerSpec {
        layers: 1,
        width: 16,
        heads: 2,
        context: 10,
        ff: Some(32),
    });
    let cnn = ModelSpec::Cnn(CnnSpec {
        channels: 1,
        height: 8,
        width: 8,
        conv: vec![4],
        kernel: 3,
        hidden: vec![8],
        classes: 3,
    });
    vec![
        (lm, Dataset::synthetic_text(3000, 4).unwrap(), 11),
        (cnn, Dataset::synthetic_images(90, 8, 5).unwrap(), 1),
        (
            ModelSpec::mlp(64, vec![16], 10),
            Dataset::digits().unwrap(),
            1,
        ),
    ]
}

#[test]
fn a_fragment_on_its_subset_equals_it_on_the_whole_dataset() {
    for (spec, data, window) in cases() {
        let bytes = data.to_bytes();
        let layout = EncodedLayout::parse(&bytes[..EncodedLayout::MAX_HEADER_BYTES]).unwrap();
        assert_eq!(layout.encoded_bytes(), bytes.len() as u64);
        // Unsorted, with repeats and windows that overlap.
        let indices = vec![40, 3, 17, 3, 41, 88, 0, 40];
        let mut reads = 0;
        let (subset, local) = layout
            .subset(&indices, window, |range| {
                reads += 1;
                Ok(bytes[range.start as usize..range.end as usize].to_vec())
            })
            .unwrap();
        assert_eq!(reads, 6, "each distinct sample is read once");
        assert_eq!(local.len(), indices.len());
        let params = init_parameters(&spec, 9);
        for work in [WorkSpec::Gradient, WorkSpec::Inference { weights: None }] {
            let whole =
                run_fragment(&Backend::cpu(), &work, &spec, &params, &data, &indices).unwrap();
            let sparse =
                run_fragment(&Backend::cpu(), &work, &spec, &params, &subset, &local).unwrap();
            assert_eq!(whole.values, sparse.values, "{} {work:?}", spec.family());
            assert_eq!(whole.loss.to_bits(), sparse.loss.to_bits());
        }
    }
}

#[test]
fn samples_outside_the_dataset_and_short_reads_are_refused() {
    let text = Dataset::synthetic_text(100, 1).unwrap();
    let bytes = text.to_bytes();
    let layout = EncodedLayout::parse(&bytes).unwrap();
    // The last whole window of 11 bytes starts at 89.
    assert!(layout.sample_range(89, 11).is_ok());
    assert!(matches!(
        layout.sample_range(90, 11),
        Err(MlError::SampleIndex { index: 90, .. })
    ));
    let short = layout.subset(&[0], 11, |_| Ok(vec![0; 3]));
    assert!(short.is_err());
    // A header that promises more than the address space holds is refused before anything
    // is allocated.
    let images = Dataset::synthetic_images(4, 8, 1).unwrap().to_bytes();
    let mut huge = images.clone();
    huge[28..36].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(EncodedLayout::parse(&huge).is_err());
    // A label past the class count in a fetched record is refused like in the whole dataset.
    let layout = EncodedLayout::parse(&images).unwrap();
    let bad = layout.subset(&[1], 1, |range| {
        let mut record = images[range.start as usize..range.end as usize].to_vec();
        *record.last_mut().unwrap() = 200;
        Ok(record)
    });
    assert!(bad.is_err());
}
