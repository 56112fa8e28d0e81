//! Audit seeds on the ledger: reveals in chain order, each claimed by its job's round, the
//! next chain's anchor committed before the old chain runs out, and rounds of concurrent jobs
//! recorded in any order.

use corex_core::Hash;
use corex_ledger::{LedgerError, TxBody};
use corex_verify::SeedChain;

use crate::support::World;

fn reveal(job: &Hash, seed: Hash) -> TxBody {
    TxBody::RevealAuditSeed { job: *job, seed }
}

fn round(job: &Hash, round: u32, seed: Hash) -> TxBody {
    TxBody::RecordRound {
        job: *job,
        round,
        model: Hash::of(&round.to_le_bytes()),
        results_root: Hash::of(b"results"),
        audit_seed: seed,
    }
}

#[test]
fn rounds_after_a_chain_roll_over_are_accepted() {
    let mut world = World::new(1);
    let job = Hash::of(b"job");
    let first = SeedChain::new([1; 32], 2);
    let second = SeedChain::new([2; 32], 2);
    world
        .record(TxBody::CommitAuditChain {
            anchor: first.anchor(),
        })
        .unwrap();
    world
        .record(reveal(&job, first.reveal(1).unwrap()))
        .unwrap();
    // The successor is committed while the first chain still has a reveal left.
    world
        .record(TxBody::CommitAuditChain {
            anchor: second.anchor(),
        })
        .unwrap();
    world
        .record(round(&job, 0, first.reveal(1).unwrap()))
        .unwrap();
    world
        .record(reveal(&job, first.reveal(2).unwrap()))
        .unwrap();
    world
        .record(round(&job, 1, first.reveal(2).unwrap()))
        .unwrap();
    for (k, number) in [(1usize, 2u32), (2, 3)] {
        world
            .record(reveal(&job, second.reveal(k).unwrap()))
            .unwrap();
        world
            .record(round(&job, number, second.reveal(k).unwrap()))
            .unwrap();
    }
    let audit = &world.chain.state().audit;
    assert_eq!(audit.current, Some(second.reveal(2).unwrap()));
    assert_eq!(audit.next_anchor, None);
    assert!(audit.pending.is_empty());
    // A chain nobody committed is refused.
    let stranger = SeedChain::new([3; 32], 2);
    assert!(matches!(
        world.record(reveal(&job, stranger.reveal(1).unwrap())),
        Err(LedgerError::AuditSeedOutOfOrder { .. })
    ));
}

#[test]
fn concurrent_jobs_close_rounds_in_any_order() {
    let mut world = World::new(1);
    let (a, b) = (Hash::of(b"a"), Hash::of(b"b"));
    let chain = SeedChain::new([4; 32], 8);
    world
        .record(TxBody::CommitAuditChain {
            anchor: chain.anchor(),
        })
        .unwrap();
    // A's round is planned first, B's second; B's closes first.
    world.record(reveal(&a, chain.reveal(1).unwrap())).unwrap();
    world.record(reveal(&b, chain.reveal(2).unwrap())).unwrap();
    world
        .record(round(&b, 0, chain.reveal(2).unwrap()))
        .unwrap();
    world.record(reveal(&b, chain.reveal(3).unwrap())).unwrap();
    world
        .record(round(&b, 1, chain.reveal(3).unwrap()))
        .unwrap();
    world
        .record(round(&a, 0, chain.reveal(1).unwrap()))
        .unwrap();
    // A seed revealed for one job cannot judge another's round.
    world.record(reveal(&a, chain.reveal(4).unwrap())).unwrap();
    assert_eq!(
        world.record(round(&b, 2, chain.reveal(4).unwrap())),
        Err(LedgerError::AuditSeedBroken { round: 2 })
    );
}

#[test]
fn a_restarted_coordinator_moves_to_its_new_chain() {
    let mut world = World::new(1);
    let job = Hash::of(b"job");
    let before = SeedChain::new([5; 32], 100);
    let after = SeedChain::new([6; 32], 100);
    world
        .record(TxBody::CommitAuditChain {
            anchor: before.anchor(),
        })
        .unwrap();
    world
        .record(reveal(&job, before.reveal(1).unwrap()))
        .unwrap();
    world
        .record(TxBody::CommitAuditChain {
            anchor: after.anchor(),
        })
        .unwrap();
    let next_job = Hash::of(b"next");
    world
        .record(reveal(&next_job, after.reveal(1).unwrap()))
        .unwrap();
    world
        .record(round(&next_job, 0, after.reveal(1).unwrap()))
        .unwrap();
    // The abandoned chain is behind: its next reveal no longer follows.
    assert!(matches!(
        world.record(reveal(&job, before.reveal(2).unwrap())),
        Err(LedgerError::AuditSeedOutOfOrder { .. })
    ));
}
