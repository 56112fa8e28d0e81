//! The chain: genesis, the current state and the head. Blocks are proposed on a copy of the
//! state and adopted only after the caller has stored them; replayed blocks are checked in
//! full (producer signature, link, height, time, transaction root, every transaction, state
//! root) and applied all or nothing. Every block, proposed or replayed, first settles the
//! epochs its timestamp has passed (`State::advance_to`), then applies its transactions.

use corex_core::{Hash, Keypair};

use crate::block::{Block, BlockHeader, tx_root};
use crate::error::LedgerError;
use crate::params::Genesis;
use crate::state::State;
use crate::tx::{SignedTx, TxBody, verify_batch};

#[derive(Debug, Clone)]
pub struct Chain {
    genesis: Genesis,
    genesis_hash: Hash,
    state: State,
    head: Hash,
    height: u64,
    timestamp_ms: u64,
}

/// A transaction left out of a proposed block, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub tx: SignedTx,
    pub error: LedgerError,
}

/// Records left out of a block, by their index among the bodies given, and why.
pub type LeftOut = Vec<(usize, LedgerError)>;

/// A block and the chain as it will be once the block is stored.
#[derive(Debug)]
pub struct Proposal {
    pub block: Block,
    pub next: Chain,
    pub refused: Vec<Refused>,
}

impl Chain {
    pub fn new(genesis: Genesis) -> Result<Self, LedgerError> {
        genesis.params.validate()?;
        let genesis_hash = genesis.hash();
        Ok(Self {
            state: State::genesis(&genesis),
            head: genesis_hash,
            height: 0,
            timestamp_ms: genesis.timestamp_ms,
            genesis_hash,
            genesis,
        })
    }

    /// The chain as it stood after the block `header` heads, resumed from that block's stored
    /// state (a snapshot): `state` must hash to the header's state root, so a resumed chain is
    /// the replayed one. The blocks up to it are not checked again (a full audit replays them).
    pub fn resume(
        genesis: Genesis,
        state: State,
        header: &BlockHeader,
    ) -> Result<Self, LedgerError> {
        genesis.params.validate()?;
        let replayed = state.root();
        if replayed != header.state_root {
            return Err(LedgerError::BadStateRoot {
                height: header.height,
                claimed: header.state_root,
                replayed,
            });
        }
        Ok(Self {
            genesis_hash: genesis.hash(),
            genesis,
            state,
            head: header.hash(),
            height: header.height,
            timestamp_ms: header.timestamp_ms,
        })
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The chain id every transaction signs over.
    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn head(&self) -> Hash {
        self.head
    }

    pub fn height(&self) -> u64 {
        self.height
    }

    /// The head block's timestamp (the genesis timestamp before block 1).
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// Whether a block at `timestamp_ms` would settle an epoch with work, or vest a reward.
    pub fn settlement_due(&self, timestamp_ms: u64) -> bool {
        self.state
            .settlement_due(&self.genesis, timestamp_ms.max(self.timestamp_ms))
    }

    /// Would `tx` apply now? Checks on a copy; the chain is untouched.
    pub fn check(&self, tx: &SignedTx) -> Result<(), LedgerError> {
        self.state
            .clone()
            .apply(&self.genesis, &self.genesis_hash, tx)
    }

    /// Builds the next block from `candidates` in order, leaving out (and reporting) those that
    /// do not apply. `None` if none applies. `self` is unchanged: adopt `next` once stored.
    pub fn propose(
        &self,
        producer: &Keypair,
        candidates: Vec<SignedTx>,
        timestamp_ms: u64,
    ) -> Result<Option<Proposal>, LedgerError> {
        if producer.id() != self.genesis.coordinator {
            return Err(LedgerError::NotCoordinator(producer.id()));
        }
        let timestamp_ms = timestamp_ms.max(self.timestamp_ms);
        let mut state = self.state.clone();
        state.advance_to(&self.genesis, timestamp_ms)?;
        let signatures_ok = verify_batch(&self.genesis_hash, &candidates).is_ok();
        let mut accepted = Vec::with_capacity(candidates.len());
        let mut refused = Vec::new();
        for tx in candidates {
            let applied = if signatures_ok {
                state.apply_verified(&self.genesis, &tx)
            } else {
                state.apply(&self.genesis, &self.genesis_hash, &tx)
            };
            match applied {
                Ok(()) => accepted.push(tx),
                Err(error) => refused.push(Refused { tx, error }),
            }
        }
        if accepted.is_empty() {
            return Ok(None);
        }
        self.seal(producer, state, accepted, refused, timestamp_ms)
            .map(Some)
    }

    /// Builds the next block from the producer's own records: each body is signed with the
    /// producer's next nonce as it is included, so a body that does not apply is left out
    /// (and reported with its index) without breaking the nonces of the ones after it.
    pub fn propose_records(
        &self,
        producer: &Keypair,
        bodies: Vec<TxBody>,
        timestamp_ms: u64,
    ) -> Result<(Option<Proposal>, LeftOut), LedgerError> {
        if producer.id() != self.genesis.coordinator {
            return Err(LedgerError::NotCoordinator(producer.id()));
        }
        let timestamp_ms = timestamp_ms.max(self.timestamp_ms);
        let mut state = self.state.clone();
        state.advance_to(&self.genesis, timestamp_ms)?;
        let mut nonce = state.account(&producer.id()).map_or(0, |a| a.nonce);
        let mut accepted = Vec::with_capacity(bodies.len());
        let mut left_out = Vec::new();
        for (index, body) in bodies.into_iter().enumerate() {
            let tx = SignedTx::sign(producer, &self.genesis_hash, nonce + 1, body);
            match state.apply_verified(&self.genesis, &tx) {
                Ok(()) => {
                    nonce += 1;
                    accepted.push(tx);
                }
                Err(error) => left_out.push((index, error)),
            }
        }
        if accepted.is_empty() {
            return Ok((None, left_out));
        }
        let proposal = self.seal(producer, state, accepted, Vec::new(), timestamp_ms)?;
        Ok((Some(proposal), left_out))
    }

    /// Signs the block of `accepted` (already applied to `state`, advanced to `timestamp_ms`,
    /// which is not before the head's) and the chain after it.
    fn seal(
        &self,
        producer: &Keypair,
        state: State,
        accepted: Vec<SignedTx>,
        refused: Vec<Refused>,
        timestamp_ms: u64,
    ) -> Result<Proposal, LedgerError> {
        state.check_supply()?;
        let header = BlockHeader {
            height: self.height + 1,
            prev: self.head,
            timestamp_ms,
            tx_root: tx_root(&accepted),
            state_root: state.root(),
            producer: producer.id(),
        };
        let hash = header.hash();
        let block = Block {
            signature: producer.sign(hash.as_bytes()),
            header,
            txs: accepted,
        };
        let next = Self {
            genesis: self.genesis.clone(),
            genesis_hash: self.genesis_hash,
            state,
            head: hash,
            height: block.header.height,
            timestamp_ms: block.header.timestamp_ms,
        };
        Ok(Proposal {
            block,
            next,
            refused,
        })
    }

    /// Checks `block` in full against the head and applies it; on any error the chain is
    /// unchanged.
    pub fn apply_block(&mut self, block: &Block) -> Result<(), LedgerError> {
        let header = &block.header;
        let height = header.height;
        if height != self.height + 1 {
            return Err(LedgerError::BadHeight {
                expected: self.height + 1,
                got: height,
            });
        }
        if header.prev != self.head {
            return Err(LedgerError::BadPrevHash {
                height,
                expected: self.head,
            });
        }
        if header.producer != self.genesis.coordinator {
            return Err(LedgerError::BadProducer { height });
        }
        let hash = header.hash();
        header
            .producer
            .verify(hash.as_bytes(), &block.signature)
            .map_err(|_| LedgerError::BadBlockSignature { height })?;
        if header.timestamp_ms < self.timestamp_ms {
            return Err(LedgerError::TimestampBackwards { height });
        }
        if header.tx_root != tx_root(&block.txs) {
            return Err(LedgerError::BadTxRoot { height });
        }
        let batch_ok = verify_batch(&self.genesis_hash, &block.txs).is_ok();
        let mut state = self.state.clone();
        state
            .advance_to(&self.genesis, header.timestamp_ms)
            .map_err(|error| LedgerError::BlockTx {
                height,
                index: 0,
                error: Box::new(error),
            })?;
        for (index, tx) in block.txs.iter().enumerate() {
            let applied = if batch_ok {
                state.apply_verified(&self.genesis, tx)
            } else {
                state.apply(&self.genesis, &self.genesis_hash, tx)
            };
            applied.map_err(|error| LedgerError::BlockTx {
                height,
                index,
                error: Box::new(error),
            })?;
        }
        state.check_supply()?;
        let replayed = state.root();
        if replayed != header.state_root {
            return Err(LedgerError::BadStateRoot {
                height,
                claimed: header.state_root,
                replayed,
            });
        }
        self.state = state;
        self.head = hash;
        self.height = height;
        self.timestamp_ms = header.timestamp_ms;
        Ok(())
    }
}
