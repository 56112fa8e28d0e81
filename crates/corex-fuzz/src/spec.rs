//! Job specs as a coordinator receives them: JSON (`POST /v1/jobs`) and TOML (`corex job
//! submit`). Oracle: computing a spec's resource use never panics, and a spec that passes both
//! the default resource budget and its own validation is within every limit of that budget,
//! with figures that agree with the model's own arithmetic (nothing wrapped around).

use corex_core::{JobSpec, ResourceLimits};

pub fn job_spec(data: &[u8]) {
    let limits = ResourceLimits::default();
    let from_json = serde_json::from_slice::<JobSpec>(data).ok();
    let from_toml = std::str::from_utf8(data)
        .ok()
        .and_then(|text| JobSpec::from_toml(text).ok());
    for spec in from_json.into_iter().chain(from_toml) {
        let used = spec.resource_use();
        if limits.check(&spec).is_err() || spec.validate().is_err() {
            continue;
        }
        assert!(used.layers <= limits.max_layers);
        assert!(used.parameters <= limits.max_parameters);
        assert!(used.fragment_memory_bytes <= limits.max_fragment_memory_bytes);
        assert!(used.job_flops <= limits.max_job_flops);
        assert!(used.rounds <= limits.max_rounds);
        assert!(used.holders <= limits.max_holders);
        assert!(used.holder_samples <= limits.max_holder_samples);
        assert!(used.result_bytes <= limits.max_result_bytes);
        assert_eq!(used.parameters, spec.model.parameter_count() as u64);
        assert_eq!(used.layers, spec.model.layer_count());
        assert_eq!(
            spec.model.layout().iter().map(|t| t.len()).sum::<usize>(),
            spec.model.parameter_count()
        );
    }
}

/// The built-in jobs in both encodings.
pub fn seeds() -> Vec<Vec<u8>> {
    let holders = (1..=3u8)
        .map(|byte| corex_core::DataHolder {
            node: corex_core::Keypair::from_secret([byte; 32]).id(),
            samples: 400,
        })
        .collect();
    let specs = [
        JobSpec::default_digits(),
        JobSpec::digits_gradient(),
        JobSpec::digits_federated(holders, None),
        JobSpec::jargon_lm(),
        JobSpec::fashion_cnn(),
    ];
    specs
        .iter()
        .flat_map(|spec| {
            [
                serde_json::to_vec(spec).unwrap_or_default(),
                spec.to_toml().into_bytes(),
            ]
        })
        .collect()
}
