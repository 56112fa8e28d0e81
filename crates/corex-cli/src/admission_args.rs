//! Who may use whom: the coordinator's job-owner flags (admission policy, operators, quotas,
//! the directory of named datasets) and a data holder's flags (the owners it computes for, its
//! differential-privacy floor and budget), turned into configuration.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use corex_coordinator::{Admission, AdmissionPolicy, CoordinatorConfig};
use corex_core::NodeId;
use corex_ledger::BASE_UNITS_PER_CXT;

/// Who may submit jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdmissionMode {
    /// Only the operators (the coordinator's own key and each `--operator`): the default.
    Operators,
    /// Any key (a devnet or a test network).
    Open,
    /// The operators and each `--allow-owner` key.
    AllowList,
    /// The operators and keys with at least `--min-owner-stake` CXT staked on the ledger.
    MinStake,
}

#[derive(Debug, Args)]
pub struct AdmissionArgs {
    /// Who may submit jobs and upload datasets.
    #[arg(long, value_enum, default_value_t = AdmissionMode::Operators)]
    admission: AdmissionMode,
    /// A job owner's key (hex) for `--admission allow-list`; repeat for more.
    #[arg(long = "allow-owner", value_name = "KEY")]
    allowed_owners: Vec<String>,
    /// Whole CXT a job owner must have staked under `--admission min-stake`.
    #[arg(long, default_value_t = 1000)]
    min_owner_stake: u64,
    /// A key (hex) with the operator's rights: admitted whatever the policy, reads and cancels
    /// every job, sees nodes' addresses. The coordinator's own key always has them.
    #[arg(long = "operator", value_name = "KEY")]
    operators: Vec<String>,
    /// Most jobs one owner may have running at once.
    #[arg(long, default_value_t = 4)]
    max_running_jobs_per_owner: u32,
    /// A directory of CSV files that jobs may name as datasets (`kind = "named"`).
    #[arg(long)]
    datasets_dir: Option<PathBuf>,
}

fn parse_keys(keys: &[String]) -> anyhow::Result<BTreeSet<NodeId>> {
    keys.iter()
        .map(|key| {
            key.parse()
                .map_err(|error| anyhow::anyhow!("key {key}: {error}"))
        })
        .collect()
}

impl AdmissionArgs {
    /// `config` with these flags applied.
    pub fn apply(&self, config: CoordinatorConfig) -> anyhow::Result<CoordinatorConfig> {
        let allowed = parse_keys(&self.allowed_owners)?;
        anyhow::ensure!(
            allowed.is_empty() || self.admission == AdmissionMode::AllowList,
            "--allow-owner needs --admission allow-list"
        );
        let policy = match self.admission {
            AdmissionMode::Operators => AdmissionPolicy::operators_only(),
            AdmissionMode::Open => AdmissionPolicy::Open,
            AdmissionMode::AllowList => AdmissionPolicy::AllowList(allowed),
            AdmissionMode::MinStake => {
                AdmissionPolicy::MinStake(u128::from(self.min_owner_stake) * BASE_UNITS_PER_CXT)
            }
        };
        Ok(CoordinatorConfig {
            admission: Admission {
                policy,
                operators: parse_keys(&self.operators)?,
            },
            max_running_jobs_per_owner: self.max_running_jobs_per_owner,
            datasets_dir: self.datasets_dir.clone(),
            ..config
        })
    }
}

/// A data holder's terms for federated jobs (`corex node --local-data …`).
#[derive(Debug, Args)]
pub struct HolderArgs {
    /// A job owner (hex key) whose federated jobs this data holder computes; repeat for
    /// more. None: the holder computes no federated job.
    #[arg(long = "holder-allow-owner", value_name = "KEY")]
    allowed_owners: Vec<String>,
    /// The least DP-SGD noise multiplier a federated job must use (0: jobs without
    /// differential privacy are accepted).
    #[arg(long, default_value_t = 0.0)]
    dp_floor: f64,
    /// The most privacy loss ε one federated job may spend on this holder's data.
    #[arg(long)]
    privacy_budget: Option<f64>,
}

impl HolderArgs {
    pub fn policy(&self) -> anyhow::Result<corex_node::HolderPolicy> {
        anyhow::ensure!(
            self.dp_floor.is_finite() && self.dp_floor >= 0.0,
            "--dp-floor must be a non-negative number"
        );
        anyhow::ensure!(
            self.privacy_budget.is_none_or(|budget| budget > 0.0),
            "--privacy-budget must be positive"
        );
        Ok(corex_node::HolderPolicy {
            allowed_owners: parse_keys(&self.allowed_owners)?,
            min_noise_multiplier: self.dp_floor,
            max_epsilon: self.privacy_budget,
        })
    }
}
