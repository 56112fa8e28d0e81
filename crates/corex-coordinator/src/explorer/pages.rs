//! The explorer's HTML, rendered on the server with maud from the plain values of `views`
//! (pure: values in, markup out). Pages of running work reload themselves every few seconds.

use corex_core::messages::NodeContribution;
use corex_core::{Hash, NodeId};
use corex_ledger::{AccountView, Block, TOTAL_SUPPLY, TxBody, Verdict, format_cxt};
use corex_ledger_store::{IndexedSettlement, NodeEvent, NodeEventKind};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::plots::{BLUE_LINE, GREEN_LINE, ORANGE_LINE, Series, line_chart};
use super::views::{JobPage, JobRow, LedgerFigures, Network, NodeActivity, NodeRow, cxt};

const STYLE: &str = "body{font-family:sans-serif;margin:0;color:#222;background:#fafafa}\
header{background:#1f2d3d;color:#fff;padding:10px 24px}header a{color:#fff;margin-right:18px}\
main{padding:12px 24px;max-width:1100px}table{border-collapse:collapse;margin:8px 0 16px}\
td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left;font-size:14px}\
th{background:#eef}.bad{color:#b00;font-weight:bold}.good{color:#070}.muted{color:#777}\
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #ddd;\
padding:8px 14px;border-radius:6px}.card b{display:block;font-size:22px}code{font-size:13px}";

/// Seconds between reloads of a page that shows running work.
const REFRESH_SECONDS: u32 = 3;

pub fn layout(title: &str, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if refresh { meta http-equiv="refresh" content=(REFRESH_SECONDS); }
                title { (title) " · Corex explorer" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/explorer" { "Overview" }
                    a href="/explorer/ledger" { "Ledger" }
                    a href="/metrics" { "Metrics" }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn node_link(id: &NodeId) -> Markup {
    html! { a href={ "/explorer/nodes/" (id.to_hex()) } { code { (id.short()) } } }
}

fn job_link(id: &Hash, name: &str) -> Markup {
    html! { a href={ "/explorer/jobs/" (id.to_hex()) } { (name) } }
}

fn speed(mflops: Option<u64>) -> String {
    mflops.map_or("—".into(), |mflops| {
        format!("{:.1} GFLOP/s", mflops as f64 / 1e3)
    })
}

fn flops(flops: u64) -> String {
    match flops {
        0..1_000_000_000 => format!("{:.1} MFLOP", flops as f64 / 1e6),
        1_000_000_000..1_000_000_000_000 => format!("{:.1} GFLOP", flops as f64 / 1e9),
        _ => format!("{:.1} TFLOP", flops as f64 / 1e12),
    }
}

fn chart(svg: Option<String>) -> Markup {
    match svg {
        Some(svg) => html! { div.chart { (PreEscaped(svg)) } },
        None => html! { p.muted { "No points yet." } },
    }
}

fn metric(row: &JobRow) -> String {
    match (row.last_test_accuracy, row.last_test_loss) {
        (Some(accuracy), _) => format!("{:.2} % accuracy", accuracy * 100.0),
        (None, Some(loss)) => format!("{loss:.3} nats"),
        _ => "—".into(),
    }
}

fn emission_chart(figures: &LedgerFigures) -> Option<String> {
    const YEAR_MS: f64 = 365.25 * 24.0 * 3_600_000.0;
    let horizon_ms = (figures.half_life_ms as f64 * 4.0).max(figures.elapsed_ms as f64);
    let schedule = (0..=200)
        .map(|step| {
            let ms = horizon_ms * f64::from(step) / 200.0;
            (ms / YEAR_MS, figures.scheduled_pool_cxt(ms as u64) / 1e6)
        })
        .collect();
    let now = figures.elapsed_ms as f64 / YEAR_MS;
    let pool = cxt(figures.supply.pool) / 1e6;
    line_chart(
        "Mining pool: the fixed release rule (demand 1) and where it stands",
        "years of ledger time",
        "million CXT in the pool",
        &[
            Series {
                name: "scheduled".into(),
                points: schedule,
                color: BLUE_LINE,
            },
            Series {
                name: "now".into(),
                points: vec![(now, 0.0), (now, pool)],
                color: ORANGE_LINE,
            },
        ],
    )
}

fn supply_table(figures: &LedgerFigures) -> Markup {
    let total = figures.supply.total();
    html! {
        table {
            tr { th { "part" } th { "CXT" } }
            @for (part, _) in figures.supply_parts() {
                tr { td { (part) } td { (format_cxt(supply_part(figures, part))) } }
            }
            tr {
                th { "total" }
                th class=(if total == TOTAL_SUPPLY { "good" } else { "bad" }) {
                    (format_cxt(total))
                    @if total == TOTAL_SUPPLY { " ✓ sums to 100,000,000 CXT" } @else { " ✗ not the supply" }
                }
            }
        }
    }
}

fn supply_part(figures: &LedgerFigures, part: &str) -> u128 {
    let supply = &figures.supply;
    match part {
        "pool" => supply.pool,
        "fund" => supply.fund,
        "balances" => supply.balances,
        "stakes" => supply.stakes,
        "unbonding" => supply.unbonding,
        _ => supply.locked_rewards,
    }
}

fn node_table(nodes: &[NodeRow], figures: &LedgerFigures) -> Markup {
    html! {
        table {
            tr { th { "node" } th { "tier" } th { "backend" } th { "verified speed" } th { "fragments show" } th { "online" } }
            @for row in nodes {
                tr {
                    td { (node_link(&row.id)) }
                    td { (figures.tiers.get(&row.id).map_or("unregistered", String::as_str)) }
                    td { (row.backend) @if let Some(adapter) = &row.adapter { " · " (adapter) } }
                    td class=(if row.believed { "" } else { "bad" }) { (speed(row.verified_mflops)) @if !row.believed && row.verified_mflops.is_some() { " (claim refuted)" } }
                    td { (speed(row.observed_mflops)) @if row.behaviour_flag.is_some() { span.bad { " flagged" } } }
                    td { @if row.online { span.good { "online" } } @else { span.muted { (row.seen_ms_ago / 1000) " s ago" } } }
                }
            }
        }
    }
}

pub fn overview(network: &Network, figures: &LedgerFigures) -> Markup {
    let online: Vec<&NodeRow> = network.nodes.iter().filter(|row| row.online).collect();
    let verified: u64 = online
        .iter()
        .filter(|row| row.believed)
        .filter_map(|row| row.verified_mflops)
        .sum();
    let mut by_tier: std::collections::BTreeMap<(String, &str), usize> = Default::default();
    for row in &online {
        let tier = figures
            .tiers
            .get(&row.id)
            .cloned()
            .unwrap_or_else(|| "unregistered".into());
        *by_tier.entry((tier, row.backend)).or_default() += 1;
    }
    let body = html! {
        div.cards {
            div.card { b { (online.len()) } "nodes online" }
            div.card { b { (speed(Some(verified))) } "verified compute online" }
            div.card { b { (network.running_jobs) } "jobs running" }
            div.card { b { (format!("{:.2}", cxt(figures.supply.pool) / 1e6)) " M" } "CXT left in the pool" }
            div.card { b { (figures.height) } "ledger height" }
        }
        h2 { "Nodes online by tier and backend" }
        table {
            tr { th { "tier" } th { "backend" } th { "nodes" } }
            @for ((tier, backend), count) in &by_tier { tr { td { (tier) } td { (backend) } td { (count) } } }
        }
        h2 { "Jobs" }
        table {
            tr { th { "job" } th { "family" } th { "state" } th { "round" } th { "held out" } }
            @for row in &network.public_jobs {
                tr { td { (job_link(&row.id, &row.name)) } td { (row.family) } td { (row.state) } td { (row.round) " / " (row.rounds) } td { (metric(row)) } }
            }
        }
        @if network.private_jobs > 0 { p.muted { (network.private_jobs) " private job(s) not shown." } }
        h2 { "Nodes" }
        (node_table(&network.nodes, figures))
        h2 { "Emission" }
        (chart(emission_chart(figures)))
        (supply_table(figures))
    };
    layout("Corex network", true, body)
}

fn verdict_cell(verdict: &Verdict) -> Markup {
    match verdict {
        Verdict::Accept => html! { span.good { "accepted" } },
        Verdict::SoftReject { reason } => {
            html! { span.bad { "soft reject: " (format!("{reason:?}").to_lowercase()) } }
        }
        Verdict::HardReject { evidence } => {
            html! { span.bad { "hard reject, slashed · evidence " code { (evidence.to_hex()) } } }
        }
    }
}

fn event_row(event: &NodeEvent, activity: &NodeActivity) -> Markup {
    let what = match &event.kind {
        NodeEventKind::Registered => html! { "registered its device" },
        NodeEventKind::Work {
            compute_units,
            pot_units,
            verification_units,
        } => {
            let units = |units: &u128| flops(u64::try_from(*units).unwrap_or(u64::MAX));
            html! {
                "work recorded: " (units(compute_units)) " verified, " (units(pot_units))
                " useful to the model, " (units(verification_units)) " of audits for others"
            }
        }
        NodeEventKind::Payout {
            epoch,
            amount,
            unlock_epoch,
        } => html! {
            "epoch " (epoch) " payout " b { (format_cxt(*amount)) " CXT" } ", locked until epoch " (unlock_epoch)
        },
        NodeEventKind::Verdict { fragment, verdict } => html! {
            (verdict_cell(verdict)) " on fragment " code { (fragment.short()) }
            @if let Some(stated) = activity.reasons.get(fragment) {
                br; span.muted { "job " (job_link(&stated.job, &stated.job.short())) ", round " (stated.round) ": " (stated.reason) }
            }
        },
    };
    html! { tr { td { (event.height) } td { (what) } } }
}

fn rewards_chart(events: &[NodeEvent], epoch: u64) -> Option<String> {
    let mut payouts: Vec<(u64, u128, u64)> = events
        .iter()
        .filter_map(|event| match event.kind {
            NodeEventKind::Payout {
                epoch,
                amount,
                unlock_epoch,
            } => Some((epoch, amount, unlock_epoch)),
            _ => None,
        })
        .collect();
    payouts.sort_unstable();
    let (mut earned, mut vested) = (0u128, 0u128);
    // Both lines start from nothing the epoch before the first payout.
    let start = payouts.first().map(|(at, ..)| (*at as f64 - 1.0, 0.0));
    let mut earned_line: Vec<(f64, f64)> = start.into_iter().collect();
    let mut vested_line = earned_line.clone();
    for (at, amount, unlock) in &payouts {
        earned += amount;
        earned_line.push((*at as f64, cxt(earned)));
        if *unlock <= epoch {
            vested += amount;
        }
        vested_line.push((*at as f64, cxt(vested)));
    }
    line_chart(
        "Rewards earned and vested (recent payouts)",
        "epoch",
        "CXT",
        &[
            Series {
                name: "earned (locked + vested)".into(),
                points: earned_line,
                color: BLUE_LINE,
            },
            Series {
                name: "vested by now".into(),
                points: vested_line,
                color: GREEN_LINE,
            },
        ],
    )
}

pub fn node(
    id: &NodeId,
    activity: &NodeActivity,
    account: Option<&AccountView>,
    figures: &LedgerFigures,
    events: &[NodeEvent],
) -> Markup {
    let body = html! {
        p { "Node " code { (id.to_hex()) } }
        @if let Some(row) = &activity.row {
            table {
                tr { th { "backend" } td { (row.backend) @if let Some(adapter) = &row.adapter { " · " (adapter) } } }
                tr { th { "compute threads" } td { (row.cores) } }
                tr { th { "verified speed (capability challenge)" } td { (speed(row.verified_mflops)) @if !row.believed { span.bad { " claim refuted" } } } }
                tr { th { "speed its fragments show" } td { (speed(row.observed_mflops)) } }
                @if let Some(flag) = &row.behaviour_flag { tr { th { "behaviour" } td.bad { (flag) } } }
                tr { th { "online" } td { @if row.online { "yes" } @else { "last seen " (row.seen_ms_ago / 1000) " s ago" } } }
            }
        } @else { p.muted { "Not registered with this coordinator." } }
        h2 { "On the ledger" }
        @if let Some(view) = account {
            table {
                @if let Some(node) = &view.node {
                    tr { th { "tier" } td { (format!("{:?}", node.tier).to_lowercase()) } }
                    tr { th { "status" } td class=(if node.profile.status == corex_ledger::NodeStatus::Removed { "bad" } else { "" }) { (format!("{:?}", node.profile.status).to_lowercase()) } }
                    tr { th { "reputation score" } td { (node.profile.score) } }
                    tr { th { "tasks done / failures / hard rejects" } td { (node.profile.tasks_done) " / " (node.profile.failures) " / " (node.profile.hard_rejects) } }
                    tr { th { "slashed" } td class=(if node.profile.slashed > 0 { "bad" } else { "" }) { (format_cxt(node.profile.slashed)) " CXT" } }
                    tr { th { "rewards voided by hard rejects" } td { (format_cxt(node.profile.rewards_voided)) " CXT" } }
                }
                tr { th { "stake" } td { (format_cxt(view.account.stake)) " CXT" } }
                tr { th { "balance (vested)" } td { (format_cxt(view.account.balance)) " CXT" } }
                tr { th { "locked rewards" } td { (format_cxt(view.account.locked_total())) " CXT" } }
            }
        } @else { p.muted { "No account on the ledger." } }
        (chart(rewards_chart(events, figures.epoch)))
        h2 { "Public jobs" }
        (contributions(&activity.jobs))
        h2 { "Ledger events, newest first" }
        table {
            tr { th { "block" } th { "event" } }
            @for event in events { (event_row(event, activity)) }
        }
        @if let Some(last) = events.last() {
            p { a href={ "?before=" (last.height) } { "Older events" } }
        }
    };
    layout(&format!("Node {}", id.short()), true, body)
}

fn contributions(jobs: &[(JobRow, NodeContribution)]) -> Markup {
    html! {
        table {
            tr { th { "job" } th { "accepted" } th { "audited" } th { "rejected" } th { "audits done" } }
            @for (row, work) in jobs {
                tr {
                    td { (job_link(&row.id, &row.name)) }
                    td { (work.fragments) } td { (work.audited) }
                    td class=(if work.rejected > 0 { "bad" } else { "" }) { (work.rejected) }
                    td { (work.audits_done) }
                }
            }
        }
    }
}

fn points(values: &[(u32, f32)], scale: f64) -> Vec<(f64, f64)> {
    values
        .iter()
        .map(|(round, value)| (f64::from(*round), f64::from(*value) * scale))
        .collect()
}

pub fn job(page: &JobPage) -> Markup {
    let row = &page.row;
    let loss = line_chart(
        "Loss",
        "round",
        "nats",
        &[
            Series {
                name: "train".into(),
                points: points(&page.train_loss, 1.0),
                color: BLUE_LINE,
            },
            Series {
                name: "held out".into(),
                points: points(&page.test_loss, 1.0),
                color: ORANGE_LINE,
            },
        ],
    );
    let accuracy = line_chart(
        "Held-out accuracy",
        "round",
        "%",
        &[Series {
            name: "accuracy".into(),
            points: points(&page.test_accuracy, 100.0),
            color: GREEN_LINE,
        }],
    );
    let body = html! {
        table {
            tr { th { "id" } td { code { (row.id.to_hex()) } } }
            tr { th { "model" } td { (row.family) ", " (page.work) " fragments" } }
            tr { th { "state" } td { (row.state) @if let Some(reason) = &page.failure { ": " (reason) } } }
            tr { th { "progress" } td { "round " (row.round) " of " (row.rounds) } }
            tr { th { "held out" } td { (metric(row)) } }
            tr { th { "re-issued fragments" } td { (page.reissued) } }
            @if let Some(weights) = &page.weights {
                tr { th { "download" } td { a href={ "/explorer/jobs/" (row.id.to_hex()) "/weights" } { "trained weights (safetensors)" } " " code { (weights.short()) } } }
            }
        }
        (chart(loss))
        @if !page.test_accuracy.is_empty() { (chart(accuracy)) }
        h2 { "Fragments per node" }
        table {
            tr { th { "node" } th { "accepted" } th { "audited" } th { "rejected" } th { "audits done" } th { "work" } }
            @for (node, work) in &page.nodes {
                tr {
                    td { (node_link(node)) } td { (work.fragments) } td { (work.audited) }
                    td class=(if work.rejected > 0 { "bad" } else { "" }) { (work.rejected) }
                    td { (work.audits_done) } td { (flops(work.flops)) }
                }
            }
        }
        h2 { "Audits" }
        p { (page.audits_accepted) " audited results matched their replay; "
            span class=(if page.audits_rejected > 0 { "bad" } else { "" }) { (page.audits_rejected) " did not" }
            "; " (page.results_rejected) " results rejected or discarded in all." }
        table {
            tr { th { "round" } th { "node" } th { "replayed by" } th { "verdict" } }
            @for audit in &page.audits {
                tr {
                    td { (audit.round) } td { (node_link(&audit.node)) } td { (audit.by) }
                    td class=(if audit.verdict == "accepted" { "good" } else { "bad" }) {
                        (audit.verdict) @if let Some(reason) = &audit.reason { ": " (reason) }
                    }
                }
            }
        }
    };
    layout(&format!("Job {}", row.name), row.state == "running", body)
}

fn tx_summary(body: &TxBody) -> Markup {
    match body {
        TxBody::Transfer { to, amount } => {
            html! { "transfer " (format_cxt(*amount)) " CXT to " (node_link(to)) }
        }
        TxBody::RegisterNode { device_class, .. } => {
            html! { "register a " (format!("{device_class:?}").to_lowercase()) " node" }
        }
        TxBody::Stake { amount } => html! { "stake " (format_cxt(*amount)) " CXT" },
        TxBody::BeginUnbonding { amount } => html! { "unbond " (format_cxt(*amount)) " CXT" },
        TxBody::Withdraw => html! { "withdraw unbonded stake" },
        TxBody::RecordContributions { entries, .. } => {
            html! { "work of " (entries.len()) " node entries" }
        }
        TxBody::RecordVerdict { node, verdict, .. } => {
            html! { (verdict_cell(verdict)) " for " (node_link(node)) }
        }
        TxBody::RecordRound {
            job, round, model, ..
        } => {
            html! { "round " (round) " of job " code { (job.short()) } ", model " code { (model.short()) } }
        }
        TxBody::CommitAuditChain { anchor } => {
            html! { "audit seed chain anchor " code { (anchor.short()) } }
        }
        TxBody::RevealAuditSeed { seed, .. } => {
            html! { "audit seed revealed " code { (seed.short()) } }
        }
        TxBody::SettleEpoch { epoch } => html! { "close epoch " (epoch) },
    }
}

pub fn ledger(
    figures: &LedgerFigures,
    state_root: Option<Hash>,
    blocks: &[Block],
    settlements: &[IndexedSettlement],
) -> Markup {
    let body = html! {
        table {
            tr { th { "chain" } td { (figures.chain_id) } }
            tr { th { "height" } td { (figures.height) } }
            tr { th { "head" } td { code { (figures.head.to_hex()) } } }
            @if let Some(root) = state_root { tr { th { "state root (head block)" } td { code { (root.to_hex()) } } } }
            tr { th { "open epoch" } td { (figures.epoch) } }
        }
        h2 { "Supply" }
        (supply_table(figures))
        (chart(emission_chart(figures)))
        h2 { "Epochs and their payouts" }
        table {
            tr { th { "epoch" } th { "block" } th { "released" } th { "paid to nodes" } th { "to the fund" } th { "nodes paid" } th { "dust" } }
            @for settled in settlements {
                tr {
                    td { (settled.settlement.epoch) } td { (settled.height) }
                    td { (format_cxt(settled.settlement.release)) } td { (format_cxt(settled.paid())) }
                    td { (format_cxt(settled.settlement.to_fund)) } td { (settled.settlement.payouts.len()) }
                    td { (format_cxt(settled.settlement.dust)) }
                }
            }
        }
        h2 { "Blocks" }
        table {
            tr { th { "height" } th { "time (ms)" } th { "transactions" } th { "first" } }
            @for block in blocks {
                tr {
                    td { a href={ "/explorer/ledger/blocks/" (block.header.height) } { (block.header.height) } }
                    td { (block.header.timestamp_ms) } td { (block.txs.len()) }
                    td { @if let Some(tx) = block.txs.first() { (tx_summary(&tx.body)) } }
                }
            }
        }
        @if let Some(last) = blocks.last() {
            @if last.header.height > 1 { p { a href={ "?below=" (last.header.height) } { "Older blocks" } } }
        }
    };
    layout("Ledger", true, body)
}

/// At most this many of a block's transactions are listed.
const MAX_TXS_SHOWN: usize = 500;

pub fn block(block: &Block) -> Markup {
    let header = &block.header;
    let body = html! {
        table {
            tr { th { "hash" } td { code { (header.hash().to_hex()) } } }
            tr { th { "previous" } td { code { (header.prev.to_hex()) } } }
            tr { th { "time (ms since 1970)" } td { (header.timestamp_ms) } }
            tr { th { "state root" } td { code { (header.state_root.to_hex()) } } }
            tr { th { "producer" } td { (node_link(&header.producer)) } }
        }
        h2 { (block.txs.len()) " transactions" }
        table {
            tr { th { "signer" } th { "nonce" } th { "what" } }
            @for tx in block.txs.iter().take(MAX_TXS_SHOWN) {
                tr { td { (node_link(&tx.signer)) } td { (tx.nonce) } td { (tx_summary(&tx.body)) } }
            }
        }
    };
    layout(&format!("Block {}", header.height), false, body)
}

pub fn not_found(what: &str) -> Markup {
    layout(
        "Not here",
        false,
        html! { p { (what) } p { a href="/explorer" { "Back to the overview" } } },
    )
}
