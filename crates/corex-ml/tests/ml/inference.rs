//! Inference fragments: the logits of a forward pass, independent of how samples are batched,
//! scored like an evaluation, and untrusted results of the wrong length or with NaN refused.

use corex_ml::Backend;
use corex_ml::{MlError, WorkSpec, check_result, evaluate, init_parameters, predict, run_fragment};

use crate::common::{small_spec, synthetic};

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|value| value.to_bits()).collect()
}

#[test]
fn an_inference_fragment_is_the_forward_pass_and_its_cross_entropy() {
    let data = synthetic(300, 6, 1);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 7);
    let indices: Vec<u32> = (40..140).rev().collect();
    let work = WorkSpec::Inference { weights: None };
    let output = run_fragment(&Backend::cpu(), &work, &spec, &params, &data, &indices).unwrap();
    assert_eq!(output.values.len(), indices.len() * spec.classes());
    assert_eq!(output.samples, 100);
    let logits = predict(&Backend::cpu(), &spec, &params, &data, &indices).unwrap();
    assert_eq!(bits(&output.values), bits(&logits));
    let evaluation = evaluate(&spec, &params, &data, &indices).unwrap();
    assert_eq!(output.loss.to_bits(), evaluation.loss.to_bits());
    assert_eq!(
        check_result(&work, &spec, indices.len(), &output.values),
        Ok(())
    );
}

#[test]
fn logits_do_not_depend_on_how_samples_are_batched() {
    let data = synthetic(2500, 6, 2);
    let spec = small_spec(6);
    let params = init_parameters(&spec, 3);
    let all: Vec<u32> = (0..2500).collect();
    let whole = predict(&Backend::cpu(), &spec, &params, &data, &all).unwrap();
    for size in [1, 7, 128, 1000] {
        let pieces: Vec<f32> = all
            .chunks(size)
            .flat_map(|chunk| predict(&Backend::cpu(), &spec, &params, &data, chunk).unwrap())
            .collect();
        assert_eq!(bits(&pieces), bits(&whole), "fragments of {size}");
    }
}

#[test]
fn output_results_of_the_wrong_length_or_with_nan_are_refused() {
    let spec = small_spec(6);
    let work = WorkSpec::Inference { weights: None };
    let mut logits = vec![0.5f32; 4 * spec.classes()];
    assert_eq!(
        check_result(&work, &spec, 4, &logits[1..]),
        Err(MlError::OutputLength {
            expected: 4 * spec.classes(),
            got: 4 * spec.classes() - 1,
            samples: 4
        })
    );
    logits[5] = f32::NAN;
    assert_eq!(
        check_result(&work, &spec, 4, &logits),
        Err(MlError::NonFinite { index: 5 })
    );
}
