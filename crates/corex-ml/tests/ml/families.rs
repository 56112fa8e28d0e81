//! Every family (MLP, CNN, byte-level transformer) through every fragment kind: fragments'
//! mean gradient equals the whole batch's, results are deterministic, local steps replay
//! segment by segment, inference and evaluation score the right rows, exports round-trip and
//! generation is seeded.

use corex_core::{CnnSpec, ModelSpec, OptimizerSpec, TransformerSpec, WorkSpec};
use corex_ml::Backend;
use corex_ml::{
    Dataset, compute_gradient, compute_traced_local_steps, evaluate, from_safetensors,
    generate_text, init_parameters, predict, prediction_labels, replay_local_steps, replay_segment,
    run_fragment, to_safetensors, weighted_mean,
};

use crate::common::rel_l2;

pub(crate) fn lm() -> ModelSpec {
    ModelSpec::Transformer(TransformerSpec {
        layers: 2,
        width: 16,
        heads: 2,
        context: 12,
        ff: Some(32),
    })
}

pub(crate) fn cnn() -> ModelSpec {
    ModelSpec::Cnn(CnnSpec {
        channels: 1,
        height: 8,
        width: 8,
        conv: vec![4, 6],
        kernel: 3,
        hidden: vec![12],
        classes: 3,
    })
}

/// Each family with a dataset it reads.
fn cases() -> Vec<(ModelSpec, Dataset)> {
    vec![
        (lm(), Dataset::synthetic_text(4000, 1).unwrap()),
        (cnn(), Dataset::synthetic_images(120, 8, 2).unwrap()),
        (
            ModelSpec::mlp(64, vec![16], 3),
            Dataset::synthetic_images(120, 8, 3).unwrap(),
        ),
    ]
}

fn indices(count: u32, stride: u32) -> Vec<u32> {
    (0..count).map(|i| i * stride).collect()
}

#[test]
fn fragments_mean_gradient_is_the_whole_batch_gradient() {
    for (spec, data) in cases() {
        let params = init_parameters(&spec, 5);
        let batch = indices(24, 3);
        let whole = compute_gradient(&Backend::cpu(), &spec, &params, &data, &batch).unwrap();
        let parts: Vec<_> = batch
            .chunks(8)
            .map(|chunk| compute_gradient(&Backend::cpu(), &spec, &params, &data, chunk).unwrap())
            .collect();
        let weighted: Vec<(&[f32], u32)> = parts
            .iter()
            .map(|part| (part.gradient.as_slice(), part.samples))
            .collect();
        let mean = weighted_mean(&weighted).unwrap();
        let error = rel_l2(&mean, &whole.gradient);
        assert!(error < 1e-5, "{}: {error:.3e}", spec.family());
        let again = compute_gradient(&Backend::cpu(), &spec, &params, &data, &batch).unwrap();
        assert_eq!(again, whole, "{}: same inputs, same bits", spec.family());
        assert!(whole.loss.is_finite() && whole.loss > 0.0);
    }
}

#[test]
fn local_steps_replay_segment_by_segment_for_every_family() {
    let inner = OptimizerSpec::Sgd {
        learning_rate: 0.1,
        momentum: 0.0,
    };
    for (spec, data) in cases() {
        let params = init_parameters(&spec, 6);
        let batch = indices(16, 2);
        let traced = compute_traced_local_steps(
            &Backend::cpu(),
            &spec,
            &params,
            &data,
            &batch,
            4,
            &inner,
            &[2],
        )
        .unwrap();
        let (second_end, _) = replay_local_steps(
            &Backend::cpu(),
            &spec,
            &traced.checkpoints[0],
            &data,
            &batch,
            4,
            &inner,
            2..4,
        )
        .unwrap();
        let (whole_end, losses) = replay_local_steps(
            &Backend::cpu(),
            &spec,
            &params,
            &data,
            &batch,
            4,
            &inner,
            0..4,
        )
        .unwrap();
        assert_eq!(
            second_end,
            whole_end,
            "{}: a segment replays bit for bit",
            spec.family()
        );
        assert_eq!(losses, traced.losses);
        let replayed = replay_segment(
            &Backend::cpu(),
            &spec,
            &params,
            &data,
            &batch,
            4,
            &inner,
            0..4,
        )
        .unwrap();
        assert_eq!(replayed.gradient, traced.output.gradient);
        let work = WorkSpec::LocalSteps {
            steps: 4,
            inner: inner.clone(),
        };
        let fragment = run_fragment(&Backend::cpu(), &work, &spec, &params, &data, &batch).unwrap();
        assert_eq!(fragment.values, traced.output.gradient);
    }
}

#[test]
fn inference_and_evaluation_score_the_right_rows() {
    for (spec, data) in cases() {
        let params = init_parameters(&spec, 7);
        let batch = indices(10, 5);
        let logits = predict(&Backend::cpu(), &spec, &params, &data, &batch).unwrap();
        assert_eq!(logits.len(), batch.len() * spec.classes());
        let labels = prediction_labels(&spec, &data, &batch);
        assert_eq!(labels.len(), batch.len());
        let work = WorkSpec::Inference { weights: None };
        let fragment = run_fragment(&Backend::cpu(), &work, &spec, &params, &data, &batch).unwrap();
        assert_eq!(fragment.values, logits);
        let evaluation = evaluate(&spec, &params, &data, &batch).unwrap();
        let rows = spec.window().map_or(1, |window| window - 1) * batch.len();
        assert_eq!(evaluation.samples as usize, rows, "{}", spec.family());
        // An untrained model is close to uniform over its classes.
        let uniform = (spec.classes() as f32).ln();
        assert!((evaluation.loss - uniform).abs() < 0.5, "{}", spec.family());
    }
}

#[test]
fn a_window_that_runs_off_the_text_is_refused() {
    let spec = lm();
    let data = Dataset::synthetic_text(100, 1).unwrap();
    let params = init_parameters(&spec, 1);
    let last_whole = (100 - 13) as u32;
    assert!(compute_gradient(&Backend::cpu(), &spec, &params, &data, &[last_whole]).is_ok());
    assert!(compute_gradient(&Backend::cpu(), &spec, &params, &data, &[last_whole + 1]).is_err());
    let images = Dataset::synthetic_images(10, 8, 1).unwrap();
    assert!(compute_gradient(&Backend::cpu(), &spec, &params, &images, &[0]).is_err());
    assert!(
        compute_gradient(
            &Backend::cpu(),
            &cnn(),
            &init_parameters(&cnn(), 1),
            &data,
            &[0]
        )
        .is_err()
    );
}

#[test]
fn exports_round_trip_for_every_family() {
    for (spec, _) in cases() {
        let params = init_parameters(&spec, 8);
        let (read, back) = from_safetensors(&to_safetensors(&spec, &params).unwrap()).unwrap();
        assert_eq!((read, back), (spec.clone(), params));
    }
}

#[test]
fn generation_is_seeded_and_bounded() {
    let spec = lm();
    let params = init_parameters(&spec, 9);
    let first = generate_text(&spec, &params, b"the node", 40, 0.8, 3).unwrap();
    assert_eq!(first.len(), 40);
    assert_eq!(
        first,
        generate_text(&spec, &params, b"the node", 40, 0.8, 3).unwrap()
    );
    assert_ne!(
        first,
        generate_text(&spec, &params, b"the node", 40, 0.8, 4).unwrap()
    );
    let greedy = generate_text(&spec, &params, b"", 10, 0.0, 1).unwrap();
    assert_eq!(
        greedy,
        generate_text(&spec, &params, b"", 10, 0.0, 2).unwrap()
    );
    assert!(generate_text(&spec, &params, b"x", 100_000, 0.8, 1).is_err());
    assert!(generate_text(&cnn(), &init_parameters(&cnn(), 1), b"x", 4, 0.8, 1).is_err());
}

#[test]
fn datasets_of_every_kind_round_trip_compactly() {
    let text = Dataset::synthetic_text(1000, 2).unwrap();
    let images = Dataset::synthetic_images(20, 8, 2).unwrap();
    assert!(text.to_bytes().len() < 1000 + 64, "text travels as bytes");
    assert!(
        images.to_bytes().len() < 20 * 65 + 80,
        "pixels travel as bytes"
    );
    for data in [text, images] {
        let bytes = data.to_bytes();
        assert_eq!(Dataset::from_bytes(&bytes).unwrap(), data);
        for cut in [0, 19, 20, 30, bytes.len() - 1] {
            assert!(Dataset::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}

#[test]
fn text_splits_by_position_and_predicts_each_held_out_byte_once() {
    let spec = lm();
    let data = Dataset::synthetic_text(1000, 4).unwrap();
    let split = data.split_for(&spec, 0.1, 0);
    let window = 13;
    assert_eq!(split.train.last().copied(), Some(900 - window as u32));
    assert!(split.test.iter().all(|&start| start >= 900));
    assert!(split.test.windows(2).all(|pair| pair[1] - pair[0] == 12));
    assert_eq!(split.train.len(), 900 - window + 1);
}

/// The packaged datasets, installed by `.ci/run` (`apt-get install dataset-fashion-mnist
/// jargon-text`): Fashion-MNIST's 70,000 images as bytes with its own test set held out, and
/// the Jargon File as text split by position.
#[test]
fn packaged_datasets_load_from_their_packages() {
    use corex_core::PackagedDataset;
    let fashion = Dataset::packaged(PackagedDataset::FashionMnist).unwrap();
    assert_eq!(fashion.len(), 70_000);
    assert_eq!(fashion.class_count(), 10);
    let shape = fashion.image_shape().unwrap();
    assert_eq!((shape.channels, shape.height, shape.width), (1, 28, 28));
    let spec = corex_core::JobSpec::fashion_cnn();
    let split = fashion.split_for(&spec.model, 0.5, 1);
    assert_eq!((split.train.len(), split.test.len()), (60_000, 10_000));
    assert!(
        fashion.to_bytes().len() < 70_000 * 785 + 100,
        "pixels travel as bytes"
    );

    let jargon = Dataset::packaged(PackagedDataset::JargonFile).unwrap();
    assert!(jargon.len() > 1_500_000, "{} bytes", jargon.len());
    let lm = corex_core::JobSpec::jargon_lm();
    let split = jargon.split_for(&lm.model, lm.dataset.test_fraction, 0);
    assert!(split.test.len() > 1_000);
    let bigram = corex_ml::bigram_loss(&lm.model, &jargon, &split).unwrap();
    assert!((2.0..3.5).contains(&bigram), "bigram baseline {bigram}");
}
