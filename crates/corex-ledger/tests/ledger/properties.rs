//! Properties over random sequences of valid and invalid transactions: the total stays exactly
//! 100,000,000 CXT after every block, nothing mints, refused transactions change nothing, and
//! replaying the chain from genesis gives the same state root.

use corex_core::{Hash, Signature};
use corex_ledger::{
    Block, Chain, ContributionEntry, SignedTx, SoftReason, TOTAL_SUPPLY, TxBody, Verdict,
};
use proptest::prelude::*;

use crate::support::{World, key};

#[derive(Debug, Clone)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        percent: u8,
        extra: u8,
    },
    Stake {
        who: usize,
        percent: u8,
    },
    Unbond {
        who: usize,
        percent: u8,
        extra: u8,
    },
    Withdraw {
        who: usize,
    },
    Work {
        units: Vec<u16>,
    },
    /// A block past the end of the open epoch (and `skip` more), with the timer's record.
    Settle {
        skip: u8,
        demand: u16,
    },
    Verdict {
        who: usize,
        kind: u8,
    },
    ForgedSignature {
        who: usize,
    },
    ReplayedNonce {
        who: usize,
    },
    SkippedNonce {
        who: usize,
    },
    UnknownSigner,
    Impostor {
        who: usize,
    },
}

const NODES: usize = 4;

fn op() -> impl Strategy<Value = Op> {
    let who = 0..NODES;
    prop_oneof![
        (who.clone(), 0..NODES, 0u8..=120, 0u8..3).prop_map(|(from, to, percent, extra)| {
            Op::Transfer {
                from,
                to,
                percent,
                extra,
            }
        }),
        (who.clone(), 0u8..=120).prop_map(|(who, percent)| Op::Stake { who, percent }),
        (who.clone(), 0u8..=120, 0u8..3).prop_map(|(who, percent, extra)| Op::Unbond {
            who,
            percent,
            extra
        }),
        who.clone().prop_map(|who| Op::Withdraw { who }),
        prop::collection::vec(0u16..1000, NODES).prop_map(|units| Op::Work { units }),
        (0u8..3, 0u16..500).prop_map(|(skip, demand)| Op::Settle { skip, demand }),
        (who.clone(), 0u8..6).prop_map(|(who, kind)| Op::Verdict { who, kind }),
        who.clone().prop_map(|who| Op::ForgedSignature { who }),
        who.clone().prop_map(|who| Op::ReplayedNonce { who }),
        who.clone().prop_map(|who| Op::SkippedNonce { who }),
        Just(Op::UnknownSigner),
        who.prop_map(|who| Op::Impostor { who }),
    ]
}

/// Turns an op into a transaction against the current state; some are meant to be refused.
fn transaction(world: &World, op: &Op, nonce_offset: &dyn Fn(usize) -> u64) -> SignedTx {
    let state = world.chain.state();
    let node = |i: usize| &world.nodes[i];
    let account = |i: usize| state.account(&node(i).id()).cloned().unwrap_or_default();
    let sign = |i: usize, body: TxBody| {
        SignedTx::sign(
            node(i),
            &world.chain_id(),
            world.next_nonce(node(i)) + nonce_offset(i),
            body,
        )
    };
    let coordinator = |body: TxBody| {
        SignedTx::sign(
            &world.coordinator,
            &world.chain_id(),
            world.next_nonce(&world.coordinator) + nonce_offset(NODES),
            body,
        )
    };
    match op {
        Op::Transfer {
            from,
            to,
            percent,
            extra,
        } => {
            let amount = account(*from).balance * u128::from(*percent) / 100 + u128::from(*extra);
            sign(
                *from,
                TxBody::Transfer {
                    to: node(*to).id(),
                    amount,
                },
            )
        }
        Op::Stake { who, percent } => sign(
            *who,
            TxBody::Stake {
                amount: account(*who).balance * u128::from(*percent) / 100,
            },
        ),
        Op::Unbond {
            who,
            percent,
            extra,
        } => {
            let amount = account(*who).stake * u128::from(*percent) / 100 + u128::from(*extra);
            sign(*who, TxBody::BeginUnbonding { amount })
        }
        Op::Withdraw { who } => sign(*who, TxBody::Withdraw),
        Op::Work { units } => coordinator(TxBody::RecordContributions {
            entries: units
                .iter()
                .enumerate()
                .map(|(i, units)| ContributionEntry {
                    node: node(i).id(),
                    compute_units: u128::from(*units),
                    pot_units: u128::from(*units / 3),
                    verification_units: u128::from(*units / 7),
                    quality_ppm: 500_000 + u32::from(*units) * 500,
                })
                .collect(),
            task_demand: units.iter().map(|u| u128::from(*u)).sum(),
        }),
        Op::Settle { demand, .. } => coordinator(TxBody::RecordContributions {
            entries: vec![],
            task_demand: u128::from(*demand),
        }),
        Op::Verdict { who, kind } => coordinator(TxBody::RecordVerdict {
            node: node(*who).id(),
            fragment: Hash::of(&[*kind]),
            verdict: match kind {
                0 | 1 => Verdict::Accept,
                2 => Verdict::SoftReject {
                    reason: SoftReason::Timeout,
                },
                3 => Verdict::SoftReject {
                    reason: SoftReason::Suspicious,
                },
                _ => Verdict::HardReject {
                    evidence: Hash::of(b"evidence"),
                },
            },
        }),
        Op::ForgedSignature { who } => {
            let mut tx = sign(
                *who,
                TxBody::Transfer {
                    to: node((who + 1) % NODES).id(),
                    amount: 1,
                },
            );
            tx.signature = Signature([9; 64]);
            tx
        }
        Op::ReplayedNonce { who } => SignedTx::sign(
            node(*who),
            &world.chain_id(),
            account(*who).nonce,
            TxBody::Withdraw,
        ),
        Op::SkippedNonce { who } => sign(
            *who,
            TxBody::Transfer {
                to: node(0).id(),
                amount: 0,
            },
        )
        .clone_with_nonce(
            node(*who),
            &world.chain_id(),
            world.next_nonce(node(*who)) + 5,
        ),
        Op::UnknownSigner => {
            SignedTx::sign(&key(77), &world.chain_id(), 1, TxBody::Stake { amount: 1 })
        }
        Op::Impostor { who } => sign(*who, TxBody::SettleEpoch { epoch: state.epoch }),
    }
}

trait Renonce {
    fn clone_with_nonce(&self, key: &corex_core::Keypair, chain: &Hash, nonce: u64) -> SignedTx;
}

impl Renonce for SignedTx {
    fn clone_with_nonce(&self, key: &corex_core::Keypair, chain: &Hash, nonce: u64) -> SignedTx {
        SignedTx::sign(key, chain, nonce, self.body.clone())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn supply_is_conserved_and_replay_is_exact(blocks in prop::collection::vec(prop::collection::vec(op(), 1..5), 1..25)) {
        let mut world = World::new(NODES as u8);
        world.fund_everyone();
        let start = world.chain.clone();
        let mut stored: Vec<Block> = Vec::new();
        for ops in &blocks {
            // Transactions of one signer in one block need consecutive nonces.
            let mut used = [0u64; NODES + 1];
            let mut txs = Vec::new();
            for op in ops {
                let offset = |i: usize| used[i];
                let tx = transaction(&world, op, &offset);
                let slot = world.nodes.iter().position(|k| k.id() == tx.signer).unwrap_or(NODES);
                used[slot] += 1;
                txs.push(tx);
            }
            let before = world.chain.state().clone();
            world.time_ms += 1_000;
            // A settling block lands past the end of the open epoch.
            if let Some(skip) = ops.iter().find_map(|op| match op {
                Op::Settle { skip, .. } => Some(u64::from(*skip)),
                _ => None,
            }) {
                let end = world.chain.genesis().epoch_end_ms(before.epoch + skip);
                world.time_ms = world.time_ms.max(end);
            }
            let proposal = world.chain.propose(&world.coordinator, txs, world.time_ms).unwrap();
            let Some(proposal) = proposal else {
                prop_assert_eq!(world.chain.state(), &before);
                continue;
            };
            let after = proposal.next.state();
            prop_assert_eq!(after.supply().total(), TOTAL_SUPPLY);
            // Nothing mints: the pool only grows by what slashing and voiding returned.
            prop_assert!(after.pool <= before.pool || after.nodes.values().map(|p| p.slashed + p.rewards_voided).sum::<u128>()
                > before.nodes.values().map(|p| p.slashed + p.rewards_voided).sum::<u128>());
            stored.push(proposal.block.clone());
            world.chain = proposal.next;
        }
        let mut replayed: Chain = start;
        for block in &stored {
            replayed.apply_block(block).unwrap();
        }
        prop_assert_eq!(replayed.state().root(), world.chain.state().root());
        prop_assert_eq!(replayed.head(), world.chain.head());
    }
}
