//! A node's error feedback in jobs whose updates are compressed (see
//! `corex_core::compression`): the state it carries from one result to the next, per job, and
//! the states of its recent results, which an audit may ask it to reveal.
//!
//! A result sends `C(v)` for `v = Δ + β·e` (`β` the policy's `feedback_decay`) and commits to
//! the roots of `e` and `e' = v − D(C(v))` (Merkle trees over leaves of
//! `corex_core::feedback_state::LEAF_VALUES` values), so that an audit can open a sample of
//! leaves. Each state is kept with its root, so a result's "before" is not hashed again.
//! The node moves on to `e'` only once the coordinator has taken the result; a result refused
//! leaves the state as it was. When the coordinator says the chain is broken (it restarted and
//! knows no state of this node), the node starts again from zeros, losing only what it had not
//! sent yet.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use corex_core::Hash;
use corex_core::compression::{CompressionSpec, FeedbackCommitment, compress_with_feedback};
use corex_core::feedback_state::{StatePaths, leaf_count, leaf_range, state_paths, state_root};
use corex_core::tensor::f32s_to_bytes;

use crate::error::NodeError;

/// Rounds whose results' states are kept for reveals: an audit asks while its round's audits
/// run, before the next round closes, so the current round and the one before are enough.
const REVEALABLE_ROUNDS: u32 = 2;

/// A compressed result ready to go: its bytes and commitment, and the states behind them.
pub(crate) struct CompressedUpdate {
    pub(crate) bytes: Vec<u8>,
    pub(crate) feedback: FeedbackCommitment,
    before: Arc<Vec<f32>>,
    after: Arc<Vec<f32>>,
}

/// The error-feedback state a result starts from: zeros (a job's first result, or after a
/// restart), or the state the coordinator last took, with its root.
pub(crate) enum StartingState {
    Zeros(usize),
    Taken { state: Arc<Vec<f32>>, root: Hash },
}

/// Compresses `update` under `spec` from `before` (CPU work: off the async threads). With
/// `claim_empty` (the false-feedback adversary) the state after is claimed to be zeros.
pub(crate) fn compress_from(
    before: StartingState,
    update: &[f32],
    spec: &CompressionSpec,
    claim_empty: bool,
) -> Result<CompressedUpdate, NodeError> {
    let (before, before_root) = match before {
        StartingState::Taken { state, root } => (state, root),
        StartingState::Zeros(len) => {
            let zeros = vec![0.0; len];
            let root = state_root(&zeros);
            (Arc::new(zeros), root)
        }
    };
    let (bytes, after) = compress_with_feedback(update, &before, spec)
        .map_err(|error| NodeError::Compute(error.to_string()))?;
    let after = match claim_empty {
        true => vec![0.0; after.len()],
        false => after,
    };
    let feedback = FeedbackCommitment {
        before: before_root,
        after: state_root(&after),
    };
    Ok(CompressedUpdate {
        bytes,
        feedback,
        before,
        after: Arc::new(after),
    })
}

/// A result's job, round and fragment, and its states before and after.
struct Revealable {
    job: Hash,
    round: u32,
    fragment: Hash,
    before: Arc<Vec<f32>>,
    after: Arc<Vec<f32>>,
}

/// Each job's current state and the states of recent results.
#[derive(Default)]
pub(crate) struct FeedbackStore {
    /// The state the next result of each job starts from (absent: zeros), with its root.
    current: HashMap<Hash, (Arc<Vec<f32>>, Hash)>,
    /// The results taken in the last rounds of each job, oldest first.
    revealable: VecDeque<Revealable>,
}

impl FeedbackStore {
    /// The state `job`'s next result of `len` values starts from: the state the coordinator
    /// last took, or zeros (made and hashed by [`compress_from`], off the async threads).
    pub(crate) fn starting_state(&self, job: &Hash, len: usize) -> StartingState {
        match self.current.get(job) {
            Some((state, root)) if state.len() == len => StartingState::Taken {
                state: state.clone(),
                root: *root,
            },
            _ => StartingState::Zeros(len),
        }
    }

    /// The coordinator took `update` for `fragment` (of `job`'s round `round`): its state after
    /// becomes the job's current state, and both stay revealable until the job is
    /// [`REVEALABLE_ROUNDS`] rounds further on.
    pub(crate) fn taken(
        &mut self,
        job: Hash,
        round: u32,
        fragment: Hash,
        update: &CompressedUpdate,
    ) {
        self.current
            .insert(job, (update.after.clone(), update.feedback.after));
        self.revealable
            .retain(|kept| kept.job != job || kept.round + REVEALABLE_ROUNDS > round);
        self.revealable.push_back(Revealable {
            job,
            round,
            fragment,
            before: update.before.clone(),
            after: update.after.clone(),
        });
    }

    /// The coordinator knows no state of this node in `job`: start again from zeros.
    pub(crate) fn restart(&mut self, job: &Hash) {
        self.current.remove(job);
    }

    /// Leaves `leaves` of the states before and after this node's result for `fragment`, as
    /// revealed: f32 little-endian, those of `before` then those of `after`, with their paths;
    /// `None` once they are no longer kept (or for leaves the states do not have).
    pub(crate) fn reveal(&self, fragment: &Hash, leaves: &[u32]) -> Option<(Vec<u8>, StatePaths)> {
        let kept = self
            .revealable
            .iter()
            .find(|kept| kept.fragment == *fragment)?;
        let len = kept.before.len();
        if leaves
            .iter()
            .any(|index| *index as usize >= leaf_count(len))
        {
            return None;
        }
        let mut bytes = Vec::new();
        for state in [&kept.before, &kept.after] {
            for index in leaves {
                let range = leaf_range(len, *index);
                bytes.extend_from_slice(&f32s_to_bytes(&state[range]));
            }
        }
        let paths = StatePaths {
            before: state_paths(&kept.before, leaves),
            after: state_paths(&kept.after, leaves),
        };
        Some((bytes, paths))
    }
}

#[cfg(test)]
mod tests {
    use corex_core::compression::decode;

    use super::*;

    const POLICY: CompressionSpec = CompressionSpec::TopK {
        chunk: 64,
        k: 4,
        bits: 2,
        feedback_decay: 1.0,
    };

    /// An honest node's compression of `update` from `job`'s starting state in `store`.
    fn compress(store: &FeedbackStore, job: &Hash, update: &[f32]) -> CompressedUpdate {
        compress_from(
            store.starting_state(job, update.len()),
            update,
            &POLICY,
            false,
        )
        .unwrap()
    }

    #[test]
    fn a_state_moves_on_only_once_taken_and_restarts_from_zeros() {
        let mut store = FeedbackStore::default();
        let job = Hash::of(b"job");
        // Three leaves, the last one shorter.
        let len = 2 * corex_core::feedback_state::LEAF_VALUES + 176;
        let update: Vec<f32> = (0..len)
            .map(|i| ((i as f32) * 0.37).sin() / 100.0)
            .collect();
        let first = compress(&store, &job, &update);
        assert_eq!(first.feedback.before, state_root(&vec![0.0; len]));
        // Not taken: the next result starts from zeros again.
        let again = compress(&store, &job, &update);
        assert_eq!(again.feedback, first.feedback);
        store.taken(job, 0, Hash::of(b"f1"), &first);
        let second = compress(&store, &job, &update);
        assert_eq!(second.feedback.before, first.feedback.after);
        // The revealed leaf of both states: the update is what was sent plus what was kept,
        // and each leaf opens against its commitment.
        for leaf in [1, 2] {
            let (revealed, paths) = store.reveal(&Hash::of(b"f1"), &[leaf]).unwrap();
            let states = corex_core::tensor::bytes_to_f32s(&revealed).unwrap();
            let range = leaf_range(len, leaf);
            let (before, after) = states.split_at(range.len());
            let sent = decode(&first.bytes, len, &POLICY).unwrap();
            for (i, at) in range.enumerate() {
                assert!((sent[at] + after[i] - before[i] - update[at]).abs() < 1e-6);
            }
            let opens = |root, values: &[f32], path: &[Hash]| {
                corex_core::feedback_state::check_leaf(root, len, leaf, values, path)
            };
            assert!(opens(&first.feedback.before, before, &paths.before[0]));
            assert!(opens(&first.feedback.after, after, &paths.after[0]));
        }
        assert!(store.reveal(&Hash::of(b"f1"), &[3]).is_none(), "no leaf 3");
        store.restart(&job);
        let fresh = compress(&store, &job, &update);
        assert_eq!(fresh.feedback, first.feedback);
        assert!(store.reveal(&Hash::of(b"unknown"), &[0]).is_none());
        // Many results in one round all stay revealable; two rounds on, the first goes.
        for index in 0..20u8 {
            store.taken(job, 1, Hash::of(&[index]), &second);
        }
        assert!(store.reveal(&Hash::of(b"f1"), &[0]).is_some());
        assert!(store.reveal(&Hash::of(&[0u8]), &[0]).is_some());
        store.taken(job, 2, Hash::of(b"f3"), &second);
        assert!(store.reveal(&Hash::of(b"f1"), &[0]).is_none());
        assert!(store.reveal(&Hash::of(&[0u8]), &[0]).is_some());
    }
}
