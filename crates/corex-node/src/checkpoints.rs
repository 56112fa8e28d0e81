//! The step checkpoints of this node's traced results, kept until an audit may ask for them
//! (see `corex_core::trace`): in memory, until the node works on a later round of the same
//! job (a round's audits end before the next round opens), and within a byte budget, oldest
//! dropped first. A checkpoint asked for after it was dropped cannot be revealed: the node
//! declines, and the coordinator replays the whole fragment instead, so dropping costs audit
//! time, never the node's standing.

use std::collections::{HashMap, VecDeque};

use corex_core::feedback_state::{leaf_count, leaf_range, state_paths};
use corex_core::tensor::f32s_to_bytes;
use corex_core::{Fragment, Hash};

/// Revealed checkpoints: their bytes (f32 LE), and with opened leaves their paths, checkpoint
/// by checkpoint, leaf by leaf.
pub type RevealedCheckpoints = (Vec<u8>, Option<Vec<Vec<Hash>>>);

/// Memory the checkpoints of recent fragments may take by default: a few rounds' worth for
/// models up to tens of millions of parameters.
pub const DEFAULT_CHECKPOINT_BUDGET_BYTES: usize = 512 * 1024 * 1024;

struct Kept {
    job: Hash,
    round: u32,
    model: Hash,
    /// `(step, parameters after that step)`, ascending by step.
    checkpoints: Vec<(u32, Vec<f32>)>,
}

impl Kept {
    fn bytes(&self) -> usize {
        self.checkpoints
            .iter()
            .map(|(_, params)| params.len() * 4)
            .sum()
    }
}

pub struct CheckpointStore {
    budget_bytes: usize,
    used_bytes: usize,
    kept: HashMap<Hash, Kept>,
    /// Fragment ids, oldest first.
    order: VecDeque<Hash>,
}

impl CheckpointStore {
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget_bytes,
            used_bytes: 0,
            kept: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Keeps the checkpoints of `fragment`, dropping those of the job's earlier rounds, then
    /// the oldest fragments' until they fit; a set larger than the whole budget is not kept.
    pub fn keep(&mut self, fragment: &Fragment, checkpoints: Vec<(u32, Vec<f32>)>) {
        let stale: Vec<Hash> = self
            .kept
            .iter()
            .filter(|(_, kept)| kept.job == fragment.job && kept.round < fragment.round)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.drop_fragment(&id);
        }
        let kept = Kept {
            job: fragment.job,
            round: fragment.round,
            model: fragment.model,
            checkpoints,
        };
        let fragment = fragment.id;
        let bytes = kept.bytes();
        if bytes > self.budget_bytes {
            return;
        }
        self.drop_fragment(&fragment);
        while self.used_bytes + bytes > self.budget_bytes {
            let Some(oldest) = self.order.front().copied() else {
                break;
            };
            self.drop_fragment(&oldest);
        }
        self.used_bytes += bytes;
        self.kept.insert(fragment, kept);
        self.order.push_back(fragment);
    }

    fn drop_fragment(&mut self, fragment: &Hash) {
        if let Some(dropped) = self.kept.remove(fragment) {
            self.used_bytes -= dropped.bytes();
            self.order.retain(|id| id != fragment);
        }
    }

    /// The parameters kept for `fragment` at model version `model` after each of `steps`,
    /// concatenated in that order as f32 LE bytes: whole, or with `leaves` only those leaves
    /// of each (in the order asked) with their Merkle paths (`corex_core::trace`). `None` when
    /// any of them is not kept or a leaf is past the end. No steps asked is nothing to reveal,
    /// whatever is kept.
    pub fn reveal(
        &self,
        fragment: &Hash,
        model: &Hash,
        steps: &[u32],
        leaves: &[u32],
    ) -> Option<RevealedCheckpoints> {
        if steps.is_empty() {
            return Some((Vec::new(), None));
        }
        let kept = self
            .kept
            .get(fragment)
            .filter(|kept| kept.model == *model)?;
        let mut bytes = Vec::new();
        let mut paths = Vec::new();
        for step in steps {
            let (_, params) = kept.checkpoints.iter().find(|(kept, _)| kept == step)?;
            if leaves.is_empty() {
                bytes.extend_from_slice(&f32s_to_bytes(params));
                continue;
            }
            let count = leaf_count(params.len());
            if leaves.iter().any(|leaf| *leaf as usize >= count) {
                return None;
            }
            for leaf in leaves {
                bytes.extend_from_slice(&f32s_to_bytes(&params[leaf_range(params.len(), *leaf)]));
            }
            paths.extend(state_paths(params, leaves));
        }
        Some((bytes, (!leaves.is_empty()).then_some(paths)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(id: &[u8], round: u32) -> Fragment {
        Fragment {
            id: Hash::of(id),
            job: Hash::of(b"job"),
            round,
            index: 0,
            model: Hash::of(b"m"),
            kind: corex_core::FragmentKind::LocalSteps,
            indices: Vec::new(),
            cost_flops: 0,
            holder: None,
            steps: None,
        }
    }

    fn checkpoints(steps: &[u32], len: usize) -> Vec<(u32, Vec<f32>)> {
        steps
            .iter()
            .map(|&step| (step, vec![step as f32; len]))
            .collect()
    }

    #[test]
    fn reveals_what_was_kept_in_the_order_asked() {
        let mut store = CheckpointStore::new(1024);
        let kept = fragment(b"f", 0);
        let (fragment, model) = (kept.id, kept.model);
        store.keep(&kept, checkpoints(&[2, 4, 6], 4));
        let (bytes, paths) = store.reveal(&fragment, &model, &[6, 2], &[]).unwrap();
        assert_eq!(paths, None);
        assert_eq!(bytes.len(), 32);
        assert_eq!(f32::from_le_bytes(bytes[..4].try_into().unwrap()), 6.0);
        assert_eq!(f32::from_le_bytes(bytes[16..20].try_into().unwrap()), 2.0);
        assert!(store.reveal(&fragment, &model, &[3], &[]).is_none());
        assert!(
            store
                .reveal(&fragment, &Hash::of(b"other"), &[2], &[])
                .is_none()
        );
        assert_eq!(
            store.reveal(&Hash::of(b"never kept"), &model, &[], &[]),
            Some((Vec::new(), None))
        );
    }

    #[test]
    fn opened_leaves_come_with_paths_to_the_committed_root() {
        let mut store = CheckpointStore::new(1 << 20);
        let kept = fragment(b"f", 0);
        let len = 3 * corex_core::feedback_state::LEAF_VALUES + 7;
        let parameters: Vec<f32> = (0..len).map(|i| (i as f32 * 0.3).cos()).collect();
        store.keep(&kept, vec![(4, parameters.clone())]);
        let root = corex_core::trace::checkpoint_root(&parameters);
        let leaves = [1, 3];
        let (bytes, paths) = store.reveal(&kept.id, &kept.model, &[4], &leaves).unwrap();
        let values = corex_core::tensor::bytes_to_f32s(&bytes).unwrap();
        let paths = paths.unwrap();
        assert_eq!(values.len(), corex_core::feedback_state::LEAF_VALUES + 7);
        let (first, last) = values.split_at(corex_core::feedback_state::LEAF_VALUES);
        for ((leaf, opened), path) in leaves.iter().zip([first, last]).zip(&paths) {
            assert!(corex_core::feedback_state::check_leaf(
                &root, len, *leaf, opened, path
            ));
        }
        // A leaf past the end cannot be opened: the node declines.
        assert!(store.reveal(&kept.id, &kept.model, &[4], &[4]).is_none());
    }

    #[test]
    fn the_oldest_fragments_go_first_when_the_budget_is_full() {
        // Each fragment keeps 2 checkpoints of 8 floats: 64 bytes; the budget holds two.
        let mut store = CheckpointStore::new(128);
        let model = Hash::of(b"m");
        let kept: Vec<Fragment> = (0..3u8).map(|i| fragment(&[i], 0)).collect();
        for fragment in &kept {
            store.keep(fragment, checkpoints(&[1, 2], 8));
        }
        assert!(store.reveal(&kept[0].id, &model, &[1], &[]).is_none());
        assert!(store.reveal(&kept[1].id, &model, &[1], &[]).is_some());
        assert!(store.reveal(&kept[2].id, &model, &[2], &[]).is_some());
        store.keep(&fragment(b"huge", 0), checkpoints(&[1], 64));
        assert!(store.reveal(&kept[2].id, &model, &[2], &[]).is_some());
    }

    #[test]
    fn a_later_round_of_the_job_drops_the_earlier_rounds() {
        let mut store = CheckpointStore::new(1 << 20);
        let model = Hash::of(b"m");
        let (old, new) = (fragment(b"old", 3), fragment(b"new", 4));
        store.keep(&old, checkpoints(&[1], 8));
        store.keep(&new, checkpoints(&[1], 8));
        assert!(store.reveal(&old.id, &model, &[1], &[]).is_none());
        assert!(store.reveal(&new.id, &model, &[1], &[]).is_some());
    }
}
