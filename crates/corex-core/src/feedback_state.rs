//! Commitments to a node's error-feedback state that an audit can open in part: a Merkle tree
//! over runs of [`LEAF_VALUES`] values, so that a reveal sends a seeded sample of leaves with
//! their paths instead of the whole state (two dense vectors per audited result otherwise).
//!
//! A state of `len` values is cut into leaves of `leaf` values (the last one shorter). Leaf `i`
//! is `H("corex-state-leaf" ‖ i u64 ‖ f32 bytes of leaf i)`; a parent is
//! `H("corex-state-node" ‖ left ‖ right)`; a level of odd length carries its last node up
//! unchanged. The state's root is `H("corex-feedback-state" ‖ len u64 ‖ leaf u32 ‖ tree
//! root)`, so the root names the layout too. A path lists the siblings from the leaf up,
//! skipping levels where the node was carried.
//!
//! Leaves are independent of the compression's chunks: a leaf may lie inside a chunk or span
//! several, and an audit checks each opened value against its chunk's kept entries and scales
//! (`corex_verify::check_compression`). Smaller leaves make a reveal smaller for the same
//! number of sampled positions.
//!
//! Which leaves an audit opens is drawn from the audit's revealed seed and the result's
//! commitment ([`sample_leaves`]): the node committed to its states before the seed was known.
//!
//! Pure: no I/O.

use serde::{Deserialize, Serialize};

use crate::hash::Hash;

/// The deepest path a state of at most 2^32 leaves has.
pub const MAX_PATH: usize = 32;

/// Values per leaf of the protocol's feedback-state commitments: 2 KB of f32, an eighth of a
/// 4,096-value compression chunk.
pub const LEAF_VALUES: usize = 512;

/// The opened leaves of a result's two feedback states: one path per asked leaf, in the order
/// asked, for the state before the result and the state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePaths {
    pub before: Vec<Vec<Hash>>,
    pub after: Vec<Vec<Hash>>,
}

fn leaf(index: usize, values: &[f32]) -> Hash {
    // The values' little-endian bytes go in by BLAKE3 chunks (1 KB), not value by value:
    // the same bytes, so the same hash, without an `update` call per 4 bytes.
    const BLOCK_VALUES: usize = 256;
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"corex-state-leaf");
    hasher.update(&(index as u64).to_le_bytes());
    let mut block = [0_u8; 4 * BLOCK_VALUES];
    for run in values.chunks(BLOCK_VALUES) {
        for (bytes, value) in block.chunks_exact_mut(4).zip(run) {
            bytes.copy_from_slice(&value.to_le_bytes());
        }
        hasher.update(&block[..4 * run.len()]);
    }
    Hash(*hasher.finalize().as_bytes())
}

fn parent(left: &Hash, right: &Hash) -> Hash {
    Hash::of_parts(&[b"corex-state-node", left.as_bytes(), right.as_bytes()])
}

fn named(len: usize, leaf: usize, tree_root: &Hash) -> Hash {
    Hash::of_parts(&[
        b"corex-feedback-state",
        &(len as u64).to_le_bytes(),
        &(leaf as u32).to_le_bytes(),
        tree_root.as_bytes(),
    ])
}

/// The leaves of a state of `len` values, at least one.
pub fn leaf_count(len: usize, leaf: usize) -> usize {
    len.div_ceil(leaf.max(1)).max(1)
}

/// The values leaf `index` of a state of `len` values holds (empty past the end).
pub fn leaf_range(len: usize, leaf: usize, index: u32) -> std::ops::Range<usize> {
    let leaf = leaf.max(1);
    let start = (index as usize).saturating_mul(leaf).min(len);
    start..start.saturating_add(leaf).min(len)
}

/// The level above `level`: each pair's parent, an odd last node carried up.
fn next_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => parent(left, right),
            [carried] => *carried,
            _ => unreachable!("chunks(2) gives one or two"),
        })
        .collect()
}

/// Every level of the tree over `state`'s leaves, leaves first.
fn levels(state: &[f32], leaf_len: usize) -> Vec<Vec<Hash>> {
    let mut level: Vec<Hash> = match state.is_empty() {
        true => vec![leaf(0, &[])],
        false => state
            .chunks(leaf_len.max(1))
            .enumerate()
            .map(|(index, values)| leaf(index, values))
            .collect(),
    };
    let mut levels = Vec::new();
    while level.len() > 1 {
        let next = next_level(&level);
        levels.push(std::mem::replace(&mut level, next));
    }
    levels.push(level);
    levels
}

/// The commitment to an error-feedback state cut into leaves of `leaf` values.
pub fn state_root(state: &[f32], leaf: usize) -> Hash {
    let levels = levels(state, leaf);
    named(state.len(), leaf, &levels[levels.len() - 1][0])
}

/// [`state_root`] of `len` zeros (a node's first state in a job), computed leaf by leaf
/// without allocating the state.
pub fn zero_state_root(len: usize, leaf_len: usize) -> Hash {
    let zeros = vec![0.0_f32; leaf_len.max(1).min(len.max(1))];
    let count = leaf_count(len, leaf_len);
    let mut level: Vec<Hash> = (0..count)
        .map(|index| {
            leaf(
                index,
                &zeros[..leaf_range(len, leaf_len, index as u32).len()],
            )
        })
        .collect();
    while level.len() > 1 {
        level = next_level(&level);
    }
    named(len, leaf_len, &level[0])
}

/// The paths of leaves `indices` of `state` (each index below the leaf count).
pub fn state_paths(state: &[f32], leaf: usize, indices: &[u32]) -> Vec<Vec<Hash>> {
    let levels = levels(state, leaf);
    indices
        .iter()
        .map(|&index| {
            let mut position = index as usize;
            let mut path = Vec::new();
            for level in &levels[..levels.len() - 1] {
                let sibling = position ^ 1;
                if sibling < level.len() {
                    path.push(level[sibling]);
                }
                position /= 2;
            }
            path
        })
        .collect()
}

/// Whether `values` are leaf `index` of the state of `len` values (cut into leaves of `leaf`)
/// that `root` commits to, by `path`. Checks the leaf's length first.
pub fn check_leaf(
    root: &Hash,
    len: usize,
    leaf_len: usize,
    index: u32,
    values: &[f32],
    path: &[Hash],
) -> bool {
    let count = leaf_count(len, leaf_len);
    if index as usize >= count || path.len() > MAX_PATH {
        return false;
    }
    if values.len() != leaf_range(len, leaf_len, index).len() {
        return false;
    }
    let index = index as usize;
    let mut node = leaf(index, values);
    let (mut position, mut width) = (index, count);
    let mut siblings = path.iter();
    while width > 1 {
        let sibling = position ^ 1;
        if sibling < width {
            let Some(hash) = siblings.next() else {
                return false;
            };
            node = match position % 2 {
                0 => parent(&node, hash),
                _ => parent(hash, &node),
            };
        }
        position /= 2;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && named(len, leaf_len, &node) == *root
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
    fn a_leaf_hashes_exactly_its_documented_bytes() {
        // Lengths below, at and across the 256-value blocks the bytes are fed in.
        for len in [0, 1, 255, 256, 257, 512, 700] {
            let values = state(len);
            let mut bytes = b"corex-state-leaf".to_vec();
            bytes.extend_from_slice(&9_u64.to_le_bytes());
            bytes.extend_from_slice(&crate::tensor::f32s_to_bytes(&values));
            assert_eq!(leaf(9, &values), Hash::of(&bytes), "{len} values");
        }
    }

    #[test]
    fn every_leaf_opens_against_the_root_and_nothing_else_does() {
        for (len, leaf) in [
            (1, 64),
            (64, 64),
            (65, 64),
            (1000, 64),
            (64 * 7, 64),
            (300, 100),
        ] {
            let state = state(len);
            let root = state_root(&state, leaf);
            let count = leaf_count(len, leaf);
            let all: Vec<u32> = (0..count as u32).collect();
            let paths = state_paths(&state, leaf, &all);
            for (index, path) in all.iter().zip(&paths) {
                let values = &state[leaf_range(len, leaf, *index)];
                assert!(
                    check_leaf(&root, len, leaf, *index, values, path),
                    "{len} {leaf} {index}"
                );
                let mut altered = values.to_vec();
                altered[0] += 1.0;
                assert!(!check_leaf(&root, len, leaf, *index, &altered, path));
                if count > 1 {
                    let other = (*index + 1) % count as u32;
                    assert!(!check_leaf(&root, len, leaf, other, values, path));
                }
                assert!(!check_leaf(&root, len + 1, leaf, *index, values, path));
                assert!(!check_leaf(&root, len, leaf, *index, &values[1..], path));
            }
            if count > 1 {
                let mut short = paths[0].clone();
                short.pop();
                assert!(!check_leaf(&root, len, leaf, 0, &state[..leaf], &short));
            }
        }
    }

    #[test]
    fn the_zero_root_is_the_root_of_zeros() {
        for (len, leaf) in [(0, 64), (1, 64), (64, 64), (1000, 64), (4096 * 3 + 5, 4096)] {
            assert_eq!(
                zero_state_root(len, leaf),
                state_root(&vec![0.0; len], leaf),
                "{len}"
            );
        }
        assert_ne!(zero_state_root(128, 64), zero_state_root(128, 128));
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
