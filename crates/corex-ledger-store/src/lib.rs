//! The ledger on disk: the genesis record and every block, in redb, each block committed with
//! immediate durability before it is acknowledged, so an acknowledged block survives kill -9.
//! Every [`SNAPSHOT_EVERY`] blocks the state after the block is stored beside it, in the same
//! transaction (a snapshot). Opening resumes from the newest snapshot (its state must hash to
//! its block's state root) and replays the blocks after it through `corex_ledger::Chain`,
//! which checks every signature, link, nonce and state root: a restart costs the blocks since
//! the last snapshot, not the whole chain. The audit replays the whole chain from genesis.
//! Beside the blocks, in the same transactions, the explorer's index (`index`).

mod index;

pub use index::{IndexedSettlement, NodeEvent, NodeEventKind};

use std::path::Path;

use corex_ledger::{Block, Chain, Genesis, LedgerError, Settlement, State, Supply};
use redb::{Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition};
use thiserror::Error;

/// The genesis record, under the key `genesis`.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Blocks by height, from 1.
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const GENESIS_KEY: &str = "genesis";
/// The state after the block at a height (JSON), every [`SNAPSHOT_EVERY`] blocks; only the
/// newest is kept.
const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");

/// Blocks between two state snapshots.
pub const SNAPSHOT_EVERY: u64 = 1_000;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("ledger database: {0}")]
    Database(String),
    #[error("ledger database has no genesis record")]
    NoGenesis,
    #[error("ledger database holds the chain of genesis {stored}, not {expected}")]
    GenesisMismatch { stored: String, expected: String },
    #[error("stored record {what} is unreadable: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("replaying the stored chain: {0}")]
    Replay(#[from] LedgerError),
}

fn database(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(error.to_string())
}

pub struct LedgerStore {
    db: Database,
}

/// Blocks indexed per transaction when an older ledger is indexed at opening.
const INDEX_BATCH: usize = 1_000;

impl LedgerStore {
    /// Opens the ledger at `path`, creating it with `genesis` if it does not exist, and
    /// replays it. An existing ledger must have been made from the same genesis.
    pub fn open(path: &Path, genesis: &Genesis) -> Result<(Self, Chain), StoreError> {
        Self::open_db(Database::create(path).map_err(database)?, genesis)
    }

    /// Opens the ledger at `path` with the genesis it already holds, or makes one with `make`
    /// when the database is new.
    pub fn open_or_init(
        path: &Path,
        make: impl FnOnce() -> Genesis,
    ) -> Result<(Self, Chain), StoreError> {
        let db = Database::create(path).map_err(database)?;
        let genesis = read_genesis(&db)?.unwrap_or_else(make);
        Self::open_db(db, &genesis)
    }

    fn open_db(db: Database, genesis: &Genesis) -> Result<(Self, Chain), StoreError> {
        let stored = read_genesis(&db)?;
        match stored {
            Some(stored) if stored != *genesis => {
                return Err(StoreError::GenesisMismatch {
                    stored: stored.hash().to_hex(),
                    expected: genesis.hash().to_hex(),
                });
            }
            Some(_) => {}
            None => {
                let bytes = serde_json::to_vec(genesis).map_err(database)?;
                let txn = db.begin_write().map_err(database)?;
                {
                    let mut meta = txn.open_table(META).map_err(database)?;
                    meta.insert(GENESIS_KEY, bytes.as_slice())
                        .map_err(database)?;
                    txn.open_table(BLOCKS).map_err(database)?;
                }
                txn.commit().map_err(database)?;
            }
        }
        let (chain, snapshot) = resume(&db, genesis.clone())?;
        let from = snapshot.map_or(1, |height| height + 1);
        let chain = replay_from(&db, chain, from, |_, _| Ok(()))?;
        if index::indexed_height(&db)? < chain.height() {
            catch_up_index(&db, genesis.clone())?;
        }
        Ok((Self { db }, chain))
    }

    /// Stores `block` durably; when this returns, the block survives a crash. `after` is the
    /// chain with the block applied: at a snapshot height its state is stored with the block.
    pub fn append(&self, block: &Block, after: &Chain) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(block).map_err(database)?;
        let height = block.header.height;
        let snapshot = (height.is_multiple_of(SNAPSHOT_EVERY) && after.height() == height)
            .then(|| serde_json::to_vec(after.state()))
            .transpose()
            .map_err(database)?;
        let txn = self.db.begin_write().map_err(database)?;
        {
            let mut blocks = txn.open_table(BLOCKS).map_err(database)?;
            blocks.insert(height, bytes.as_slice()).map_err(database)?;
            if let Some(snapshot) = snapshot {
                store_snapshot(&txn, height, &snapshot)?;
            }
        }
        index::index_block(&txn, block, settled_on(after), lock_epochs(after))?;
        txn.commit().map_err(database)
    }

    /// Stores consecutive `blocks` in one transaction, durably (a catch-up, a bulk import).
    /// `after` is the chain with all of them applied: its state is stored as a snapshot when
    /// the last block's height is a snapshot height. The index takes every block's events,
    /// and `after`'s settlement with the last block (of a batch that settled several epochs,
    /// only the last one is indexed).
    pub fn append_batch(&self, blocks: &[Block], after: &Chain) -> Result<(), StoreError> {
        let Some(last) = blocks.last() else {
            return Ok(());
        };
        let height = last.header.height;
        let snapshot = (height.is_multiple_of(SNAPSHOT_EVERY) && after.height() == height)
            .then(|| serde_json::to_vec(after.state()))
            .transpose()
            .map_err(database)?;
        let txn = self.db.begin_write().map_err(database)?;
        {
            let mut table = txn.open_table(BLOCKS).map_err(database)?;
            for block in blocks {
                let bytes = serde_json::to_vec(block).map_err(database)?;
                table
                    .insert(block.header.height, bytes.as_slice())
                    .map_err(database)?;
            }
            if let Some(snapshot) = snapshot {
                store_snapshot(&txn, height, &snapshot)?;
            }
        }
        for block in blocks {
            let settled = (block.header.height == height).then(|| settled_on(after));
            index::index_block(&txn, block, settled.flatten(), lock_epochs(after))?;
        }
        txn.commit().map_err(database)
    }

    /// At most `limit` of `node`'s indexed events, newest first, below height `before`.
    pub fn node_events(
        &self,
        node: &corex_core::NodeId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<NodeEvent>, StoreError> {
        index::node_events(&self.db, node, before, limit)
    }

    /// At most `limit` indexed settlements, newest first.
    pub fn settlements(&self, limit: usize) -> Result<Vec<IndexedSettlement>, StoreError> {
        index::settlements(&self.db, limit)
    }

    /// At most `limit` stored blocks at or below `height`, highest first.
    pub fn blocks_down_from(&self, height: u64, limit: usize) -> Result<Vec<Block>, StoreError> {
        let txn = self.db.begin_read().map_err(database)?;
        let blocks = txn.open_table(BLOCKS).map_err(database)?;
        let mut found = Vec::new();
        for entry in blocks
            .range(1..=height)
            .map_err(database)?
            .rev()
            .take(limit)
        {
            let (height, bytes) = entry.map_err(database)?;
            found.push(decode_block(height.value(), bytes.value())?);
        }
        Ok(found)
    }

    /// The stored block at `height` (from 1).
    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        let txn = self.db.begin_read().map_err(database)?;
        let blocks = txn.open_table(BLOCKS).map_err(database)?;
        let Some(bytes) = blocks.get(height).map_err(database)? else {
            return Ok(None);
        };
        decode_block(height, bytes.value()).map(Some)
    }
}

/// Stores the snapshot at `height`, dropping older ones.
fn store_snapshot(
    txn: &redb::WriteTransaction,
    height: u64,
    snapshot: &[u8],
) -> Result<(), StoreError> {
    let mut snapshots = txn.open_table(SNAPSHOTS).map_err(database)?;
    snapshots
        .extract_from_if(..height, |_, _| true)
        .map_err(database)?
        .for_each(drop);
    snapshots.insert(height, snapshot).map_err(database)?;
    Ok(())
}

fn read_genesis(db: &impl ReadableDatabase) -> Result<Option<Genesis>, StoreError> {
    let txn = db.begin_read().map_err(database)?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(database(error)),
    };
    let Some(bytes) = meta.get(GENESIS_KEY).map_err(database)? else {
        return Ok(None);
    };
    serde_json::from_slice(bytes.value())
        .map(Some)
        .map_err(|error| StoreError::Corrupt {
            what: "genesis".into(),
            reason: error.to_string(),
        })
}

fn decode_block(height: u64, bytes: &[u8]) -> Result<Block, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt {
        what: format!("block {height}"),
        reason: error.to_string(),
    })
}

/// The chain at the newest stored snapshot and its height, or at genesis (`None`) when there
/// is none. A snapshot that does not match its block is an error, never skipped.
fn resume(
    db: &impl ReadableDatabase,
    genesis: Genesis,
) -> Result<(Chain, Option<u64>), StoreError> {
    let txn = db.begin_read().map_err(database)?;
    let snapshots = match txn.open_table(SNAPSHOTS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Chain::new(genesis)?, None)),
        Err(error) => return Err(database(error)),
    };
    let Some(entry) = snapshots.last().map_err(database)? else {
        return Ok((Chain::new(genesis)?, None));
    };
    let height = entry.0.value();
    let corrupt = |reason: String| StoreError::Corrupt {
        what: format!("the snapshot at height {height}"),
        reason,
    };
    let state: State =
        serde_json::from_slice(entry.1.value()).map_err(|error| corrupt(error.to_string()))?;
    let blocks = txn.open_table(BLOCKS).map_err(database)?;
    let block = blocks
        .get(height)
        .map_err(database)?
        .ok_or_else(|| corrupt("its block is missing".into()))?;
    let block = decode_block(height, block.value())?;
    Ok((Chain::resume(genesis, state, &block.header)?, Some(height)))
}

/// Replays every stored block on a fresh chain from `genesis`, calling `visit` after each
/// with the chain that applied it.
fn replay(
    db: &impl ReadableDatabase,
    genesis: Genesis,
    visit: impl FnMut(&Block, &Chain) -> Result<(), StoreError>,
) -> Result<Chain, StoreError> {
    replay_from(db, Chain::new(genesis)?, 1, visit)
}

/// Applies the stored blocks from height `from` on to `chain`, calling `visit` after each.
fn replay_from(
    db: &impl ReadableDatabase,
    mut chain: Chain,
    from: u64,
    mut visit: impl FnMut(&Block, &Chain) -> Result<(), StoreError>,
) -> Result<Chain, StoreError> {
    let txn = db.begin_read().map_err(database)?;
    let blocks = txn.open_table(BLOCKS).map_err(database)?;
    for entry in blocks.range(from..).map_err(database)? {
        let (height, bytes) = entry.map_err(database)?;
        let block = decode_block(height.value(), bytes.value())?;
        if block.header.height != height.value() {
            return Err(StoreError::Corrupt {
                what: format!("block {}", height.value()),
                reason: format!("it claims height {}", block.header.height),
            });
        }
        chain.apply_block(&block)?;
        visit(&block, &chain)?;
    }
    Ok(chain)
}

fn settled_on(chain: &Chain) -> Option<&Settlement> {
    chain.state().last_settlement.as_ref()
}

fn lock_epochs(chain: &Chain) -> u64 {
    chain.genesis().params.lock_epochs
}

/// Indexes the stored blocks above the index's height (a ledger stored before the index
/// existed), replaying the chain from genesis for the settlements each block made.
fn catch_up_index(db: &Database, genesis: Genesis) -> Result<(), StoreError> {
    let indexed = index::indexed_height(db)?;
    let lock = genesis.params.lock_epochs;
    let mut pending: Vec<(Block, Option<Settlement>)> = Vec::new();
    let flush = |pending: &mut Vec<(Block, Option<Settlement>)>| -> Result<(), StoreError> {
        let txn = db.begin_write().map_err(database)?;
        for (block, settled) in pending.drain(..) {
            index::index_block(&txn, &block, settled.as_ref(), lock)?;
        }
        txn.commit().map_err(database)
    };
    replay(db, genesis, |block, chain| {
        if block.header.height > indexed {
            pending.push((block.clone(), settled_on(chain).cloned()));
            if pending.len() >= INDEX_BATCH {
                flush(&mut pending)?;
            }
        }
        Ok(())
    })?;
    flush(&mut pending)
}

/// What an audit found: the replayed chain's head and the supply breakdown.
#[derive(Debug, Clone)]
pub struct Audit {
    pub genesis: Genesis,
    pub height: u64,
    pub head: corex_core::Hash,
    pub state_root: corex_core::Hash,
    pub transactions: u64,
    pub supply: Supply,
    pub accounts: usize,
    pub nodes: usize,
    pub epoch: u64,
    /// True when the database had not been closed cleanly and redb rebuilt its allocator
    /// state before the replay (committed data is never touched by that).
    pub repaired: bool,
    pub chain: Chain,
}

/// Replays the ledger at `path` from genesis, checking everything; errors name the first
/// block and transaction that fails.
pub fn audit(path: &Path) -> Result<Audit, StoreError> {
    match ReadOnlyDatabase::open(path) {
        Ok(db) => audit_db(&db, false),
        // A database that was not closed cleanly (a crash, kill -9) must be opened for
        // writing once so that redb can rebuild its allocator state.
        Err(redb::DatabaseError::RepairAborted) => {
            let db = Database::open(path).map_err(database)?;
            audit_db(&db, true)
        }
        Err(error) => Err(database(error)),
    }
}

fn audit_db(db: &impl ReadableDatabase, repaired: bool) -> Result<Audit, StoreError> {
    let genesis = read_genesis(db)?.ok_or(StoreError::NoGenesis)?;
    let mut transactions = 0u64;
    let chain = replay(db, genesis.clone(), |block, _| {
        transactions += block.txs.len() as u64;
        Ok(())
    })?;
    let state = chain.state();
    state.check_supply()?;
    Ok(Audit {
        genesis,
        height: chain.height(),
        head: chain.head(),
        state_root: state.root(),
        transactions,
        supply: state.supply(),
        accounts: state.accounts.len(),
        nodes: state.nodes.len(),
        epoch: state.epoch,
        repaired,
        chain,
    })
}
