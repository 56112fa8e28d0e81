//! Every invalid transaction is refused with a clear error and changes nothing.

use corex_core::{Hash, Signature};
use corex_ledger::{ContributionEntry, LedgerError, SignedTx, TxBody, Verdict};

use crate::support::{World, key};

/// Applies `tx` directly to a copy of the state and checks that the refusal left it equal.
fn refused(world: &World, tx: &SignedTx) -> LedgerError {
    let before = world.chain.state().clone();
    let mut state = before.clone();
    let error = state
        .apply(world.chain.genesis(), &world.chain_id(), tx)
        .unwrap_err();
    assert_eq!(
        state, before,
        "a refused transaction changed the state: {error}"
    );
    assert!(!error.to_string().is_empty());
    error
}

fn funded() -> World {
    let mut world = World::new(3);
    world.fund_everyone();
    world
}

#[test]
fn a_bad_signature_is_refused() {
    let world = funded();
    let (alice, bob) = (&world.nodes[0], &world.nodes[1]);
    let mut tx = world.signed(
        alice,
        TxBody::Transfer {
            to: bob.id(),
            amount: 1,
        },
    );
    tx.signature = Signature([7; 64]);
    assert_eq!(refused(&world, &tx), LedgerError::BadSignature(alice.id()));
    // A valid signature over other contents is as bad as a forged one.
    let mut altered = world.signed(
        alice,
        TxBody::Transfer {
            to: bob.id(),
            amount: 1,
        },
    );
    altered.body = TxBody::Transfer {
        to: bob.id(),
        amount: 2,
    };
    assert_eq!(
        refused(&world, &altered),
        LedgerError::BadSignature(alice.id())
    );
    // A signature made for another chain does not verify here.
    let foreign = SignedTx::sign(
        alice,
        &Hash::of(b"another chain"),
        world.next_nonce(alice),
        TxBody::Withdraw,
    );
    assert_eq!(
        refused(&world, &foreign),
        LedgerError::BadSignature(alice.id())
    );
}

#[test]
fn nobody_signs_for_a_small_order_key() {
    let world = funded();
    // The identity point as a key: (R = identity, s = 0) passes a lenient check for every
    // message, so anyone could spend what such an account holds.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut forged = [0u8; 64];
    forged[0] = 1;
    let weak = corex_core::NodeId(identity);
    let tx = SignedTx {
        signer: weak,
        nonce: 1,
        body: TxBody::Transfer {
            to: world.nodes[0].id(),
            amount: 1,
        },
        signature: Signature(forged),
    };
    assert_eq!(refused(&world, &tx), LedgerError::BadSignature(weak));
    assert_eq!(
        corex_ledger::verify_batch(&world.chain_id(), &[tx]),
        Err(LedgerError::BadSignature(weak))
    );
}

#[test]
fn replayed_and_skipped_nonces_are_refused() {
    let mut world = funded();
    let (alice, bob) = (world.nodes[0].clone(), world.nodes[1].id());
    let tx = world.signed(&alice, TxBody::Transfer { to: bob, amount: 5 });
    world.commit(vec![tx.clone()]).unwrap();
    assert!(matches!(
        refused(&world, &tx),
        LedgerError::NonceReplayed { .. }
    ));
    let ahead = SignedTx::sign(
        &alice,
        &world.chain_id(),
        world.next_nonce(&alice) + 1,
        TxBody::Transfer { to: bob, amount: 5 },
    );
    assert!(matches!(
        refused(&world, &ahead),
        LedgerError::NonceSkipped { .. }
    ));
}

#[test]
fn overdrafts_are_refused() {
    let world = funded();
    let (alice, bob) = (&world.nodes[0], &world.nodes[1]);
    let balance = world.balance(alice);
    let tx = world.signed(
        alice,
        TxBody::Transfer {
            to: bob.id(),
            amount: balance + 1,
        },
    );
    assert_eq!(
        refused(&world, &tx),
        LedgerError::Overdraft {
            balance,
            amount: balance + 1
        }
    );
    let stake = world.signed(
        alice,
        TxBody::Stake {
            amount: balance + 1,
        },
    );
    assert!(matches!(
        refused(&world, &stake),
        LedgerError::Overdraft { .. }
    ));
    let zero = world.signed(
        alice,
        TxBody::Transfer {
            to: bob.id(),
            amount: 0,
        },
    );
    assert_eq!(refused(&world, &zero), LedgerError::ZeroAmount);
}

#[test]
fn unstaking_more_than_staked_is_refused() {
    let mut world = funded();
    let alice = world.nodes[0].clone();
    world.submit(&alice, TxBody::Stake { amount: 100 }).unwrap();
    let tx = world.signed(&alice, TxBody::BeginUnbonding { amount: 101 });
    assert_eq!(
        refused(&world, &tx),
        LedgerError::UnstakeTooMuch {
            stake: 100,
            amount: 101
        }
    );
}

#[test]
fn withdrawing_before_unbonding_ends_is_refused() {
    let mut world = funded();
    let alice = world.nodes[0].clone();
    world.submit(&alice, TxBody::Stake { amount: 100 }).unwrap();
    world
        .submit(&alice, TxBody::BeginUnbonding { amount: 60 })
        .unwrap();
    let epoch = world.chain.state().epoch;
    let tx = world.signed(&alice, TxBody::Withdraw);
    assert_eq!(
        refused(&world, &tx),
        LedgerError::UnbondingNotDone {
            epoch,
            earliest: Some(epoch + 2)
        }
    );
    world.close_epoch();
    assert!(matches!(
        refused(&world, &world.signed(&alice, TxBody::Withdraw)),
        LedgerError::UnbondingNotDone { .. }
    ));
    world.close_epoch();
    let before = world.balance(&alice);
    world.submit(&alice, TxBody::Withdraw).unwrap();
    assert_eq!(world.balance(&alice), before + 60);
}

#[test]
fn unknown_accounts_and_nodes_are_refused() {
    let world = funded();
    let stranger = key(99);
    let tx = SignedTx::sign(
        &stranger,
        &world.chain_id(),
        1,
        TxBody::Transfer {
            to: world.nodes[0].id(),
            amount: 1,
        },
    );
    assert_eq!(
        refused(&world, &tx),
        LedgerError::UnknownAccount(stranger.id())
    );
    let record = world.signed(
        &world.coordinator,
        TxBody::RecordContributions {
            entries: vec![ContributionEntry::compute(stranger.id(), 1)],
            task_demand: 1,
        },
    );
    assert_eq!(
        refused(&world, &record),
        LedgerError::NotANode(stranger.id())
    );
    let again = world.signed(
        &world.nodes[0],
        TxBody::RegisterNode {
            device_fingerprint: Hash::of(b"x"),
            device_class: corex_ledger::DeviceClass::Gpu,
        },
    );
    assert_eq!(
        refused(&world, &again),
        LedgerError::AlreadyRegistered(world.nodes[0].id())
    );
}

#[test]
fn records_not_signed_by_the_coordinator_are_refused() {
    let world = funded();
    let impostor = &world.nodes[0];
    let epoch = world.chain.state().epoch;
    for body in [
        TxBody::SettleEpoch { epoch },
        TxBody::RecordVerdict {
            node: world.nodes[1].id(),
            fragment: Hash::of(b"f"),
            verdict: Verdict::HardReject {
                evidence: Hash::of(b"e"),
            },
        },
        TxBody::RecordRound {
            job: Hash::of(b"j"),
            round: 0,
            model: Hash::of(b"m"),
            results_root: Hash::of(b"r"),
            audit_seed: Hash::of(b"s"),
        },
        TxBody::CommitAuditChain {
            anchor: Hash::of(b"a"),
        },
        TxBody::RevealAuditSeed {
            job: Hash::of(b"j"),
            seed: Hash::of(b"s"),
        },
        TxBody::RecordContributions {
            entries: vec![],
            task_demand: 0,
        },
    ] {
        let tx = world.signed(impostor, body);
        assert_eq!(
            refused(&world, &tx),
            LedgerError::NotCoordinator(impostor.id())
        );
    }
}

#[test]
fn out_of_order_records_are_refused() {
    let mut world = funded();
    let epoch = world.chain.state().epoch;
    let early = world.signed(&world.coordinator, TxBody::SettleEpoch { epoch });
    assert_eq!(
        refused(&world, &early),
        LedgerError::EpochNotOver {
            epoch,
            ends_ms: world.chain.genesis().epoch_end_ms(epoch)
        }
    );
    let job = Hash::of(b"job");
    let chain = corex_verify::SeedChain::new([3; 32], 4);
    let seed = |k: usize| chain.reveal(k).unwrap();
    let reveal = |k: usize| TxBody::RevealAuditSeed { job, seed: seed(k) };
    let round = |round: u32, k: usize| TxBody::RecordRound {
        job,
        round,
        model: Hash::of(b"m"),
        results_root: Hash::of(b"r"),
        audit_seed: seed(k),
    };
    let unanchored = world.signed(&world.coordinator, reveal(1));
    assert_eq!(
        refused(&world, &unanchored),
        LedgerError::AuditSeedOutOfOrder { seed: seed(1) }
    );
    world
        .record(TxBody::CommitAuditChain {
            anchor: chain.anchor(),
        })
        .unwrap();
    let skipping = world.signed(&world.coordinator, reveal(2));
    assert_eq!(
        refused(&world, &skipping),
        LedgerError::AuditSeedOutOfOrder { seed: seed(2) }
    );
    let unrevealed = world.signed(&world.coordinator, round(3, 1));
    assert_eq!(
        refused(&world, &unrevealed),
        LedgerError::AuditSeedBroken { round: 3 }
    );
    world.record(reveal(1)).unwrap();
    world.record(round(3, 1)).unwrap();
    let reused = world.signed(&world.coordinator, round(4, 1));
    assert_eq!(
        refused(&world, &reused),
        LedgerError::AuditSeedBroken { round: 4 }
    );
    world.record(reveal(2)).unwrap();
    let replay = world.signed(&world.coordinator, round(3, 2));
    assert!(matches!(
        refused(&world, &replay),
        LedgerError::RoundOutOfOrder {
            last: 3,
            got: 3,
            ..
        }
    ));
    world.record(round(4, 2)).unwrap();
}

#[test]
fn a_block_with_one_bad_transaction_commits_only_the_good_ones() {
    let world = funded();
    let (alice, bob) = (&world.nodes[0], &world.nodes[1]);
    let good = world.signed(
        alice,
        TxBody::Transfer {
            to: bob.id(),
            amount: 3,
        },
    );
    let mut bad = world.signed(
        bob,
        TxBody::Transfer {
            to: alice.id(),
            amount: 3,
        },
    );
    bad.signature = Signature([1; 64]);
    let proposal = world
        .chain
        .propose(&world.coordinator, vec![bad.clone(), good.clone()], 999_999)
        .unwrap()
        .unwrap();
    assert_eq!(proposal.block.txs, vec![good]);
    assert_eq!(proposal.refused.len(), 1);
    assert_eq!(
        proposal.refused[0].error,
        LedgerError::BadSignature(bob.id())
    );
}

#[test]
fn transactions_survive_their_json_form() {
    let world = funded();
    let tx = world.signed(
        &world.nodes[0],
        TxBody::Transfer {
            to: world.nodes[1].id(),
            amount: u128::MAX,
        },
    );
    let json = serde_json::to_string(&tx).unwrap();
    assert!(json.contains(&format!("\"{}\"", u128::MAX)), "{json}");
    let back: SignedTx = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tx);
    back.verify_signature(&world.chain_id()).unwrap();
    assert!(
        serde_json::from_str::<SignedTx>(&json.replace(&u128::MAX.to_string(), "12x")).is_err()
    );
}

#[test]
fn records_that_no_longer_apply_are_left_out_and_the_rest_keep_their_nonces() {
    let world = funded();
    let cheat = world.nodes[0].id();
    let hard = |i: u8| TxBody::RecordVerdict {
        node: cheat,
        fragment: Hash::of(&[i]),
        verdict: Verdict::HardReject {
            evidence: Hash::of(&[i, i]),
        },
    };
    // The third hard reject removes the node, so the fourth verdict on it cannot apply.
    let bodies = vec![
        hard(1),
        hard(2),
        hard(3),
        hard(4),
        TxBody::RecordVerdict {
            node: world.nodes[1].id(),
            fragment: Hash::of(b"ok"),
            verdict: Verdict::Accept,
        },
    ];
    let (proposal, left_out) = world
        .chain
        .propose_records(&world.coordinator, bodies, 999_999)
        .unwrap();
    assert_eq!(left_out.len(), 1);
    assert_eq!(left_out[0], (3, LedgerError::NodeRemoved(cheat)));
    let proposal = proposal.unwrap();
    assert_eq!(proposal.block.txs.len(), 4);
    let first = world.next_nonce(&world.coordinator);
    let nonces: Vec<u64> = proposal.block.txs.iter().map(|tx| tx.nonce).collect();
    assert_eq!(nonces, vec![first, first + 1, first + 2, first + 3]);
    let mut replayed = world.chain.clone();
    replayed.apply_block(&proposal.block).unwrap();
    assert_eq!(replayed.state().root(), proposal.next.state().root());
}
