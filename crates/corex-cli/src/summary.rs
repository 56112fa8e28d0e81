//! The devnet's closing summary table.

use crate::devnet::DevnetOutcome;

pub fn print(outcome: &DevnetOutcome) {
    let status = &outcome.report.status;
    let accuracy = status
        .last_test_accuracy
        .map_or("-".into(), |accuracy| format!("{:.2}%", accuracy * 100.0));
    println!();
    println!(
        "job {} ({}): {:?}",
        status.job.short(),
        status.name,
        status.state
    );
    println!("  rounds          {}/{}", status.round, status.rounds);
    println!("  test accuracy   {accuracy}");
    println!(
        "  final loss      {}",
        status
            .last_train_loss
            .map_or("-".into(), |loss| format!("{loss:.4}"))
    );
    println!("  wall time       {:.1} s", outcome.wall_s);
    println!("  re-issued       {} fragments", status.re_issued_fragments);
    println!();
    let total: u64 = status
        .nodes
        .values()
        .map(|n| n.fragments)
        .sum::<u64>()
        .max(1);
    println!(
        "  the devnet's nodes share one machine: the coordinator lifts its limits on nodes per device fingerprint and endpoint"
    );
    if outcome.node_audits {
        println!(
            "  audits: replayed by another proven node when one is free, else by the coordinator (nodes on this machine may audit each other: --allow-shared-hardware)"
        );
    } else {
        println!("  audits: replayed by the coordinator (--coordinator-audits)");
    }
    println!(
        "  {:<10} {:<20} {:>8} {:>9} {:>8} {:>8} {:>7} {:>7}",
        "node", "role", "threads", "accepted", "audited", "rejected", "share", "replays"
    );
    for (node, contribution) in &status.nodes {
        let threads = outcome
            .nodes
            .get(node)
            .map_or("-".into(), |info| info.device.compute_threads.to_string());
        println!(
            "  {:<10} {:<20} {:>8} {:>9} {:>8} {:>8} {:>6.1}% {:>7}",
            node.short(),
            outcome.roles.get(node).map_or("-", String::as_str),
            threads,
            contribution.fragments,
            contribution.audited,
            contribution.rejected,
            100.0 * contribution.fragments as f64 / total as f64,
            contribution.audits_done
        );
    }
    if let Some(ledger) = &outcome.ledger {
        println!();
        println!(
            "  ledger: {} blocks, {} transactions, epoch {}, audited clean",
            ledger.height, ledger.transactions, ledger.epoch
        );
        crate::ledger::print_supply(&ledger.supply);
        crate::ledger::print_nodes(&ledger.nodes);
    }
    println!();
    println!("  weights  {}", outcome.weights_path.display());
    println!("  report   {}", outcome.report_path.display());
    println!("  logs     {}", outcome.data_dir.join("logs").display());
}
