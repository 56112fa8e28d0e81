//! `corex ledger audit`: replays a coordinator's ledger from genesis, checking every
//! signature, hash link, nonce and state root, and prints where every base unit is.
//! `corex ledger emission`: the release schedule simulated on the real ledger (`emission`).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use corex_core::{Hash, NodeId};
use corex_ledger::{Supply, Tier, format_cxt};
use serde::{Deserialize, Serialize};

#[derive(Subcommand)]
pub enum LedgerAction {
    /// Replay and check the whole chain; print the supply breakdown and every node's record.
    Audit {
        /// A coordinator's data directory (or a devnet's, which holds one in `coordinator/`).
        #[arg(long, default_value = "./corex-devnet")]
        data_dir: PathBuf,
    },
    /// Simulate the pool's release at the default genesis rules on the real ledger: CXT
    /// released per year, and the same schedule at very different block rates and job counts.
    Emission {
        #[arg(long, default_value_t = 20)]
        years: u64,
    },
}

/// One node's standing on the ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStanding {
    pub node: NodeId,
    pub tier: Tier,
    pub score: u32,
    pub tasks_done: u64,
    pub failures: u64,
    pub hard_rejects: u32,
    pub rewards_claimed: u128,
    pub rewards_locked: u128,
    pub balance: u128,
    pub stake: u128,
}

/// What an audit established, as it goes into reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerAudit {
    pub path: PathBuf,
    pub chain_id: String,
    pub genesis_hash: Hash,
    pub height: u64,
    pub head: Hash,
    pub state_root: Hash,
    pub transactions: u64,
    pub epoch: u64,
    /// The genesis rules' epoch length and half-life, in ledger time.
    pub epoch_ms: u64,
    pub half_life_ms: u64,
    pub supply: Supply,
    pub nodes: Vec<NodeStanding>,
}

pub fn run(action: LedgerAction) -> anyhow::Result<()> {
    match action {
        LedgerAction::Audit { data_dir } => {
            let audit = audit(&data_dir)?;
            print(&audit);
            Ok(())
        }
        LedgerAction::Emission { years } => crate::emission::run(years),
    }
}

/// The ledger file of a coordinator data directory, or of the coordinator inside a devnet's.
pub fn ledger_path(dir: &Path) -> anyhow::Result<PathBuf> {
    for candidate in [
        dir.join("ledger.redb"),
        dir.join("coordinator").join("ledger.redb"),
    ] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "no ledger in {} (looked for ledger.redb and coordinator/ledger.redb)",
        dir.display()
    )
}

pub fn audit(dir: &Path) -> anyhow::Result<LedgerAudit> {
    let path = ledger_path(dir)?;
    let audit = corex_ledger_store::audit(&path)
        .map_err(|error| anyhow::anyhow!("audit of {} FAILED: {error}", path.display()))?;
    if audit.repaired {
        tracing::warn!("the ledger had not been closed cleanly; redb rebuilt its allocator state");
    }
    let state = audit.chain.state();
    let params = &audit.genesis.params;
    let nodes = state
        .nodes
        .iter()
        .map(|(node, profile)| {
            let account = state.account(node).cloned().unwrap_or_default();
            NodeStanding {
                node: *node,
                tier: profile.tier(params),
                score: profile.score,
                tasks_done: profile.tasks_done,
                failures: profile.failures,
                hard_rejects: profile.hard_rejects,
                rewards_claimed: profile.rewards_claimed,
                rewards_locked: account.locked_total(),
                balance: account.balance,
                stake: account.stake,
            }
        })
        .collect();
    Ok(LedgerAudit {
        path,
        chain_id: audit.genesis.chain_id.clone(),
        genesis_hash: audit.genesis.hash(),
        height: audit.height,
        head: audit.head,
        state_root: audit.state_root,
        transactions: audit.transactions,
        epoch: audit.epoch,
        epoch_ms: params.epoch_ms,
        half_life_ms: params.half_life_ms,
        supply: audit.supply,
        nodes,
    })
}

pub fn print(audit: &LedgerAudit) {
    println!("ledger audit of {}: OK", audit.path.display());
    println!(
        "  chain        {} (genesis {})",
        audit.chain_id,
        audit.genesis_hash.short()
    );
    println!(
        "  blocks       {} blocks, {} transactions; every signature, hash link, nonce and state root checked",
        audit.height, audit.transactions
    );
    println!("  head         {}", audit.head);
    println!("  state root   {}", audit.state_root);
    println!(
        "  epoch        {} ({})",
        audit.epoch,
        rules(audit.epoch_ms, audit.half_life_ms)
    );
    print_supply(&audit.supply);
    print_nodes(&audit.nodes);
}

/// The emission rules in words: `2 s epochs, pool half-life 4.00 years`.
pub fn rules(epoch_ms: u64, half_life_ms: u64) -> String {
    let year_ms = 365.25 * 24.0 * 3_600_000.0;
    format!(
        "{} s epochs of ledger time, pool half-life {:.2} years",
        epoch_ms as f64 / 1_000.0,
        half_life_ms as f64 / year_ms
    )
}

/// Each node's standing: tier, score, verdicts and rewards.
pub fn print_nodes(nodes: &[NodeStanding]) {
    if nodes.is_empty() {
        return;
    }
    println!(
        "  {:<10} {:<10} {:>6} {:>7} {:>9} {:>22} {:>22}",
        "node", "tier", "score", "tasks", "failures", "locked CXT", "claimed CXT"
    );
    for node in nodes {
        println!(
            "  {:<10} {:<10} {:>6} {:>7} {:>9} {:>22} {:>22}",
            node.node.short(),
            format!("{:?}", node.tier).to_lowercase(),
            node.score,
            node.tasks_done,
            node.failures + u64::from(node.hard_rejects),
            format_cxt(node.rewards_locked),
            format_cxt(node.rewards_claimed)
        );
    }
}

pub fn print_supply(supply: &Supply) {
    println!("  supply (CXT, exact):");
    for (name, amount) in [
        ("pool", supply.pool),
        ("ecosystem fund", supply.fund),
        ("balances", supply.balances),
        ("stakes", supply.stakes),
        ("unbonding", supply.unbonding),
        ("locked rewards", supply.locked_rewards),
    ] {
        println!("    {name:<16} {:>30}", format_cxt(amount));
    }
    println!("    {:<16} {:>30}", "total", format_cxt(supply.total()));
}
