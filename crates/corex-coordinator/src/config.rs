//! Coordinator settings: a plain struct with defaults, validated once at the edge.

use corex_core::chunk::{CHUNK_SIZE, MIN_UPLOAD_CHUNK_SIZE};

use crate::error::CoordinatorError;

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
            shared_hardware: false,
            max_nodes_per_fingerprint: 1,
            max_nodes_per_endpoint: 4,
            journal: false,
            max_upload_chunk_bytes: CHUNK_SIZE,
            max_staged_bytes_per_node: 64 * 1024 * 1024,
            max_staged_bytes: 1024 * 1024 * 1024,
            upload_ttl_ms: 600_000,
            replay_mflops: None,
        }
    }
}

impl CoordinatorConfig {
    /// A network whose nodes all run on one machine (a devnet, tests): any number of nodes
    /// per fingerprint and endpoint, they may audit each other, and a new ledger takes the
    /// devnet rules (two-second epochs, so that a job of seconds is paid; the same half-life
    /// as the main rules).
    pub fn one_machine() -> Self {
        Self {
            genesis: corex_ledger::Params::devnet(),
            shared_hardware: true,
            max_nodes_per_fingerprint: u32::MAX,
            max_nodes_per_endpoint: u32::MAX,
            ..Self::default()
        }
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
