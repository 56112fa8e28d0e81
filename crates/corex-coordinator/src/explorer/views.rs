//! What the explorer's pages show, taken from the coordinator's state and the ledger as
//! plain values: pure functions of what they are given (the core's state inside one read,
//! the ledger's chain under its lock for a moment), each bounded in size, and with nothing
//! private in them: no address or host name of a node, nothing of a private job but that it
//! exists.

use std::collections::BTreeMap;

use corex_core::messages::{JobState, NodeContribution, ResultVerdict};
use corex_core::{Hash, NodeId};
use corex_ledger::{BASE_UNITS_PER_CXT, Chain, Supply, TOTAL_SUPPLY};

use crate::engine::Coordinator;
use crate::job_run::JobRun;
use crate::metrics::{verdict_name, was_audited};

/// A node counts as online when it was heard from within this long.
pub const ONLINE_MS: u64 = 60_000;
/// At most this many rows in any table, and points in any curve.
pub const MAX_ROWS: usize = 200;
pub const MAX_POINTS: usize = 600;

/// CXT as a float, for display only (amounts stay integers everywhere else).
pub fn cxt(units: u128) -> f64 {
    units as f64 / BASE_UNITS_PER_CXT as f64
}

/// One node as the public sees it.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub id: NodeId,
    pub backend: &'static str,
    pub adapter: Option<String>,
    pub cores: u32,
    pub verified_mflops: Option<u64>,
    pub believed: bool,
    pub observed_mflops: Option<u64>,
    pub behaviour_flag: Option<String>,
    pub online: bool,
    pub seen_ms_ago: u64,
}

/// One job as the public sees it: a private one only as `private`.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: Hash,
    pub name: String,
    pub family: &'static str,
    pub state: String,
    pub round: u32,
    pub rounds: u32,
    pub last_test_loss: Option<f32>,
    pub last_test_accuracy: Option<f32>,
}

/// What the core's state shows on the overview.
#[derive(Debug, Clone, Default)]
pub struct Network {
    pub nodes: Vec<NodeRow>,
    pub public_jobs: Vec<JobRow>,
    pub running_jobs: usize,
    pub private_jobs: usize,
}

pub fn job_state_name(state: &JobState) -> String {
    match state {
        JobState::Running => "running".into(),
        JobState::Finished => "finished".into(),
        JobState::Failed { .. } => "failed".into(),
        JobState::Cancelled => "cancelled".into(),
    }
}

fn node_row(id: &NodeId, info: &corex_core::messages::NodeInfo, now_ms: u64) -> NodeRow {
    let seen_ms_ago = now_ms.saturating_sub(info.last_seen_ms);
    NodeRow {
        id: *id,
        backend: info.device.backend.name(),
        adapter: info
            .device
            .adapter
            .as_ref()
            .map(|adapter| adapter.name.clone()),
        cores: info.device.compute_threads,
        verified_mflops: info
            .capability
            .as_ref()
            .map(|capability| capability.demonstrated_mflops),
        believed: info
            .capability
            .as_ref()
            .is_some_and(|capability| capability.believed),
        observed_mflops: info.observed_mflops,
        behaviour_flag: info.behaviour_flag.clone(),
        online: seen_ms_ago <= ONLINE_MS,
        seen_ms_ago,
    }
}

fn job_row(job: &JobRun) -> JobRow {
    let history = job.history();
    JobRow {
        id: job.id,
        name: job.spec.name.chars().take(80).collect(),
        family: job.spec.model.family(),
        state: job_state_name(job.state()),
        round: history.last().map_or(0, |record| record.round + 1),
        rounds: job.spec.rounds,
        last_test_loss: history.iter().rev().find_map(|record| record.test_loss),
        last_test_accuracy: history.iter().rev().find_map(|record| record.test_accuracy),
    }
}

/// The overview's part of the core's state: nodes (most verified speed first), public jobs
/// (newest first), counts of the rest.
pub fn network(engine: &Coordinator, now_ms: u64) -> Network {
    let mut nodes: Vec<NodeRow> = engine
        .registry()
        .map(|(id, info)| node_row(id, info, now_ms))
        .collect();
    nodes.sort_by_key(|row| (!row.online, std::cmp::Reverse(row.verified_mflops), row.id));
    nodes.truncate(MAX_ROWS);
    let mut network = Network {
        nodes,
        ..Network::default()
    };
    for job in engine.jobs() {
        network.running_jobs += usize::from(job.is_running());
        if job.spec.public {
            network.public_jobs.push(job_row(job));
        } else {
            network.private_jobs += 1;
        }
    }
    network.public_jobs.reverse();
    network.public_jobs.truncate(MAX_ROWS);
    network
}

/// A verdict's reason as a public job's round record states it.
#[derive(Debug, Clone)]
pub struct StatedReason {
    pub job: Hash,
    pub round: u32,
    pub reason: String,
}

/// What the core knows of one node: its registry row, its work in public jobs, and the
/// reasons public jobs' records give for its rejected results (by fragment).
#[derive(Debug, Clone, Default)]
pub struct NodeActivity {
    pub row: Option<NodeRow>,
    pub jobs: Vec<(JobRow, NodeContribution)>,
    pub reasons: BTreeMap<Hash, StatedReason>,
}

pub fn node_activity(engine: &Coordinator, node: &NodeId, now_ms: u64) -> NodeActivity {
    let row = engine.node(node).map(|info| node_row(node, info, now_ms));
    let mut activity = NodeActivity {
        row,
        ..NodeActivity::default()
    };
    for job in engine.jobs().filter(|job| job.spec.public) {
        let status = job.status();
        if let Some(contribution) = status.nodes.get(node) {
            activity.jobs.push((job_row(job), contribution.clone()));
        }
        for record in job.history() {
            for result in record.results.iter().filter(|result| result.node == *node) {
                if let ResultVerdict::Rejected { reason, .. }
                | ResultVerdict::Discarded { reason, .. } = &result.verdict
                    && activity.reasons.len() < MAX_ROWS
                {
                    activity.reasons.insert(
                        result.fragment,
                        StatedReason {
                            job: job.id,
                            round: record.round,
                            reason: reason.chars().take(300).collect(),
                        },
                    );
                }
            }
        }
    }
    activity.jobs.truncate(MAX_ROWS);
    activity
}

/// One audited result of a job, for its page.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub round: u32,
    pub node: NodeId,
    pub by: String,
    pub verdict: String,
    pub reason: Option<String>,
}

/// A public job's page.
#[derive(Debug, Clone)]
pub struct JobPage {
    pub row: JobRow,
    pub work: String,
    pub failure: Option<String>,
    pub weights: Option<Hash>,
    /// (round, train loss), at most [`MAX_POINTS`] evenly picked.
    pub train_loss: Vec<(u32, f32)>,
    pub test_loss: Vec<(u32, f32)>,
    pub test_accuracy: Vec<(u32, f32)>,
    pub nodes: Vec<(NodeId, NodeContribution)>,
    pub audits_accepted: u64,
    pub audits_rejected: u64,
    pub results_rejected: u64,
    /// The latest audited results, newest first.
    pub audits: Vec<AuditRow>,
    pub reissued: u64,
}

/// Every `n`-th point so that at most `most` remain, the last always kept.
fn thin<T: Copy>(points: Vec<T>, most: usize) -> Vec<T> {
    if points.len() <= most {
        return points;
    }
    let step = points.len().div_ceil(most);
    let last = points.len() - 1;
    points
        .iter()
        .enumerate()
        .filter(|(index, _)| index % step == 0 || *index == last)
        .map(|(_, point)| *point)
        .collect()
}

/// A public job's page; `None` for a job that is private or unknown.
pub fn job_page(engine: &Coordinator, id: &Hash) -> Option<JobPage> {
    let job = engine.jobs().find(|job| job.id == *id && job.spec.public)?;
    let history = job.history();
    let points = |metric: &dyn Fn(&corex_core::messages::RoundRecord) -> Option<f32>| {
        let all = history
            .iter()
            .filter_map(|record| Some((record.round, metric(record)?)))
            .collect();
        thin(all, MAX_POINTS)
    };
    let status = job.status();
    let mut page = JobPage {
        row: job_row(job),
        work: job.spec.work.fragment_kind().name().replace('_', " "),
        failure: match job.state() {
            JobState::Failed { reason } => Some(reason.chars().take(300).collect()),
            _ => None,
        },
        weights: job.weights,
        train_loss: points(&|record| Some(record.train_loss)),
        test_loss: points(&|record| record.test_loss),
        test_accuracy: points(&|record| record.test_accuracy),
        nodes: status.nodes.into_iter().take(MAX_ROWS).collect(),
        audits_accepted: 0,
        audits_rejected: 0,
        results_rejected: 0,
        audits: Vec::new(),
        reissued: status.re_issued_fragments,
    };
    for record in history.iter().rev() {
        for result in &record.results {
            let verdict = verdict_name(&result.verdict);
            let reason = match &result.verdict {
                ResultVerdict::Accepted { .. } => None,
                ResultVerdict::Rejected { reason, .. }
                | ResultVerdict::Discarded { reason, .. } => Some(reason),
            };
            let accepted = reason.is_none();
            page.results_rejected += u64::from(!accepted);
            if !was_audited(&result.verdict) {
                continue;
            }
            if accepted {
                page.audits_accepted += 1;
            } else {
                page.audits_rejected += 1;
            }
            if page.audits.len() < 50 {
                let by = match (result.audited_steps, result.audited_by) {
                    (Some([first, end]), _) => format!("segment {first}..{end}"),
                    (None, Some(auditor)) => format!("node {}", auditor.short()),
                    (None, None) => "coordinator".into(),
                };
                page.audits.push(AuditRow {
                    round: record.round,
                    node: result.node,
                    by,
                    verdict: verdict.into(),
                    reason: reason.map(|reason| reason.chars().take(300).collect()),
                });
            }
        }
    }
    Some(page)
}

/// The ledger's figures the pages show, copied out under its lock.
#[derive(Debug, Clone)]
pub struct LedgerFigures {
    pub chain_id: String,
    pub height: u64,
    pub head: Hash,
    pub epoch: u64,
    pub supply: Supply,
    /// Ledger time since genesis, and the pool's half-life, in ms.
    pub elapsed_ms: u64,
    pub half_life_ms: u64,
    pub epoch_ms: u64,
    /// Tier name of the nodes asked for (`removed` for a node the ledger removed).
    pub tiers: BTreeMap<NodeId, String>,
}

/// The ledger's figures, with the tiers of `nodes` only (an O(log n) look-up each): the
/// state root is not recomputed here (it hashes the whole state, under the ledger's lock); the
/// ledger page shows the head block's.
pub fn ledger_figures(chain: &Chain, nodes: &[NodeId]) -> LedgerFigures {
    let genesis = chain.genesis();
    let params = &genesis.params;
    let state = chain.state();
    let tier = |profile: &corex_ledger::NodeProfile| match profile.status {
        corex_ledger::NodeStatus::Removed => "removed".to_owned(),
        corex_ledger::NodeStatus::Active => format!("{:?}", profile.tier(params)).to_lowercase(),
    };
    LedgerFigures {
        chain_id: genesis.chain_id.clone(),
        height: chain.height(),
        head: chain.head(),
        epoch: state.epoch,
        supply: state.supply(),
        elapsed_ms: chain.timestamp_ms().saturating_sub(genesis.timestamp_ms),
        half_life_ms: params.half_life_ms,
        epoch_ms: params.epoch_ms,
        tiers: nodes
            .iter()
            .filter_map(|id| Some((*id, tier(state.nodes.get(id)?))))
            .collect(),
    }
}

impl LedgerFigures {
    /// What the pool would hold after `ms` of ledger time at a demand factor of 1, in CXT.
    pub fn scheduled_pool_cxt(&self, ms: u64) -> f64 {
        cxt(TOTAL_SUPPLY) * (-(ms as f64) / self.half_life_ms.max(1) as f64).exp2()
    }

    /// The supply's parts in CXT, in a fixed order.
    pub fn supply_parts(&self) -> Vec<(&'static str, f64)> {
        let supply = &self.supply;
        vec![
            ("pool", cxt(supply.pool)),
            ("fund", cxt(supply.fund)),
            ("balances", cxt(supply.balances)),
            ("stakes", cxt(supply.stakes)),
            ("unbonding", cxt(supply.unbonding)),
            ("locked_rewards", cxt(supply.locked_rewards)),
        ]
    }
}
