//! Commitments to a state of f32 values (a node's error-feedback state, a step checkpoint)
//! that an audit can open in part: a seeded sample of leaves of [`LEAF_VALUES`] values with
//! their paths instead of the whole state (several dense vectors per audited result otherwise).
//!
//! The tree is BLAKE3's own. A state of `len` values is committed as
//! `H("corex-feedback-state" ‖ len u64 ‖ LEAF_VALUES u32 ‖ BLAKE3(bytes))` over its f32
//! little-endian bytes, so the root names the layout too and costs one BLAKE3 pass at full SIMD
//! width. A leaf is 512 values, 2 KB, two BLAKE3 chunks; leaf `i` covers bytes `[2048·i,
//! 2048·(i+1))` (the last one shorter), which is always one subtree of BLAKE3's left-balanced
//! tree. A path lists the chaining values of the sibling subtrees from the leaf up, one per
//! level of the tree above the leaf; a state of one leaf has an empty path. Checking a leaf
//! computes its subtree's chaining value at its offset and merges the siblings up
//! (`blake3::hazmat`), the last merge as BLAKE3's root.
//!
//! Leaves are independent of the compression's chunks: a leaf may lie inside a chunk or span
//! several, and an audit checks each opened value against its chunk's kept entries and scales
//! (`corex_verify::check_compression`).
//!
//! Which leaves an audit opens is drawn from the audit's revealed seed and the result's
//! commitment ([`sample_leaves`]): the node committed to its states before the seed was known.
//!
//! Pure: no I/O.

use std::collections::HashMap;

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};
use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::tensor::{f32s_as_bytes, hash_f32s};

/// The deepest path a state of at most 2^32 leaves has.
pub const MAX_PATH: usize = 32;

/// Values per leaf of the protocol's state commitments: 2 KB of f32, two BLAKE3 chunks, an
/// eighth of a 4,096-value compression chunk.
pub const LEAF_VALUES: usize = 512;

/// Bytes per leaf.
const LEAF_BYTES: usize = 4 * LEAF_VALUES;

/// The opened leaves of a result's two feedback states: one path per asked leaf, in the order
/// asked, for the state before the result and the state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePaths {
    pub before: Vec<Vec<Hash>>,
    pub after: Vec<Vec<Hash>>,
}

fn named(len: usize, tree_root: &Hash) -> Hash {
    Hash::of_parts(&[
        b"corex-feedback-state",
        &(len as u64).to_le_bytes(),
        &(LEAF_VALUES as u32).to_le_bytes(),
        tree_root.as_bytes(),
    ])
}

/// The chaining value of the BLAKE3 subtree holding `bytes`, which start `offset` bytes into
/// the whole input (a multiple of [`LEAF_BYTES`], or the start of a larger aligned subtree).
fn subtree(offset: usize, bytes: &[u8]) -> ChainingValue {
    blake3::Hasher::new()
        .set_input_offset(offset as u64)
        .update(bytes)
        .finalize_non_root()
}

/// The leaves of a state of `len` values, at least one.
pub fn leaf_count(len: usize) -> usize {
    len.div_ceil(LEAF_VALUES).max(1)
}

/// The values leaf `index` of a state of `len` values holds (empty past the end).
pub fn leaf_range(len: usize, index: u32) -> std::ops::Range<usize> {
    let start = (index as usize).saturating_mul(LEAF_VALUES).min(len);
    start..start.saturating_add(LEAF_VALUES).min(len)
}

/// The subtrees on the way from the root of a tree over `total` bytes (more than one leaf)
/// down to the leaf starting at `leaf_start`: for each level, top first, the sibling's byte
/// range and whether the sibling is the right child.
fn siblings(total: usize, leaf_start: usize) -> Vec<(std::ops::Range<usize>, bool)> {
    let (mut start, mut end) = (0, total);
    let mut levels = Vec::new();
    while end - start > LEAF_BYTES {
        let middle = start + left_subtree_len((end - start) as u64) as usize;
        match leaf_start < middle {
            true => {
                levels.push((middle..end, true));
                end = middle;
            }
            false => {
                levels.push((start..middle, false));
                start = middle;
            }
        }
    }
    levels
}

/// The commitment to a state, cut into leaves of [`LEAF_VALUES`].
pub fn state_root(state: &[f32]) -> Hash {
    named(state.len(), &hash_f32s(state))
}

/// [`state_root`] of `len` zeros (a node's first state in a job), without allocating the
/// state.
pub fn zero_state_root(len: usize) -> Hash {
    const BLOCK: usize = 64 * 1024;
    let zeros = [0_u8; BLOCK];
    let mut hasher = blake3::Hasher::new();
    let mut left = len.saturating_mul(4);
    while left > 0 {
        let take = left.min(BLOCK);
        hasher.update(&zeros[..take]);
        left -= take;
    }
    named(len, &Hash(*hasher.finalize().as_bytes()))
}

/// The paths of leaves `indices` of `state` (each index below the leaf count). A subtree
/// shared by several paths (the far half of the state, for leaves on one side) is hashed once.
pub fn state_paths(state: &[f32], indices: &[u32]) -> Vec<Vec<Hash>> {
    let bytes = f32s_as_bytes(state);
    let mut hashed: HashMap<(usize, usize), Hash> = HashMap::new();
    indices
        .iter()
        .map(|&index| {
            let leaf_start = (index as usize).saturating_mul(LEAF_BYTES);
            let mut path: Vec<Hash> = siblings(bytes.len(), leaf_start)
                .into_iter()
                .map(|(range, _)| {
                    *hashed
                        .entry((range.start, range.end))
                        .or_insert_with(|| Hash(subtree(range.start, &bytes[range])))
                })
                .collect();
            path.reverse();
            path
        })
        .collect()
}

/// Whether `values` are leaf `index` of the state of `len` values that `root` commits to, by
/// `path`. Checks the leaf's length and the path's before hashing.
pub fn check_leaf(root: &Hash, len: usize, index: u32, values: &[f32], path: &[Hash]) -> bool {
    if index as usize >= leaf_count(len) || path.len() > MAX_PATH {
        return false;
    }
    if values.len() != leaf_range(len, index).len() {
        return false;
    }
    let bytes = f32s_as_bytes(values);
    let total = len.saturating_mul(4);
    if total <= LEAF_BYTES {
        let tree_root = Hash(*blake3::hash(&bytes).as_bytes());
        return path.is_empty() && named(len, &tree_root) == *root;
    }
    let leaf_start = index as usize * LEAF_BYTES;
    let levels = siblings(total, leaf_start);
    if levels.len() != path.len() {
        return false;
    }
    let mut node = subtree(leaf_start, &bytes);
    // From the leaf up: the path's order; the top merge is BLAKE3's root.
    for (depth, ((_, sibling_is_right), sibling)) in
        levels.iter().zip(path.iter().rev()).enumerate().rev()
    {
        let (left, right) = match sibling_is_right {
            true => (&node, &sibling.0),
            false => (&sibling.0, &node),
        };
        if depth == 0 {
            let tree_root = Hash(*merge_subtrees_root(left, right, Mode::Hash).as_bytes());
            return named(len, &tree_root) == *root;
        }
        node = merge_subtrees_non_root(left, right, Mode::Hash);
    }
    false
}

/// The `count` leaves (of `leaves`, ascending, distinct; all of them when `count ≥ leaves`)
/// an audit drawn with `seed` opens of the result committed as `commitment`.
pub fn sample_leaves(seed: &Hash, commitment: &Hash, leaves: usize, count: usize) -> Vec<u32> {
    if count >= leaves {
        return (0..leaves as u32).collect();
    }
    let mut picked = std::collections::BTreeSet::new();
    let mut draw = 0_u64;
    while picked.len() < count {
        let hash = Hash::of_parts(&[
            b"corex-state-sample",
            seed.as_bytes(),
            commitment.as_bytes(),
            &draw.to_le_bytes(),
        ]);
        let mut word = [0; 8];
        word.copy_from_slice(&hash.as_bytes()[..8]);
        picked.insert((u64::from_le_bytes(word) % leaves as u64) as u32);
        draw += 1;
    }
    picked.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(len: usize) -> Vec<f32> {
        (0..len).map(|i| (i as f32 * 0.77).sin()).collect()
    }

    #[test]
    fn the_root_is_the_documented_hash_of_blake3_over_the_little_endian_bytes() {
        for len in [0, 1, 255, 256, 257, 512, 700, 512 * 5 + 7] {
            let values = state(len);
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let documented = Hash::of_parts(&[
                b"corex-feedback-state",
                &(len as u64).to_le_bytes(),
                &512_u32.to_le_bytes(),
                blake3::hash(&bytes).as_bytes(),
            ]);
            assert_eq!(state_root(&values), documented, "{len} values");
        }
    }

    #[test]
    fn every_leaf_opens_against_the_root_and_nothing_else_does() {
        // One leaf, one chunk or less, a leaf and a bit, powers of two and the uneven trees
        // between them.
        for len in [
            0,
            1,
            256,
            512,
            513,
            768,
            1024,
            1536,
            2048,
            512 * 5 + 7,
            512 * 7,
            4096 * 3 + 5,
        ] {
            let state = state(len);
            let root = state_root(&state);
            let count = leaf_count(len);
            let all: Vec<u32> = (0..count as u32).collect();
            let paths = state_paths(&state, &all);
            for (index, path) in all.iter().zip(&paths) {
                let values = &state[leaf_range(len, *index)];
                assert!(
                    check_leaf(&root, len, *index, values, path),
                    "{len} {index}"
                );
                if !values.is_empty() {
                    let mut altered = values.to_vec();
                    altered[0] += 1.0;
                    assert!(!check_leaf(&root, len, *index, &altered, path));
                    assert!(!check_leaf(&root, len, *index, &values[1..], path));
                }
                if count > 1 {
                    let other = (*index + 1) % count as u32;
                    assert!(!check_leaf(&root, len, other, values, path));
                    let mut wrong = path.clone();
                    wrong[0] = Hash::of(b"not a sibling");
                    assert!(!check_leaf(&root, len, *index, values, &wrong));
                }
                assert!(!check_leaf(&root, len + 1, *index, values, path));
                assert!(!check_leaf(&root, len, count as u32, values, path));
            }
            if count > 1 {
                let mut short = paths[0].clone();
                short.pop();
                assert!(!check_leaf(&root, len, 0, &state[..LEAF_VALUES], &short));
                let mut long = paths[0].clone();
                long.push(root);
                assert!(!check_leaf(&root, len, 0, &state[..LEAF_VALUES], &long));
            }
        }
    }

    #[test]
    fn the_zero_root_is_the_root_of_zeros() {
        for len in [0, 1, 64, 1000, 4096 * 3 + 5, 16384 * 5 + 3] {
            assert_eq!(zero_state_root(len), state_root(&vec![0.0; len]), "{len}");
        }
        assert_ne!(zero_state_root(128), zero_state_root(129));
    }

    #[test]
    fn samples_are_distinct_sorted_and_seeded() {
        let (seed, commitment) = (Hash::of(b"seed"), Hash::of(b"result"));
        let sample = sample_leaves(&seed, &commitment, 115, 4);
        assert_eq!(sample.len(), 4);
        assert!(sample.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(sample.iter().all(|index| *index < 115));
        assert_eq!(sample, sample_leaves(&seed, &commitment, 115, 4));
        assert_ne!(
            sample,
            sample_leaves(&Hash::of(b"other"), &commitment, 115, 4)
        );
        assert_eq!(sample_leaves(&seed, &commitment, 3, 4), vec![0, 1, 2]);
    }
}
