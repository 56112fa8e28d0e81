//! The devnet's closing summary table.

use corex_core::messages::{NodeContribution, NodeInfo};
use corex_core::{NodeId, WorkSpec};
use corex_scheduler::{DeviceTier, Standing, TierPolicy, verified_speed};

use crate::devnet::DevnetOutcome;

pub fn print(outcome: &DevnetOutcome) {
    let status = &outcome.report.status;
    let model = &outcome.report.spec.model;
    println!();
    println!(
        "job {} ({}): {:?}",
        status.job.short(),
        status.name,
        status.state
    );
    println!("  rounds          {}/{}", status.round, status.rounds);
    print_work(outcome);
    if !matches!(outcome.report.spec.work, WorkSpec::Transform { .. }) {
        println!(
            "  held out        {}",
            crate::quality::describe(model, status.last_test_loss, status.last_test_accuracy)
        );
    }
    if let Some(bigram) = crate::quality::bigram_baseline(&outcome.report.spec) {
        println!("  bigram baseline val loss {bigram:.3} nats, fitted on the same training text");
    }
    if outcome.report.spec.work.trains() {
        println!(
            "  final loss      {}",
            status
                .last_train_loss
                .map_or("-".into(), |loss| format!("{loss:.4}"))
        );
    }
    println!("  wall time       {:.1} s", outcome.wall_s);
    if outcome.report.spec.work.trains() {
        match crate::quality::generated_sample(&outcome.weights_path, "\n   :", 1) {
            Ok(Some(text)) => println!("  sample          {:?}", text),
            Ok(None) => {}
            Err(error) => println!("  sample          (none: {error})"),
        }
    }
    println!(
        "  re-issued       {} fragments and audits",
        status.re_issued_fragments
    );
    println!();
    // Shares are of the work (FLOPs), since fragments may differ in size.
    let total: u64 = status.nodes.values().map(|n| n.flops).sum::<u64>().max(1);
    println!(
        "  the devnet's nodes share one machine: the coordinator lifts its limits on nodes per device fingerprint and endpoint"
    );
    if let Some(federated) = &outcome.report.spec.federated {
        println!(
            "  federated: {} data holders trained on local data that never left their nodes; results judged by held-out validation (nobody else can replay them)",
            federated.holders.len()
        );
        if let Some(privacy) = &outcome.report.privacy {
            println!(
                "  differential privacy: (ε = {:.3}, δ = {:e}) for every holder's data; σ = {}, clip {}, {} noisy steps at sampling rate up to {:.3}",
                privacy.epsilon,
                privacy.delta,
                privacy.noise_multiplier,
                privacy.clip_norm,
                privacy.holders.iter().map(|h| h.steps).max().unwrap_or(0),
                privacy
                    .holders
                    .iter()
                    .map(|h| h.sampling_rate)
                    .fold(0.0, f64::max)
            );
        }
    } else if outcome.node_audits {
        println!(
            "  audits: replayed by another proven node when one is free, else by the coordinator (nodes on this machine may audit each other: --allow-shared-hardware)"
        );
    } else {
        println!("  audits: replayed by the coordinator (--coordinator-audits)");
    }
    println!(
        "  {:<10} {:<28} {:>7} {:>7} {:>5} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7}",
        "node",
        "role",
        "backend",
        "threads",
        "tier",
        "proven",
        "GFLOP/s",
        "accepted",
        "audited",
        "rejected",
        "share",
        "replays"
    );
    for (node, contribution) in &status.nodes {
        let info = outcome.nodes.get(node);
        let threads = info.map_or("-".into(), |info| info.device.compute_threads.to_string());
        let speed = measured_mflops(contribution);
        let tier = info.map_or("-".into(), |info| {
            format!("{:?}", tier_of(outcome, node, info, speed)).to_lowercase()
        });
        let backend = info.map_or("-".into(), |info| info.device.backend.to_string());
        let proven = info
            .and_then(|info| info.capability.as_ref())
            .map_or("-".into(), |capability| {
                format!("{:.1}", capability.demonstrated_mflops as f64 / 1e3)
            });
        println!(
            "  {:<10} {:<28} {:>7} {:>7} {:>5} {:>9} {:>9} {:>9} {:>8} {:>8} {:>6.1}% {:>7}",
            node.short(),
            outcome.roles.get(node).map_or("-", String::as_str),
            backend,
            threads,
            tier,
            proven,
            speed.map_or("-".into(), |mflops| format!("{:.1}", mflops as f64 / 1e3)),
            contribution.fragments,
            contribution.audited,
            contribution.rejected,
            100.0 * contribution.flops as f64 / total as f64,
            contribution.audits_done
        );
        if let Some(adapter) = info.and_then(|info| info.device.adapter.as_ref()) {
            println!("  {:<10} adapter: {}", "", adapter.describe());
        }
        if let Some(flag) = info.and_then(|info| info.behaviour_flag.as_ref()) {
            println!("  {:<10} flagged: {flag}", "");
        }
    }
    print_round_time(outcome);
    if let Some(ledger) = &outcome.ledger {
        println!();
        println!(
            "  ledger: {} blocks, {} transactions, epoch {} ({}), audited clean",
            ledger.height,
            ledger.transactions,
            ledger.epoch,
            crate::ledger::rules(ledger.epoch_ms, ledger.half_life_ms)
        );
        crate::ledger::print_supply(&ledger.supply);
        crate::ledger::print_nodes(&ledger.nodes);
    }
    println!();
    match (&outcome.outputs_path, &outcome.report.outputs) {
        (Some(path), Some(outputs)) => println!(
            "  outputs  {} ({} rows × {} f32 LE; {} holds each row's sample index, u32 LE)",
            path.display(),
            outputs.rows,
            outputs.width,
            crate::job::indices_path(path).display()
        ),
        _ => println!("  weights  {}", outcome.weights_path.display()),
    }
    println!("  report   {}", outcome.report_path.display());
    println!("  logs     {}", outcome.data_dir.join("logs").display());
}

/// What an inference or transform job computed, and how well its predictions did; nothing
/// for a training job.
fn print_work(outcome: &DevnetOutcome) {
    let report = &outcome.report;
    let rows = report.outputs.as_ref().map_or(0, |outputs| outputs.rows);
    match &report.spec.work {
        WorkSpec::Gradient | WorkSpec::LocalSteps { .. } => {}
        WorkSpec::Inference { weights } => {
            println!(
                "  work            inference: logits of {} classes for {rows} samples, at {}",
                report.spec.model.classes(),
                weights.map_or("the seeded initialisation (untrained)".into(), |weights| {
                    format!("weights {}", weights.short())
                })
            );
            if let Some(accuracy) = report
                .outputs
                .as_ref()
                .and_then(|outputs| outputs.prediction_accuracy)
            {
                println!(
                    "  predictions     {:.2}% of the {rows} predicted classes are the samples' labels (training samples included); test accuracy: the held-out split",
                    accuracy * 100.0
                );
            }
        }
        WorkSpec::Transform { transform } => println!(
            "  work            transform {transform:?} of {rows} samples, compared with audit replays bit for bit"
        ),
    }
}

/// A node's measured speed over the job: accepted work over the time from lease to result.
fn measured_mflops(contribution: &NodeContribution) -> Option<u64> {
    (contribution.busy_ms > 0).then(|| contribution.flops / 1_000 / contribution.busy_ms)
}

/// The node's device tier: its measured speed (or its challenge's), online time, and its
/// reputation and stake on the ledger.
fn tier_of(
    outcome: &DevnetOutcome,
    node: &NodeId,
    info: &NodeInfo,
    speed: Option<u64>,
) -> DeviceTier {
    let challenge = info
        .capability
        .as_ref()
        .map_or(0, |capability| capability.demonstrated_mflops);
    let standing = outcome
        .ledger
        .as_ref()
        .and_then(|ledger| ledger.nodes.iter().find(|n| n.node == *node));
    TierPolicy::default().tier(&Standing {
        verified_mflops: verified_speed(challenge, speed),
        online_ms: info.last_seen_ms.saturating_sub(info.registered_ms),
        reputation: standing.map_or(0, |n| n.score),
        stake_cxt: standing.map_or(0, |n| (n.stake / corex_ledger::BASE_UNITS_PER_CXT) as u64),
    })
}

/// Mean round time against the ideal: a round's work over the sum of the nodes' measured
/// speeds.
fn print_round_time(outcome: &DevnetOutcome) {
    let report = &outcome.report;
    let rounds = report.rounds.len().max(1) as f64;
    let total_flops: f64 = report.status.nodes.values().map(|n| n.flops as f64).sum();
    let speeds_mflops: f64 = report
        .status
        .nodes
        .values()
        .filter_map(measured_mflops)
        .map(|mflops| mflops as f64)
        .sum();
    let mut walls: Vec<u64> = report.rounds.iter().map(|r| r.wall_ms).collect();
    walls.sort_unstable();
    let mean_ms = walls.iter().sum::<u64>() as f64 / rounds;
    let median_ms = walls.get(walls.len() / 2).copied().unwrap_or_default() as f64;
    if speeds_mflops > 0.0 {
        let ideal_ms = total_flops / rounds / 1e6 / speeds_mflops * 1e3;
        let ratio = |ms: f64| ms / ideal_ms.max(f64::MIN_POSITIVE);
        println!(
            "  round time: mean {mean_ms:.0} ms ({:.2}× ideal), median {median_ms:.0} ms ({:.2}×); ideal {ideal_ms:.0} ms = a round's work over the sum of the nodes' measured speeds",
            ratio(mean_ms),
            ratio(median_ms)
        );
    }
}
