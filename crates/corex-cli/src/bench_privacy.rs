//! `corex bench privacy`: the price of differential privacy in a federated job. Runs the
//! federated digits devnet (class-skewed local data on four holders) without privacy, the
//! baseline of the same run, and at each noise multiplier, each setting several times since
//! the noise differs every run; prints test accuracy (median and range) against the ε the
//! accountant reports at the job's δ.

use std::path::PathBuf;
use std::time::Duration;

use corex_core::{JobSpec, PrivacySpec};
use indicatif::{ProgressBar, ProgressStyle};

use crate::devnet::{self, DevnetOptions, FederatedDevnet};

pub struct PrivacyBenchOptions {
    pub holders: u32,
    pub noise_multipliers: Vec<f64>,
    pub clip_norm: f64,
    pub delta: f64,
    pub repeat: u32,
    pub data_dir: PathBuf,
}

struct Row {
    noise: Option<f64>,
    epsilon: Option<f64>,
    accuracies: Vec<f32>,
}

pub fn run(options: &PrivacyBenchOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let settings: Vec<Option<f64>> = std::iter::once(None)
        .chain(options.noise_multipliers.iter().copied().map(Some))
        .collect();
    let bar = ProgressBar::new((settings.len() as u32 * options.repeat) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} federated devnets [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for noise in settings {
        let privacy = noise.map(|noise_multiplier| PrivacySpec {
            clip_norm: options.clip_norm,
            noise_multiplier,
            delta: options.delta,
        });
        let mut row = Row {
            noise,
            epsilon: None,
            accuracies: Vec::new(),
        };
        for _ in 0..options.repeat {
            bar.set_message(noise.map_or("without privacy".into(), |n| format!("σ = {n}")));
            let outcome = runtime.block_on(devnet::run(DevnetOptions {
                nodes: options.holders,
                data_dir: options.data_dir.clone(),
                spec: JobSpec::default_digits(),
                threads: 1,
                timeout: Duration::from_secs(1800),
                show_progress: false,
                adversaries: Vec::new(),
                node_audits: false,
                profiles: Vec::new(),
                federated: Some(FederatedDevnet { privacy }),
                explorer_poll: false,
                link: None,
                warm_up: false,
            }))?;
            anyhow::ensure!(outcome.succeeded(), "a federated devnet job failed");
            row.epsilon = outcome.report.privacy.as_ref().map(|p| p.epsilon);
            row.accuracies
                .push(outcome.report.status.last_test_accuracy.unwrap_or(0.0));
            bar.inc(1);
        }
        rows.push(row);
    }
    bar.finish_and_clear();
    let spec = JobSpec::digits_federated(Vec::new(), None);
    println!(
        "federated digits, {} class-skewed holders, {} rounds, clip {}, δ = {:e}; {} runs each",
        options.holders, spec.rounds, options.clip_norm, options.delta, options.repeat
    );
    println!(
        "  {:>6} {:>10} {:>16} {:>18}",
        "σ", "ε", "accuracy median", "range"
    );
    for row in &mut rows {
        row.accuracies.sort_by(f32::total_cmp);
        let median = row.accuracies[row.accuracies.len() / 2];
        let (low, high) = (row.accuracies[0], row.accuracies[row.accuracies.len() - 1]);
        println!(
            "  {:>6} {:>10} {:>15.2}% {:>8.2}–{:.2}%",
            row.noise.map_or("none".into(), |n| n.to_string()),
            row.epsilon.map_or("∞".into(), |e| format!("{e:.2}")),
            median * 100.0,
            low * 100.0,
            high * 100.0
        );
    }
    Ok(())
}
