//! `corex bench traffic`: what compressed updates save on the wire, in one run. The same job
//! runs as a devnet twice, with whole f32 updates and with its compression policy (each node's
//! link shaped with `--link`), and the coordinator's byte counters of each
//! (`corex_transfer_bytes_total`) are set side by side, per fragment and per round, beside the
//! held-out loss both reached at the same number of rounds and the wall times, with the same
//! training in one process. The whole run may be another job file (`--whole-job`), the same
//! training at its own best settings (compressed DiLoCo wants a larger outer step than whole
//! updates do), checked to differ from the job only in its optimizer.

use std::path::PathBuf;
use std::time::Duration;

use corex_core::JobSpec;
use corex_core::compression::CompressionSpec;
use corex_core::messages::{ResultVerdict, RoundRecord};

use crate::devnet::{self, DevnetOptions, DevnetOutcome};
use crate::link::LinkRate;

/// One devnet's figures.
struct Measured {
    fragments: u64,
    up: u64,
    down: u64,
    loss: Option<f32>,
    accuracy: Option<f32>,
    wall_s: f64,
    audited: u64,
    /// Rounds whose accepted results all came from different nodes, of all rounds: where a
    /// node sent two (a straggler's copy won, a re-issued lease), its error feedback moved
    /// twice in the round while another node's waited.
    even_rounds: (usize, usize),
}

impl Measured {
    fn of(outcome: &DevnetOutcome) -> anyhow::Result<Self> {
        let transfer = outcome
            .transfer
            .ok_or_else(|| anyhow::anyhow!("the coordinator's byte counters were not read"))?;
        let status = &outcome.report.status;
        let (fragments, audited) = status.nodes.values().fold((0, 0), |(f, a), node| {
            (f + node.fragments, a + node.audited)
        });
        Ok(Self {
            fragments,
            up: transfer.received,
            down: transfer.sent,
            loss: status.last_test_loss,
            accuracy: status.last_test_accuracy,
            wall_s: outcome.wall_s,
            audited,
            even_rounds: even_rounds(&outcome.report.rounds),
        })
    }
}

/// How many of `rounds` had all their accepted results from different nodes, and how many
/// rounds.
fn even_rounds(rounds: &[RoundRecord]) -> (usize, usize) {
    let even = rounds
        .iter()
        .filter(|round| {
            let mut nodes = std::collections::BTreeSet::new();
            round
                .results
                .iter()
                .filter(|result| matches!(result.verdict, ResultVerdict::Accepted { .. }))
                .all(|result| nodes.insert(result.node))
        })
        .count();
    (even, rounds.len())
}

/// The job run with whole updates: `whole_job` when given (the same job but for its
/// optimizer and aggregation, and uncompressed), else `spec` without its compression policies.
pub(crate) fn whole_baseline(
    spec: &JobSpec,
    whole_job: Option<JobSpec>,
) -> anyhow::Result<JobSpec> {
    let stripped = JobSpec {
        compression: CompressionSpec::None,
        download_compression: CompressionSpec::None,
        ..spec.clone()
    };
    let Some(whole) = whole_job else {
        return Ok(stripped);
    };
    whole.validate()?;
    let same_but_step = JobSpec {
        optimizer: whole.optimizer.clone(),
        aggregation: whole.aggregation,
        name: whole.name.clone(),
        ..stripped
    };
    anyhow::ensure!(
        whole == same_but_step,
        "--whole-job must be the job without compression, differing only in its name, optimizer and aggregation"
    );
    Ok(whole)
}

pub fn run(
    spec: JobSpec,
    whole_job: Option<JobSpec>,
    nodes: u32,
    data_dir: PathBuf,
    link: Option<LinkRate>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !spec.compression.is_none() || !spec.download_compression.is_none(),
        "bench traffic compares a job's compression policies with whole updates; give a job with `compression` or `download_compression`"
    );
    let whole = whole_baseline(&spec, whole_job)?;
    let parameters = spec.model.parameter_count();
    println!(
        "bench traffic: job '{}', {} rounds × {} fragments, {nodes} nodes, {parameters} parameters, compression up {:?}, down {:?}, links {}",
        spec.name,
        spec.rounds,
        spec.fragments_per_round(),
        spec.compression,
        spec.download_compression,
        link.map_or("unshaped (loopback)".to_owned(), |rate| format!(
            "{rate} each way per node"
        ))
    );
    println!(
        "  outer optimizer: whole {:?}, compressed {:?}",
        whole.optimizer, spec.optimizer
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut measured = Vec::new();
    for (label, job) in [("whole f32", &whole), ("compressed", &spec)] {
        let outcome = runtime.block_on(devnet::run(DevnetOptions {
            nodes,
            data_dir: data_dir.clone(),
            spec: job.clone(),
            threads: 1,
            timeout: Duration::from_secs(3600),
            show_progress: false,
            adversaries: Vec::new(),
            node_audits: false,
            profiles: Vec::new(),
            federated: None,
            explorer_poll: false,
            link,
            warm_up: false,
        }))?;
        anyhow::ensure!(outcome.succeeded(), "the {label} devnet did not finish");
        let figures = Measured::of(&outcome)?;
        println!(
            "  {label:<10} finished in {:.1} s: {} fragments, {} audited",
            figures.wall_s, figures.fragments, figures.audited
        );
        measured.push(figures);
    }
    let [whole_run, compressed_run] = &measured[..] else {
        anyhow::bail!("two runs expected");
    };
    // The same training in one process (whole updates: it moves no bytes), for the wall time.
    let (single, _) = crate::bench_single::single_process(&whole, 1)?;
    let rounds = u64::from(spec.rounds);
    let per = |bytes: u64, count: u64| bytes as f64 / count.max(1) as f64;
    let row = |what: &str, whole: f64, compressed: f64| {
        println!(
            "  {what:<52} {:>12} {:>12} {:>9.1}×",
            human(whole),
            human(compressed),
            whole / compressed.max(1.0)
        );
    };
    println!(
        "  {:<52} {:>12} {:>12} {:>10}",
        "", "whole f32", "compressed", "less"
    );
    row(
        "result tensor per fragment (exact)",
        CompressionSpec::None.encoded_len(parameters) as f64,
        spec.compression.encoded_len(parameters) as f64,
    );
    row(
        "model update per round (exact)",
        CompressionSpec::None.encoded_len(parameters) as f64,
        spec.download_compression.encoded_len(parameters) as f64,
    );
    row(
        "up per fragment (results, reveals, audit replays)",
        per(whole_run.up, whole_run.fragments),
        per(compressed_run.up, compressed_run.fragments),
    );
    row(
        "down per fragment (models or updates, data, checkpoints)",
        per(whole_run.down, whole_run.fragments),
        per(compressed_run.down, compressed_run.fragments),
    );
    row(
        "up per round",
        per(whole_run.up, rounds),
        per(compressed_run.up, rounds),
    );
    row(
        "down per round",
        per(whole_run.down, rounds),
        per(compressed_run.down, rounds),
    );
    if let (Some(whole_loss), Some(compressed_loss)) = (whole_run.loss, compressed_run.loss) {
        println!(
            "  held-out loss after {} rounds: whole {whole_loss:.4}, compressed {compressed_loss:.4} ({:+.4} nats)",
            spec.rounds,
            compressed_loss - whole_loss
        );
    }
    println!(
        "  rounds whose results all came from different nodes: whole {} of {}, compressed {} of {}",
        whole_run.even_rounds.0,
        whole_run.even_rounds.1,
        compressed_run.even_rounds.0,
        compressed_run.even_rounds.1
    );
    if let (Some(whole_accuracy), Some(compressed_accuracy)) =
        (whole_run.accuracy, compressed_run.accuracy)
    {
        println!(
            "  held-out accuracy: whole {:.2} %, compressed {:.2} %",
            whole_accuracy * 100.0,
            compressed_accuracy * 100.0
        );
    }
    println!(
        "  wall time: whole {:.1} s, compressed {:.1} s ({:.2}× faster), single process {:.1} s{}",
        whole_run.wall_s,
        compressed_run.wall_s,
        whole_run.wall_s / compressed_run.wall_s,
        single.wall_s,
        if link.is_none() {
            " on loopback, where bytes are nearly free; --link shapes each node's link"
        } else {
            ""
        }
    );
    Ok(())
}

/// Bytes in B, KB, MB (decimal).
fn human(bytes: f64) -> String {
    match bytes {
        b if b >= 1e6 => format!("{:.2} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} KB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(text: &str) -> JobSpec {
        JobSpec::from_toml(text).expect("a valid job file")
    }

    #[test]
    fn the_whole_baseline_is_the_job_uncompressed_at_its_own_optimizer() {
        let compressed = job(include_str!("../../../jobs/jargon-lm-diloco.toml"));
        let whole = job(include_str!("../../../jobs/jargon-lm-diloco-whole.toml"));
        whole.validate().expect("valid");
        let baseline = whole_baseline(&compressed, Some(whole.clone())).unwrap();
        assert!(baseline.compression.is_none() && baseline.download_compression.is_none());
        assert_eq!(baseline.optimizer, whole.optimizer);
        // Without a whole job: the job itself, stripped of its policies.
        let stripped = whole_baseline(&compressed, None).unwrap();
        assert_eq!(stripped.optimizer, compressed.optimizer);
        assert!(stripped.compression.is_none());
        // Anything else that differs is refused: it would not be the same training.
        let other_rounds = JobSpec {
            rounds: whole.rounds + 1,
            ..whole.clone()
        };
        assert!(whole_baseline(&compressed, Some(other_rounds)).is_err());
        let still_compressed = JobSpec {
            compression: compressed.compression,
            ..whole
        };
        assert!(whole_baseline(&compressed, Some(still_compressed)).is_err());
    }
}
