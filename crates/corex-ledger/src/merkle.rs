//! Merkle roots over hashes (transactions in a block, result commitments in a round).

use corex_core::Hash;

/// Binary Merkle root: leaves `H("leaf" ‖ x)`, inner nodes `H("node" ‖ left ‖ right)`, an odd
/// node promoted unchanged; the empty list has its own constant root.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::of(b"corex-merkle-empty");
    }
    let mut level: Vec<Hash> = leaves
        .iter()
        .map(|leaf| Hash::of_parts(&[b"leaf", &leaf.0]))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => Hash::of_parts(&[b"node", &left.0, &right.0]),
                odd => odd[0],
            })
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_depends_on_every_leaf_and_its_order() {
        let leaves: Vec<Hash> = (0u8..5).map(|i| Hash::of(&[i])).collect();
        let root = merkle_root(&leaves);
        let mut swapped = leaves.clone();
        swapped.swap(1, 2);
        assert_ne!(root, merkle_root(&swapped));
        assert_ne!(root, merkle_root(&leaves[..4]));
        assert_eq!(root, merkle_root(&leaves));
    }
}
