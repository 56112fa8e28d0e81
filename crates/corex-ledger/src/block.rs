//! Blocks: batches of transactions, hash-chained, each committing to the state after it and
//! signed by the coordinator that produced it.

use corex_core::{Hash, NodeId, Signature};
use serde::{Deserialize, Serialize};

use crate::merkle::merkle_root;
use crate::tx::SignedTx;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub height: u64,
    /// The previous block's hash; block 1 links to the genesis hash.
    pub prev: Hash,
    pub timestamp_ms: u64,
    /// Merkle root of the transaction ids, in block order.
    pub tx_root: Hash,
    /// Root of the state after every transaction in the block.
    pub state_root: Hash,
    pub producer: NodeId,
}

impl BlockHeader {
    pub fn hash(&self) -> Hash {
        Hash::of_parts(&[b"corex-block-v1", &crate::canonical(self)])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<SignedTx>,
    /// The producer's signature over the header hash.
    pub signature: Signature,
}

pub fn tx_root(txs: &[SignedTx]) -> Hash {
    let ids: Vec<Hash> = txs.iter().map(SignedTx::id).collect();
    merkle_root(&ids)
}
