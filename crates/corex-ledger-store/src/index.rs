//! The explorer's index of the ledger, derived from the blocks and kept in the same redb file:
//! what happened to each node (verdicts with their reason or evidence, recorded work, epoch
//! payouts) by block height, and each epoch's settlement. Written in the transaction that
//! stores the block, so it is exactly as durable as the chain; a ledger stored before the
//! index existed is indexed once when it is opened. The index is never read to decide
//! anything: the chain stays the only source of truth, the index only shows it.

use corex_core::{Hash, NodeId};
use corex_ledger::{Block, Settlement, TxBody, Verdict};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::{StoreError, database};

/// A node's events by `(node, block height, position in the block)`.
const NODE_EVENTS: TableDefinition<([u8; 32], u64, u32), &[u8]> =
    TableDefinition::new("index_node_events");
/// Settlements that released something, by epoch (JSON `IndexedSettlement`).
const SETTLEMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("index_settlements");
/// The height up to which blocks are indexed, and the last indexed settlement's epoch.
const INDEX_META: TableDefinition<&str, u64> = TableDefinition::new("index_meta");
const INDEXED_HEIGHT: &str = "indexed_height";
const LAST_SETTLEMENT: &str = "last_settlement_epoch";

/// Position given to the payouts of a settlement: after every transaction of its block.
const PAYOUT_POSITION: u32 = u32::MAX;

/// Something the ledger recorded about one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeEventKind {
    /// The node registered its device.
    Registered,
    /// A verdict on one of its results (a hard reject carries the evidence's hash and costs
    /// the node its stake and locked rewards).
    Verdict { fragment: Hash, verdict: Verdict },
    /// Verified work of a closed round, in FLOPs.
    Work {
        compute_units: u128,
        pot_units: u128,
        verification_units: u128,
    },
    /// Its payout from an epoch's settlement, locked until `unlock_epoch`.
    Payout {
        epoch: u64,
        amount: u128,
        unlock_epoch: u64,
    },
}

/// One indexed event with where it is on the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    pub height: u64,
    pub timestamp_ms: u64,
    pub kind: NodeEventKind,
}

/// A settlement as the index keeps it: the block that made it and its totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedSettlement {
    pub height: u64,
    pub timestamp_ms: u64,
    pub settlement: Settlement,
}

impl IndexedSettlement {
    pub fn paid(&self) -> u128 {
        self.settlement
            .payouts
            .iter()
            .map(|(_, amount)| amount)
            .sum()
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(database)
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt {
        what: what.into(),
        reason: error.to_string(),
    })
}

/// Indexes `block` inside `txn`, with `settled`: the last settlement that released something
/// on the chain once the block was applied (indexed if it is newer than the last one indexed),
/// whose rewards lock for `lock_epochs`.
pub(crate) fn index_block(
    txn: &WriteTransaction,
    block: &Block,
    settled: Option<&Settlement>,
    lock_epochs: u64,
) -> Result<(), StoreError> {
    let height = block.header.height;
    let timestamp_ms = block.header.timestamp_ms;
    let mut events = txn.open_table(NODE_EVENTS).map_err(database)?;
    let mut put = |node: &NodeId, position: u32, kind: NodeEventKind| {
        let event = NodeEvent {
            height,
            timestamp_ms,
            kind,
        };
        events
            .insert((node.0, height, position), encode(&event)?.as_slice())
            .map(drop)
            .map_err(database)
    };
    for (position, tx) in block.txs.iter().enumerate() {
        let position = position as u32;
        match &tx.body {
            TxBody::RegisterNode { .. } => put(&tx.signer, position, NodeEventKind::Registered)?,
            TxBody::RecordVerdict {
                node,
                fragment,
                verdict,
            } => put(
                node,
                position,
                NodeEventKind::Verdict {
                    fragment: *fragment,
                    verdict: verdict.clone(),
                },
            )?,
            TxBody::RecordContributions { entries, .. } => {
                // A node may have several entries (compute, useful, auditing): one event each.
                let mut work = std::collections::BTreeMap::<NodeId, [u128; 3]>::new();
                for entry in entries {
                    let units = work.entry(entry.node).or_default();
                    units[0] = units[0].saturating_add(entry.compute_units);
                    units[1] = units[1].saturating_add(entry.pot_units);
                    units[2] = units[2].saturating_add(entry.verification_units);
                }
                for (node, [compute_units, pot_units, verification_units]) in work {
                    let kind = NodeEventKind::Work {
                        compute_units,
                        pot_units,
                        verification_units,
                    };
                    put(&node, position, kind)?;
                }
            }
            _ => {}
        }
    }
    let mut meta = txn.open_table(INDEX_META).map_err(database)?;
    let last_indexed = meta
        .get(LAST_SETTLEMENT)
        .map_err(database)?
        .map(|v| v.value());
    let settled =
        settled.filter(|settlement| last_indexed.is_none_or(|epoch| settlement.epoch > epoch));
    if let Some(settlement) = settled {
        let unlock_epoch = settlement.epoch + lock_epochs;
        for (node, amount) in &settlement.payouts {
            let payout = NodeEventKind::Payout {
                epoch: settlement.epoch,
                amount: *amount,
                unlock_epoch,
            };
            put(node, PAYOUT_POSITION, payout)?;
        }
        let indexed = IndexedSettlement {
            height,
            timestamp_ms,
            settlement: settlement.clone(),
        };
        txn.open_table(SETTLEMENTS)
            .map_err(database)?
            .insert(settlement.epoch, encode(&indexed)?.as_slice())
            .map_err(database)?;
        meta.insert(LAST_SETTLEMENT, settlement.epoch)
            .map_err(database)?;
    }
    meta.insert(INDEXED_HEIGHT, height).map_err(database)?;
    Ok(())
}

/// `definition`'s table in `txn`, or none when nothing was ever written to it.
fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(database(error)),
    }
}

/// The height up to which the index holds the chain (0: nothing indexed).
pub(crate) fn indexed_height(db: &impl ReadableDatabase) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(database)?;
    let Some(meta) = read_table(&txn, INDEX_META)? else {
        return Ok(0);
    };
    let height = meta.get(INDEXED_HEIGHT).map_err(database)?;
    Ok(height.map_or(0, |height| height.value()))
}

/// At most `limit` of `node`'s events, newest first, from below height `before` (all: `None`).
pub(crate) fn node_events(
    db: &impl ReadableDatabase,
    node: &NodeId,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<NodeEvent>, StoreError> {
    let txn = db.begin_read().map_err(database)?;
    let Some(table) = read_table(&txn, NODE_EVENTS)? else {
        return Ok(Vec::new());
    };
    let end = before.unwrap_or(u64::MAX);
    let mut events = Vec::new();
    for entry in table
        .range((node.0, 0, 0)..(node.0, end, 0))
        .map_err(database)?
        .rev()
        .take(limit)
    {
        let (_, bytes) = entry.map_err(database)?;
        events.push(decode("a node event", bytes.value())?);
    }
    Ok(events)
}

/// At most `limit` settlements, newest first.
pub(crate) fn settlements(
    db: &impl ReadableDatabase,
    limit: usize,
) -> Result<Vec<IndexedSettlement>, StoreError> {
    let txn = db.begin_read().map_err(database)?;
    let Some(table) = read_table(&txn, SETTLEMENTS)? else {
        return Ok(Vec::new());
    };
    let mut settled = Vec::new();
    for entry in table.iter().map_err(database)?.rev().take(limit) {
        let (_, bytes) = entry.map_err(database)?;
        settled.push(decode("a settlement", bytes.value())?);
    }
    Ok(settled)
}
