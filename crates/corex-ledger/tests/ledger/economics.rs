//! The rules at work: settlement pays for work, vests after the lock window, slashing reaches
//! unbonding stake and voids locked rewards, repeated hard rejects remove a node.

use corex_core::Hash;
use corex_ledger::{
    ContributionEntry, NodeStatus, SoftReason, TOTAL_SUPPLY, Tier, TxBody, Verdict,
};

use crate::support::World;

#[test]
fn settlement_pays_work_in_proportion_and_vests_after_the_lock() {
    let mut world = World::new(2);
    let entries = [(0usize, 30u128), (1, 10)]
        .iter()
        .map(|(i, units)| ContributionEntry::compute(world.nodes[*i].id(), *units))
        .collect();
    world.settle(entries);
    let state = world.chain.state();
    let a = state.account(&world.nodes[0].id()).unwrap();
    let b = state.account(&world.nodes[1].id()).unwrap();
    assert_eq!(a.balance, 0, "rewards are locked first");
    assert!(a.locked_total().abs_diff(3 * b.locked_total()) <= 3);
    assert_eq!(state.supply().total(), TOTAL_SUPPLY);
    let locked = a.locked_total();
    // The lock is one epoch: the next settlement vests it.
    world.work_epoch(0);
    let a = world.chain.state().account(&world.nodes[0].id()).unwrap();
    assert_eq!(a.balance, locked);
    assert_eq!(
        world.chain.state().nodes[&world.nodes[0].id()].rewards_claimed,
        locked
    );
}

#[test]
fn a_hard_reject_slashes_stake_and_unbonding_voids_locked_rewards_and_resets_reputation() {
    let mut world = World::new(2);
    world.fund_everyone();
    let cheat = world.nodes[0].clone();
    world
        .submit(&cheat, TxBody::Stake { amount: 1_000 })
        .unwrap();
    world
        .submit(&cheat, TxBody::BeginUnbonding { amount: 400 })
        .unwrap();
    world.work_epoch(5); // leaves a locked reward
    let before = world.chain.state().account(&cheat.id()).unwrap().clone();
    assert!(before.locked_total() > 0);
    let pool_before = world.chain.state().pool;
    world
        .record(TxBody::RecordVerdict {
            node: cheat.id(),
            fragment: Hash::of(b"forged"),
            verdict: Verdict::HardReject {
                evidence: Hash::of(b"replay mismatch"),
            },
        })
        .unwrap();
    let state = world.chain.state();
    let after = state.account(&cheat.id()).unwrap();
    assert_eq!(after.stake, 300, "half of 600 staked is slashed");
    assert_eq!(
        after.unbonding_total(),
        200,
        "half of 400 unbonding is slashed"
    );
    assert_eq!(after.locked_total(), 0);
    assert_eq!(state.pool, pool_before + before.locked_total() + 500);
    let profile = &state.nodes[&cheat.id()];
    assert_eq!(profile.score, 0);
    assert_eq!(profile.tier(&world.chain.genesis().params), Tier::Probation);
    assert_eq!(profile.hard_rejects, 1);
    assert_eq!(state.supply().total(), TOTAL_SUPPLY);
}

#[test]
fn repeated_hard_rejects_remove_a_node_and_its_work_is_no_longer_recorded() {
    let mut world = World::new(2);
    let cheat = world.nodes[0].id();
    for i in 0..3u8 {
        world
            .record(TxBody::RecordVerdict {
                node: cheat,
                fragment: Hash::of(&[i]),
                verdict: Verdict::HardReject {
                    evidence: Hash::of(&[i, i]),
                },
            })
            .unwrap();
    }
    assert_eq!(
        world.chain.state().nodes[&cheat].status,
        NodeStatus::Removed
    );
    let refused = world.record(TxBody::RecordContributions {
        entries: vec![ContributionEntry::compute(cheat, 1)],
        task_demand: 1,
    });
    assert!(refused.is_err());
}

#[test]
fn soft_rejects_only_cost_score_and_suspicious_ones_count_as_abnormal() {
    let mut world = World::new(1);
    let node = world.nodes[0].id();
    for reason in [SoftReason::Timeout, SoftReason::Suspicious] {
        world
            .record(TxBody::RecordVerdict {
                node,
                fragment: Hash::of(b"f"),
                verdict: Verdict::SoftReject { reason },
            })
            .unwrap();
    }
    world
        .record(TxBody::RecordVerdict {
            node,
            fragment: Hash::of(b"g"),
            verdict: Verdict::Accept,
        })
        .unwrap();
    let profile = &world.chain.state().nodes[&node];
    assert_eq!(profile.failures, 2);
    assert_eq!(profile.abnormal_events, 1);
    assert_eq!(profile.tasks_done, 1);
    assert_eq!(profile.score, 500 - 2 - 20 + 1);
    assert_eq!(profile.failure_rate_ppm(), 666_666);
    assert_eq!(profile.status, NodeStatus::Active);
}

#[test]
fn staking_raises_reward_weight_sublinearly_but_alone_earns_nothing() {
    let mut world = World::new(3);
    world.fund_everyone();
    let (staker, plain, idle) = (
        world.nodes[0].clone(),
        world.nodes[1].clone(),
        world.nodes[2].clone(),
    );
    let big = world.balance(&staker) / 2;
    world
        .submit(&staker, TxBody::Stake { amount: big })
        .unwrap();
    world
        .submit(
            &idle,
            TxBody::Stake {
                amount: world.balance(&idle) / 2,
            },
        )
        .unwrap();
    let locked = |w: &World, k: &corex_core::Keypair| {
        w.chain.state().account(&k.id()).unwrap().locked_total()
    };
    let entries = [&staker, &plain]
        .iter()
        .map(|k| ContributionEntry::compute(k.id(), 10))
        .collect();
    world.settle(entries);
    // Earlier rewards vested at this settlement, so what is locked now is this epoch's pay.
    let staker_reward = locked(&world, &staker);
    let plain_reward = locked(&world, &plain);
    assert!(staker_reward > plain_reward, "stake boosts the same work");
    assert!(
        staker_reward <= 2 * plain_reward + 2,
        "the boost is capped at 2x"
    );
    assert_eq!(locked(&world, &idle), 0, "stake without work earns nothing");
}
