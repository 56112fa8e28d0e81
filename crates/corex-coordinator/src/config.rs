//! Coordinator settings: a plain struct with defaults, validated once at the edge.

use std::path::PathBuf;

use corex_core::ResourceLimits;
use corex_core::chunk::{CHUNK_SIZE, MIN_UPLOAD_CHUNK_SIZE};
use corex_verify::AuditPolicy;

use crate::admission::{Admission, AdmissionPolicy};
use crate::error::CoordinatorError;
use crate::transport::TransportLimits;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// Largest request body accepted; a result for the largest allowed model must fit.
    pub max_body_bytes: usize,
    /// How far a signature's `created` may be from the coordinator's clock.
    pub clock_skew_s: u64,
    /// Longest a lease request may be held open waiting for work.
    pub max_long_poll_ms: u64,
    /// How often expired leases are swept.
    pub sweep_interval_ms: u64,
    /// The rules a new ledger starts with (epoch length and half-life in ledger time, lock and
    /// unbonding windows, …); a stored ledger keeps those of its own genesis. Default: the
    /// main rules (one-hour epochs, four-year half-life); a devnet takes
    /// `corex_ledger::Params::devnet()` (two-second epochs, the same half-life).
    pub genesis: corex_ledger::Params,
    /// Reveals in one audit seed chain; the next chain's anchor is committed at the first.
    pub audit_chain_length: usize,
    /// How often a node's results are audited from its record (probation, then a rate falling
    /// to a floor as audits pass). Default: the rates tuned in docs/verification.md.
    pub audit_policy: AuditPolicy,
    /// Let nodes with the same device fingerprint audit each other. Off in production (an
    /// audit must come from other hardware); a devnet, whose nodes share one machine, turns
    /// it on and says so.
    pub shared_hardware: bool,
    /// Most live nodes one device fingerprint may run (against Sybil farms: many identities
    /// on one machine).
    pub max_nodes_per_fingerprint: u32,
    /// Most live nodes one network endpoint (IP address) may run.
    pub max_nodes_per_endpoint: u32,
    /// Append every request received to the journal in the data directory (see `journal`).
    pub journal: bool,
    /// Largest chunk a node may upload (`PUT /v1/uploads/{hash}`): that request's body limit,
    /// and the largest chunk size a result manifest may name.
    pub max_upload_chunk_bytes: usize,
    /// Most bytes of uploaded chunks one node may have staged at once, and so the largest
    /// result that can go up as chunks.
    pub max_staged_bytes_per_node: usize,
    /// Most bytes of uploaded chunks staged over all nodes: the memory uploads may take.
    pub max_staged_bytes: usize,
    /// A node's staged chunks are dropped this long after its last upload activity.
    pub upload_ttl_ms: u64,
    /// The coordinator's own replay speed (MFLOP/s). Under adaptive granularity it replays an
    /// audit itself rather than leave it to a node less than half as fast. `None`: not known
    /// (every audit a node fits goes to nodes); the server measures it when the first job of
    /// adaptive granularity comes.
    pub replay_mflops: Option<u64>,
    /// Who may submit jobs and upload datasets, and which keys hold the operator's rights
    /// (the coordinator's own key always does).
    pub admission: Admission,
    /// The resource budget every job spec must fit before anything is allocated for it.
    pub limits: ResourceLimits,
    /// Most jobs one owner may have running at once.
    pub max_running_jobs_per_owner: u32,
    /// Most bytes one owner may keep on the coordinator: its uploaded datasets and its jobs'
    /// published data and results.
    pub max_stored_bytes_per_owner: u64,
    /// Largest dataset an owner may upload or name (encoded size, or CSV file size).
    pub max_dataset_bytes: usize,
    /// The directory of CSV datasets jobs may name (`DatasetSource::Named`); `None`: none.
    pub datasets_dir: Option<PathBuf>,
    /// Limits applied before authentication: body sizes per route, timeouts, connections,
    /// concurrency and rates.
    pub transport: TransportLimits,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024 * 1024,
            clock_skew_s: 300,
            max_long_poll_ms: 10_000,
            sweep_interval_ms: 100,
            genesis: corex_ledger::Params::default(),
            audit_chain_length: crate::verification::CHAIN_LENGTH,
            audit_policy: AuditPolicy::default(),
            shared_hardware: false,
            max_nodes_per_fingerprint: 1,
            max_nodes_per_endpoint: 4,
            journal: false,
            max_upload_chunk_bytes: CHUNK_SIZE,
            max_staged_bytes_per_node: 64 * 1024 * 1024,
            max_staged_bytes: 1024 * 1024 * 1024,
            upload_ttl_ms: 600_000,
            replay_mflops: None,
            admission: Admission::default(),
            limits: ResourceLimits::default(),
            max_running_jobs_per_owner: 4,
            max_stored_bytes_per_owner: 1 << 30,
            max_dataset_bytes: 64 * 1024 * 1024,
            datasets_dir: None,
            transport: TransportLimits::default(),
        }
    }
}

impl CoordinatorConfig {
    /// A network whose nodes all run on one machine (a devnet, tests): any number of nodes
    /// per fingerprint and endpoint, they may audit each other, any key may submit jobs,
    /// connections and rates are limited per coordinator, not per address (every node shares
    /// 127.0.0.1), and a new ledger takes the devnet rules (two-second epochs, so that a job
    /// of seconds is paid; the same half-life as the main rules).
    pub fn one_machine() -> Self {
        Self {
            genesis: corex_ledger::Params::devnet(),
            shared_hardware: true,
            max_nodes_per_fingerprint: u32::MAX,
            max_nodes_per_endpoint: u32::MAX,
            admission: Admission {
                policy: AdmissionPolicy::Open,
                ..Admission::default()
            },
            max_running_jobs_per_owner: 64,
            transport: TransportLimits::one_machine(),
            ..Self::default()
        }
    }

    /// Body limit of a request that carries a chunk manifest (a chunked result, a dataset, a
    /// question about missing chunks): room for the most chunks one node may stage, at the
    /// smallest chunk size, as JSON hex hashes.
    pub fn max_manifest_body_bytes(&self) -> usize {
        const JSON_BYTES_PER_HASH: usize = 80;
        let chunks = self
            .max_staged_bytes_per_node
            .div_ceil(MIN_UPLOAD_CHUNK_SIZE);
        chunks
            .saturating_mul(JSON_BYTES_PER_HASH)
            .saturating_add(self.transport.max_message_body_bytes)
    }

    pub fn validate(&self) -> Result<(), CoordinatorError> {
        if self.max_body_bytes < 1024
            || self.sweep_interval_ms == 0
            || self.clock_skew_s == 0
            || self.audit_chain_length == 0
            || self.max_nodes_per_fingerprint == 0
            || self.max_nodes_per_endpoint == 0
        {
            return Err(CoordinatorError::InvalidSpec(
                "coordinator config: body limit ≥ 1 KiB; sweep interval, clock skew, audit chain length and node limits > 0"
                    .into(),
            ));
        }
        self.genesis.validate().map_err(|error| {
            CoordinatorError::InvalidSpec(format!("coordinator config: {error}"))
        })?;
        self.limits.validate().map_err(|error| {
            CoordinatorError::InvalidSpec(format!("coordinator config: {error}"))
        })?;
        self.transport.validate()?;
        if self.max_running_jobs_per_owner == 0 || self.max_dataset_bytes == 0 {
            return Err(CoordinatorError::InvalidSpec(
                "coordinator config: running jobs per owner and dataset bytes must be positive"
                    .into(),
            ));
        }
        if self.max_upload_chunk_bytes < MIN_UPLOAD_CHUNK_SIZE
            || self.max_staged_bytes_per_node < self.max_upload_chunk_bytes
            || self.max_staged_bytes < self.max_staged_bytes_per_node
            || self.upload_ttl_ms == 0
        {
            return Err(CoordinatorError::InvalidSpec(format!(
                "coordinator config: upload chunk limit ≥ {MIN_UPLOAD_CHUNK_SIZE} bytes ≤ staged bytes per node ≤ staged bytes in all; upload expiry > 0"
            )));
        }
        Ok(())
    }
}
