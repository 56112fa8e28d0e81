//! Commitments to a node's error-feedback state that an audit can open in part: a Merkle tree
//! over the state's compression chunks, so that a reveal sends a seeded sample of chunks with
//! their paths instead of the whole state (two dense vectors per audited result otherwise).
//!
//! A state of `len` values is cut into the compression's chunks of `chunk` values (the last
//! one shorter). Leaf `i` is `H("corex-state-chunk" ‖ i u64 ‖ f32 bytes of chunk i)`; a parent
//! is `H("corex-state-node" ‖ left ‖ right)`; a level of odd length carries its last node up
//! unchanged. The state's root is `H("corex-feedback-state" ‖ len u64 ‖ chunk u32 ‖ tree
//! root)`, so the root names the layout too. A path lists the siblings from the leaf up,
//! skipping levels where the node was carried.
//!
//! Which chunks an audit opens is drawn from the audit's revealed seed and the result's
//! commitment ([`sample_chunks`]): the node committed to its states before the seed was known.
//!
//! Pure: no I/O.

use serde::{Deserialize, Serialize};

use crate::hash::Hash;

/// The deepest path a state of at most 2^32 chunks has.
pub const MAX_PATH: usize = 32;

/// The opened chunks of a result's two feedback states: one path per asked chunk, in the
/// order asked, for the state before the result and the state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePaths {
    pub before: Vec<Vec<Hash>>,
    pub after: Vec<Vec<Hash>>,
}

fn leaf(index: usize, values: &[f32]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"corex-state-chunk");
    hasher.update(&(index as u64).to_le_bytes());
    for value in values {
        hasher.update(&value.to_le_bytes());
    }
    Hash(*hasher.finalize().as_bytes())
}

fn parent(left: &Hash, right: &Hash) -> Hash {
    Hash::of_parts(&[b"corex-state-node", left.as_bytes(), right.as_bytes()])
}

fn named(len: usize, chunk: usize, tree_root: &Hash) -> Hash {
    Hash::of_parts(&[
        b"corex-feedback-state",
        &(len as u64).to_le_bytes(),
        &(chunk as u32).to_le_bytes(),
        tree_root.as_bytes(),
    ])
}

/// The chunks of a state of `len` values, at least one.
pub fn chunk_count(len: usize, chunk: usize) -> usize {
    len.div_ceil(chunk.max(1)).max(1)
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

/// Every level of the tree over `state`'s chunks, leaves first.
fn levels(state: &[f32], chunk: usize) -> Vec<Vec<Hash>> {
    let chunk = chunk.max(1);
    let mut level: Vec<Hash> = match state.is_empty() {
        true => vec![leaf(0, &[])],
        false => state
            .chunks(chunk)
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

/// The commitment to an error-feedback state cut into chunks of `chunk` values.
pub fn state_root(state: &[f32], chunk: usize) -> Hash {
    let levels = levels(state, chunk);
    named(state.len(), chunk, &levels[levels.len() - 1][0])
}

/// [`state_root`] of `len` zeros (a node's first state in a job), computed from one chunk's
/// leaf per position without allocating the state.
pub fn zero_state_root(len: usize, chunk: usize) -> Hash {
    let chunk = chunk.max(1);
    let zeros = vec![0.0_f32; chunk.min(len.max(1))];
    let count = chunk_count(len, chunk);
    let mut level: Vec<Hash> = (0..count)
        .map(|index| {
            let size = match len {
                0 => 0,
                _ => chunk.min(len - index * chunk),
            };
            leaf(index, &zeros[..size])
        })
        .collect();
    while level.len() > 1 {
        level = next_level(&level);
    }
    named(len, chunk, &level[0])
}

/// The paths of chunks `indices` of `state` (each index below the chunk count).
pub fn state_paths(state: &[f32], chunk: usize, indices: &[u32]) -> Vec<Vec<Hash>> {
    let levels = levels(state, chunk);
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

/// Whether `values` are chunk `index` of the state of `len` values (cut into chunks of
/// `chunk`) that `root` commits to, by `path`. Checks the chunk's length first.
pub fn check_chunk(
    root: &Hash,
    len: usize,
    chunk: usize,
    index: u32,
    values: &[f32],
    path: &[Hash],
) -> bool {
    let chunk = chunk.max(1);
    let index = index as usize;
    let count = chunk_count(len, chunk);
    if index >= count || path.len() > MAX_PATH {
        return false;
    }
    let expected = match len {
        0 => 0,
        _ => chunk.min(len - index * chunk),
    };
    if values.len() != expected {
        return false;
    }
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
    siblings.next().is_none() && named(len, chunk, &node) == *root
}

/// The `count` chunks (of `chunks`, ascending, distinct; all of them when `count ≥ chunks`)
/// an audit drawn with `seed` opens of the result committed as `commitment`.
pub fn sample_chunks(seed: &Hash, commitment: &Hash, chunks: usize, count: usize) -> Vec<u32> {
    if count >= chunks {
        return (0..chunks as u32).collect();
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
        picked.insert((u64::from_le_bytes(word) % chunks as u64) as u32);
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
    fn every_chunk_opens_against_the_root_and_nothing_else_does() {
        for (len, chunk) in [
            (1, 64),
            (64, 64),
            (65, 64),
            (1000, 64),
            (64 * 7, 64),
            (300, 100),
        ] {
            let state = state(len);
            let root = state_root(&state, chunk);
            let count = chunk_count(len, chunk);
            let all: Vec<u32> = (0..count as u32).collect();
            let paths = state_paths(&state, chunk, &all);
            for (index, path) in all.iter().zip(&paths) {
                let start = *index as usize * chunk;
                let values = &state[start..(start + chunk).min(len)];
                assert!(
                    check_chunk(&root, len, chunk, *index, values, path),
                    "{len} {chunk} {index}"
                );
                let mut altered = values.to_vec();
                altered[0] += 1.0;
                assert!(!check_chunk(&root, len, chunk, *index, &altered, path));
                if count > 1 {
                    let other = (*index + 1) % count as u32;
                    assert!(!check_chunk(&root, len, chunk, other, values, path));
                }
                assert!(!check_chunk(&root, len + 1, chunk, *index, values, path));
                assert!(!check_chunk(&root, len, chunk, *index, &values[1..], path));
            }
            if count > 1 {
                let mut short = paths[0].clone();
                short.pop();
                assert!(!check_chunk(&root, len, chunk, 0, &state[..chunk], &short));
            }
        }
    }

    #[test]
    fn the_zero_root_is_the_root_of_zeros() {
        for (len, chunk) in [(0, 64), (1, 64), (64, 64), (1000, 64), (4096 * 3 + 5, 4096)] {
            assert_eq!(
                zero_state_root(len, chunk),
                state_root(&vec![0.0; len], chunk),
                "{len}"
            );
        }
        assert_ne!(zero_state_root(128, 64), zero_state_root(128, 128));
    }

    #[test]
    fn samples_are_distinct_sorted_and_seeded() {
        let (seed, commitment) = (Hash::of(b"seed"), Hash::of(b"result"));
        let sample = sample_chunks(&seed, &commitment, 115, 4);
        assert_eq!(sample.len(), 4);
        assert!(sample.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(sample.iter().all(|index| *index < 115));
        assert_eq!(sample, sample_chunks(&seed, &commitment, 115, 4));
        assert_ne!(
            sample,
            sample_chunks(&Hash::of(b"other"), &commitment, 115, 4)
        );
        assert_eq!(sample_chunks(&seed, &commitment, 3, 4), vec![0, 1, 2]);
    }
}
