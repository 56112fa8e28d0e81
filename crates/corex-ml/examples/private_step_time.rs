//! Times one DP-SGD step against one ordinary local step on the built-in digits set.
//!
//! ```text
//! cargo run --release -p corex-ml --example private_step_time -- \
//!     [hidden=512,256] [batch=32] [steps=50] [repeats=5]
//! ```
//!
//! Both run `steps` SGD steps from the same parameters: ordinary local steps over `steps`
//! consecutive batches of `batch` samples ([`compute_local_steps`]), and private local steps
//! with expected batch `batch` over the whole dataset ([`compute_private_local_steps`]:
//! Poisson sampling, per-example clipping, noise). For scale, also times the per-example
//! gradients the naive way: `batch` autodiff passes of one sample ([`compute_gradient`]), the
//! cost a per-example loop would add to every step. Prints medians per step.

use std::collections::HashMap;
use std::time::Instant;

use corex_ml::{
    Dataset, ModelSpec, OptimizerSpec, PrivacySpec, PrivateStepsSpec, compute_gradient,
    compute_local_steps, compute_private_local_steps, init_parameters,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: HashMap<String, String> = std::env::args()
        .skip(1)
        .filter_map(|arg| {
            arg.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let hidden: Vec<usize> = args
        .get("hidden")
        .map_or("512,256", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let number = |key: &str, default: u32| -> Result<u32, Box<dyn std::error::Error>> {
        Ok(args.get(key).map_or(Ok(default), |v| v.parse())?)
    };
    let batch = number("batch", 32)?;
    let steps = number("steps", 50)?;
    let repeats = number("repeats", 5)?;

    let data = Dataset::digits()?;
    let spec = ModelSpec {
        input: data.feature_count(),
        hidden,
        classes: 10,
    };
    let params = init_parameters(&spec, 0);
    let inner = OptimizerSpec::Sgd {
        learning_rate: 0.1,
        momentum: 0.0,
    };
    let pool: Vec<u32> = (0..data.len() as u32).collect();
    let consecutive: Vec<u32> = pool
        .iter()
        .cycle()
        .take((batch * steps) as usize)
        .copied()
        .collect();
    let plan = PrivateStepsSpec {
        steps,
        local_batch: batch,
        inner: inner.clone(),
        privacy: PrivacySpec {
            clip_norm: 1.0,
            noise_multiplier: 1.1,
            delta: 1e-5,
        },
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);

    let mut ordinary = Vec::new();
    let mut private = Vec::new();
    let mut naive = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        compute_local_steps(&spec, &params, &data, &consecutive, steps, &inner)?;
        ordinary.push(start.elapsed().as_secs_f64() / f64::from(steps));
        let start = Instant::now();
        compute_private_local_steps(&spec, &params, &data, &pool, &plan, &mut rng)?;
        private.push(start.elapsed().as_secs_f64() / f64::from(steps));
        let start = Instant::now();
        for index in &consecutive[..batch as usize] {
            compute_gradient(&spec, &params, &data, std::slice::from_ref(index))?;
        }
        naive.push(start.elapsed().as_secs_f64());
    }
    let ordinary = median(&mut ordinary);
    let private = median(&mut private);
    let naive = median(&mut naive);
    println!(
        "model {:?} ({} parameters), batch {batch}, {steps} steps, median of {repeats}",
        spec.layer_shapes(),
        spec.parameter_count()
    );
    println!("ordinary step {:8.3} ms", ordinary * 1e3);
    println!("DP-SGD step   {:8.3} ms", private * 1e3);
    println!("ratio         {:8.2}", private / ordinary);
    println!(
        "{batch} one-sample autodiff gradients {:8.3} ms",
        naive * 1e3
    );
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
