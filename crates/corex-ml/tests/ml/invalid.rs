//! Bad input must produce errors, never panics.

use corex_ml::Backend;
use corex_ml::{
    Dataset, MlError, ModelSpec, OptimizerSpec, Trainer, check_tensor, compute_gradient, evaluate,
    init_parameters, train_reference, weighted_mean,
};

use crate::common::{small_spec, synthetic};

#[test]
fn check_tensor_reports_length_and_first_bad_value() {
    let spec = small_spec(4);
    let params = init_parameters(&spec, 0);
    assert_eq!(check_tensor(&spec, &params), Ok(()));
    assert_eq!(
        check_tensor(&spec, &params[1..]),
        Err(MlError::ParameterCount {
            expected: params.len(),
            got: params.len() - 1
        })
    );
    let mut bad = params.clone();
    bad[10] = f32::INFINITY;
    bad[12] = f32::NAN;
    assert_eq!(
        check_tensor(&spec, &bad),
        Err(MlError::NonFinite { index: 10 })
    );
}

#[test]
fn compute_gradient_rejects_bad_input() {
    let data = synthetic(50, 4, 1);
    let spec = small_spec(4);
    let params = init_parameters(&spec, 0);
    let ok: Vec<u32> = (0..10).collect();
    assert!(matches!(
        compute_gradient(&Backend::cpu(), &spec, &params[..3], &data, &ok),
        Err(MlError::ParameterCount { .. })
    ));
    let mut nan = params.clone();
    nan[0] = f32::NAN;
    assert_eq!(
        compute_gradient(&Backend::cpu(), &spec, &nan, &data, &ok),
        Err(MlError::NonFinite { index: 0 })
    );
    assert_eq!(
        compute_gradient(&Backend::cpu(), &spec, &params, &data, &[1, 50, 2]),
        Err(MlError::SampleIndex { index: 50, len: 50 })
    );
    assert!(matches!(
        compute_gradient(&Backend::cpu(), &spec, &params, &data, &[]),
        Err(MlError::Empty(_))
    ));
    // Dataset/spec mismatch: wrong width, more classes than the model outputs.
    let wide = small_spec(5);
    assert!(matches!(
        compute_gradient(
            &Backend::cpu(),
            &wide,
            &init_parameters(&wide, 0),
            &data,
            &ok
        ),
        Err(MlError::Dataset(_))
    ));
    let binary = ModelSpec::mlp(4, vec![3], 2);
    assert!(matches!(
        compute_gradient(
            &Backend::cpu(),
            &binary,
            &init_parameters(&binary, 0),
            &data,
            &ok
        ),
        Err(MlError::Dataset(_))
    ));
    let degenerate = ModelSpec::mlp(4, vec![0], 3);
    assert!(matches!(
        compute_gradient(
            &Backend::cpu(),
            &degenerate,
            &init_parameters(&degenerate, 0),
            &data,
            &ok
        ),
        Err(MlError::Spec(_))
    ));
}

#[test]
fn csv_label_beyond_model_classes_is_an_error() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, b"x1,x2,y\n0.1,0.2,0\n0.3,0.4,5\n").unwrap();
    let data = Dataset::from_csv(file.path(), None).unwrap();
    assert_eq!(data.class_count(), 6);
    let spec = ModelSpec::mlp(2, vec![4], 3);
    let params = init_parameters(&spec, 0);
    assert!(matches!(
        compute_gradient(&Backend::cpu(), &spec, &params, &data, &[0, 1]),
        Err(MlError::Dataset(_))
    ));
    assert!(evaluate(&spec, &params, &data, &[0, 1]).is_err());
}

#[test]
fn other_entry_points_reject_bad_input() {
    let data = synthetic(50, 4, 1);
    let spec = small_spec(4);
    let params = init_parameters(&spec, 0);
    let sgd = OptimizerSpec::Sgd {
        learning_rate: 0.1,
        momentum: 0.5,
    };
    assert!(weighted_mean(&[]).is_err());
    assert!(weighted_mean(&[(&[1.0, 2.0], 1), (&[1.0], 1)]).is_err());
    assert!(weighted_mean(&[(&[1.0], 0)]).is_err());
    assert!(evaluate(&spec, &params, &data, &[]).is_err());
    assert!(evaluate(&spec, &params, &data, &[99]).is_err());
    assert!(Trainer::new(&spec, &params[1..], &sgd).is_err());
    let bad_rate = OptimizerSpec::Sgd {
        learning_rate: f64::NAN,
        momentum: 0.0,
    };
    assert!(matches!(
        Trainer::new(&spec, &params, &bad_rate),
        Err(MlError::Spec(_))
    ));
    assert!(matches!(
        train_reference(&spec, &params, &sgd, &data, &[vec![0, 1], vec![]]),
        Err(MlError::Empty(_))
    ));
    assert!(matches!(
        train_reference(&spec, &params, &sgd, &data, &[vec![0, 100]]),
        Err(MlError::SampleIndex {
            index: 100,
            len: 50
        })
    ));
}
