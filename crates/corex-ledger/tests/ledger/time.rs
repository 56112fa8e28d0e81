//! Epochs follow ledger time: how much leaves the pool depends on which epochs had work, never
//! on how many blocks, rounds or jobs they held; empty epochs release nothing and their share
//! stays in the pool; vesting and unbonding deadlines pass in ledger time; the pool halves in
//! one half-life of worked epochs.

use corex_core::Hash;
use corex_ledger::{ContributionEntry, TOTAL_SUPPLY, TxBody, Verdict};
use proptest::prelude::*;

use crate::support::{EPOCH_MS, World};

/// Records `units` of compute per node, cut into `pieces` blocks spread over the open epoch,
/// then closes it. Returns the pool after the epoch.
fn work_in_pieces(world: &mut World, units: u128, pieces: u128) -> u128 {
    let epoch_start = world
        .chain
        .genesis()
        .epoch_end_ms(world.chain.state().epoch)
        - EPOCH_MS;
    for piece in 0..pieces {
        let share = units / pieces + if piece == 0 { units % pieces } else { 0 };
        world.time_ms = world.time_ms.max(epoch_start + (piece as u64) * 7);
        let entries: Vec<ContributionEntry> = world
            .nodes
            .iter()
            .map(|node| ContributionEntry::compute(node.id(), share))
            .collect();
        world
            .record(TxBody::RecordContributions {
                entries,
                task_demand: 3 * share,
            })
            .unwrap();
    }
    world.close_epoch();
    world.chain.state().pool
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any number of blocks per epoch (at least one with work) leaves exactly the pool of one
    /// block per epoch.
    #[test]
    fn the_release_does_not_depend_on_how_many_blocks_an_epoch_holds(
        pieces in prop::collection::vec(1u128..12, 1..10),
    ) {
        let mut coarse = World::new(3);
        let mut fine = World::new(3);
        for &cut in &pieces {
            let a = work_in_pieces(&mut coarse, 1_000_000, 1);
            let b = work_in_pieces(&mut fine, 1_000_000, cut);
            prop_assert_eq!(a, b);
            prop_assert_eq!(coarse.chain.state().supply(), fine.chain.state().supply());
        }
        prop_assert_eq!(fine.chain.state().supply().total(), TOTAL_SUPPLY);
    }
}

#[test]
fn an_idle_gap_releases_nothing_but_deadlines_pass() {
    let mut world = World::new(2);
    let node = world.nodes[0].clone();
    work_in_pieces(&mut world, 100, 1);
    let locked = world
        .chain
        .state()
        .account(&node.id())
        .unwrap()
        .locked_total();
    assert!(locked > 0);
    let pool = world.chain.state().pool;
    // Nine epochs pass without a block; the next block settles them all at once.
    let epoch = world.chain.state().epoch;
    world.time_ms = world.chain.genesis().epoch_end_ms(epoch + 8);
    world.record(TxBody::SettleEpoch { epoch }).unwrap();
    let state = world.chain.state();
    assert_eq!(state.epoch, epoch + 9);
    assert_eq!(state.pool, pool, "empty epochs release nothing");
    let account = state.account(&node.id()).unwrap();
    assert_eq!(
        account.balance, locked,
        "the lock window passed in ledger time"
    );
    assert_eq!(account.locked_total(), 0);
}

#[test]
fn the_pool_halves_in_one_half_life_of_worked_epochs() {
    let mut world = World::new(2);
    world.fund_everyone();
    // A staked node does advanced work too, so the whole release leaves the pool.
    let staker = world.nodes[0].clone();
    world
        .submit(&staker, TxBody::Stake { amount: 100 })
        .unwrap();
    let start = world.chain.state().pool;
    // Seven epochs are one half-life at the test rules.
    for _ in 0..7 {
        let entries = world
            .nodes
            .iter()
            .map(|node| ContributionEntry {
                pot_units: 500,
                ..ContributionEntry::compute(node.id(), 1_000)
            })
            .collect();
        world.settle(entries);
    }
    let pool = world.chain.state().pool;
    // The release share is exact to 10⁻¹⁸ per epoch (rounded up), payouts to the base unit.
    assert!(
        pool.abs_diff(start / 2) <= start / 1_000_000_000_000_000,
        "{pool} of {start}"
    );
}

#[test]
fn a_hard_reject_voids_the_unsettled_work_of_the_open_epoch() {
    let mut world = World::new(2);
    let (cheat, honest) = (world.nodes[0].id(), world.nodes[1].id());
    world
        .record(TxBody::RecordContributions {
            entries: vec![
                ContributionEntry::compute(cheat, 10),
                ContributionEntry::compute(honest, 10),
            ],
            task_demand: 20,
        })
        .unwrap();
    world
        .record(TxBody::RecordVerdict {
            node: cheat,
            fragment: Hash::of(b"f"),
            verdict: Verdict::HardReject {
                evidence: Hash::of(b"e"),
            },
        })
        .unwrap();
    world.close_epoch();
    let state = world.chain.state();
    assert_eq!(state.account(&cheat).unwrap().locked_total(), 0);
    assert!(state.account(&honest).unwrap().locked_total() > 0);
}
