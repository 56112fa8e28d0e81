//! Layouts against the size formulas, hostile sizes, and specs read from TOML.

use super::*;

fn lm() -> ModelSpec {
    ModelSpec::Transformer(TransformerSpec {
        layers: 2,
        width: 64,
        heads: 4,
        context: 32,
        ff: None,
    })
}

fn cnn() -> ModelSpec {
    ModelSpec::Cnn(CnnSpec {
        channels: 1,
        height: 28,
        width: 28,
        conv: vec![16, 32],
        kernel: 3,
        hidden: vec![64],
        classes: 10,
    })
}

#[test]
fn layouts_count_what_the_formulas_count() {
    for spec in [ModelSpec::mlp(64, vec![32, 16], 10), cnn(), lm()] {
        spec.validate().unwrap();
        let total: usize = spec.layout().iter().map(ParamTensor::len).sum();
        assert_eq!(total, spec.parameter_count(), "{}", spec.family());
    }
}

#[test]
fn mlp_layout_is_the_historic_one() {
    let spec = ModelSpec::mlp(3, vec![4], 2);
    let layout = spec.layout();
    let names: Vec<&str> = layout.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.weight",
            "layers.1.bias"
        ]
    );
    assert_eq!(layout[0].shape, [3, 4]);
    assert_eq!(spec.parameter_count(), 3 * 4 + 4 + 4 * 2 + 2);
}

#[test]
fn cnn_shapes_follow_the_pools() {
    let ModelSpec::Cnn(spec) = cnn() else {
        unreachable!()
    };
    assert_eq!(spec.flattened(), (32, 7, 7));
    let too_deep = ModelSpec::Cnn(CnnSpec {
        conv: vec![4; 6],
        ..spec
    });
    assert!(too_deep.validate().is_err());
}

#[test]
fn hostile_sizes_saturate_and_are_refused() {
    let huge = ModelSpec::Transformer(TransformerSpec {
        layers: usize::MAX,
        width: usize::MAX,
        heads: 1,
        context: usize::MAX,
        ff: Some(usize::MAX),
    });
    assert_eq!(huge.parameter_count_u64(), u64::MAX);
    assert!(huge.validate().is_err());
    let odd_heads = ModelSpec::Transformer(TransformerSpec {
        heads: 3,
        ..match lm() {
            ModelSpec::Transformer(spec) => spec,
            _ => unreachable!(),
        }
    });
    assert!(odd_heads.validate().is_err());
}

#[test]
fn specs_read_from_toml_by_family() {
    let spec: ModelSpec = toml::from_str(
        "family = \"transformer\"\nlayers = 2\nwidth = 64\nheads = 4\ncontext = 32\n",
    )
    .unwrap();
    assert_eq!(spec, lm());
    let mlp: ModelSpec =
        toml::from_str("family = \"mlp\"\ninput = 64\nhidden = [32]\nclasses = 10\n").unwrap();
    assert_eq!(mlp, ModelSpec::mlp(64, vec![32], 10));
}
