//! The coordinator's upload store as an operation sequence: stage chunks, ask which are
//! missing, assemble manifests (honest or lying), release, expire, let time pass, for three
//! nodes under small limits (2 KiB chunks, 6 KiB per node, 10 KiB in all, 1 s expiry).
//!
//! Oracle: no panic, and the store agrees with a reference model of its documented contract
//! at every step (same answer, same error code): staged chunks hash to their names; a node
//! assembles only chunks it staged itself; staged bytes never exceed the per-node or overall
//! limit; a node's chunks go `ttl_ms` after its last activity or on release; a refused
//! request stages nothing. Assembled bytes are checked chunk by chunk against the manifest.

use std::collections::BTreeMap;

use bytes::Bytes;
use corex_coordinator::uploads::{UploadLimits, UploadStore};
use corex_core::chunk::{MIN_UPLOAD_CHUNK_SIZE, Manifest};
use corex_core::hash::Hashed;
use corex_core::{Hash, NodeId};

const LIMITS: UploadLimits = UploadLimits {
    max_chunk_bytes: 2048,
    max_node_bytes: 6144,
    max_total_bytes: 10_240,
    ttl_ms: 1_000,
};
const NODES: u8 = 3;
/// Longest chunk the input can ask for: a little over the chunk limit.
const MAX_LEN: u16 = 2100;
const CHUNK_SIZES: [u32; 5] = [512, 1024, 1536, 2048, 4096];

/// Reads the input a byte at a time; past its end, zeros.
struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.data.split_first() else {
            return 0;
        };
        self.data = rest;
        first
    }

    fn len(&mut self) -> usize {
        usize::from(u16::from_le_bytes([self.byte(), self.byte()]) % (MAX_LEN + 1))
    }

    fn node(&mut self) -> u8 {
        self.byte() % NODES
    }

    /// A chunk named by `(tag, length)`.
    fn chunk(&mut self) -> Vec<u8> {
        let tag = self.byte();
        content(tag, self.len())
    }

    fn chunk_hashes(&mut self) -> Vec<Hash> {
        let count = self.byte() % 8;
        (0..count).map(|_| Hash::of(&self.chunk())).collect()
    }
}

/// The bytes of chunk `(tag, len)`: distinct tags give distinct chunks.
fn content(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| tag ^ (i as u8).wrapping_mul(31)).collect()
}

fn node_id(node: u8) -> NodeId {
    NodeId([node + 1; 32])
}

#[derive(Default)]
struct ModelNode {
    chunks: BTreeMap<Hash, Vec<u8>>,
    active_ms: u64,
}

impl ModelNode {
    fn bytes(&self) -> usize {
        self.chunks.values().map(Vec::len).sum()
    }
}

/// The store's contract, written plainly: what each request must answer.
#[derive(Default)]
struct Model {
    nodes: BTreeMap<u8, ModelNode>,
}

type Answer<T> = Result<T, &'static str>;

impl Model {
    fn total(&self) -> usize {
        self.nodes.values().map(ModelNode::bytes).sum()
    }

    fn expire(&mut self, now_ms: u64) {
        self.nodes
            .retain(|_, node| now_ms.saturating_sub(node.active_ms) <= LIMITS.ttl_ms);
    }

    fn stage(&mut self, node: u8, claimed: Hash, bytes: &[u8], now_ms: u64) -> Answer<()> {
        if bytes.is_empty() {
            return Err("malformed_body");
        }
        if bytes.len() > LIMITS.max_chunk_bytes {
            return Err("body_too_large");
        }
        if Hash::of(bytes) != claimed {
            return Err("chunk_hash_mismatch");
        }
        self.expire(now_ms);
        if let Some(staged) = self.nodes.get_mut(&node)
            && staged.chunks.contains_key(&claimed)
        {
            staged.active_ms = now_ms;
            return Ok(());
        }
        let node_bytes = self.nodes.get(&node).map_or(0, ModelNode::bytes);
        if node_bytes + bytes.len() > LIMITS.max_node_bytes {
            return Err("upload_quota");
        }
        if self.total() + bytes.len() > LIMITS.max_total_bytes {
            return Err("uploads_full");
        }
        let staged = self.nodes.entry(node).or_default();
        staged.chunks.insert(claimed, bytes.to_vec());
        staged.active_ms = now_ms;
        Ok(())
    }

    fn missing(&mut self, node: u8, asked: &[Hash], now_ms: u64) -> Answer<Vec<Hash>> {
        if asked.len() > LIMITS.max_node_bytes.div_ceil(MIN_UPLOAD_CHUNK_SIZE) {
            return Err("malformed_body");
        }
        self.expire(now_ms);
        let staged = self.nodes.get_mut(&node);
        let mut missing: Vec<Hash> = Vec::new();
        for hash in asked {
            let held = staged.as_ref().is_some_and(|s| s.chunks.contains_key(hash));
            if !held && !missing.contains(hash) {
                missing.push(*hash);
            }
        }
        if let Some(staged) = staged {
            staged.active_ms = now_ms;
        }
        Ok(missing)
    }

    fn assemble(&self, node: u8, manifest: &Manifest) -> Answer<Vec<u8>> {
        let size = manifest.chunk_size as usize;
        if !(MIN_UPLOAD_CHUNK_SIZE..=LIMITS.max_chunk_bytes).contains(&size)
            || manifest.total_bytes > LIMITS.max_node_bytes as u64
            || !manifest.is_consistent()
        {
            return Err("bad_manifest");
        }
        let staged = self.nodes.get(&node).map(|s| &s.chunks);
        let chunk = |hash: &Hash| staged.and_then(|chunks| chunks.get(hash));
        if manifest.chunks.iter().any(|hash| chunk(hash).is_none()) {
            return Err("missing_chunks");
        }
        let mut tensor = Vec::new();
        for (index, hash) in manifest.chunks.iter().enumerate() {
            let bytes = chunk(hash).ok_or("missing_chunks")?;
            let end = ((index + 1) * size).min(manifest.total_bytes as usize);
            if bytes.len() != end - index * size {
                return Err("bad_manifest");
            }
            tensor.extend_from_slice(bytes);
        }
        Ok(tensor)
    }

    fn release(&mut self, node: u8, chunks: &[Hash]) {
        if let Some(staged) = self.nodes.get_mut(&node) {
            for hash in chunks {
                staged.chunks.remove(hash);
            }
            if staged.chunks.is_empty() {
                self.nodes.remove(&node);
            }
        }
    }
}

/// A manifest over `count` chunks of `size` bytes (the last one shorter or not), honest or
/// lying in one of three ways.
fn read_manifest(reader: &mut Reader<'_>) -> Manifest {
    let size = CHUNK_SIZES[usize::from(reader.byte()) % CHUNK_SIZES.len()] as usize;
    let count = usize::from(reader.byte() % 7);
    let mut blob = Vec::new();
    for index in 0..count {
        let tag = reader.byte();
        let len = if index + 1 == count {
            1 + reader.len() % size
        } else {
            size
        };
        blob.extend(content(tag, len));
    }
    let mut manifest = Manifest::of(&blob, size);
    match reader.byte() % 4 {
        1 => manifest.total_bytes += 1,
        2 => manifest.chunks.reverse(),
        3 => {
            manifest.chunks.reverse();
            manifest.hash =
                Manifest::root(manifest.total_bytes, manifest.chunk_size, &manifest.chunks);
        }
        _ => {}
    }
    manifest
}

pub fn upload_store(data: &[u8]) {
    let mut store = UploadStore::new(LIMITS);
    let mut model = Model::default();
    let mut reader = Reader { data };
    let mut now_ms = 0u64;
    let code = |error: corex_coordinator::CoordinatorError| error.code();
    while !reader.data.is_empty() {
        match reader.byte() % 6 {
            0 => {
                let node = reader.node();
                let bytes = reader.chunk();
                let honest = !reader.byte().is_multiple_of(4);
                let claimed = if honest {
                    Hash::of(&bytes)
                } else {
                    Hash::of(b"another chunk")
                };
                let chunk = Hashed::new(Bytes::from(bytes.clone()));
                let answer = store.stage(node_id(node), claimed, chunk, now_ms);
                let expected = model.stage(node, claimed, &bytes, now_ms);
                assert_eq!(answer.map_err(code), expected, "stage");
            }
            1 => {
                let node = reader.node();
                let asked = reader.chunk_hashes();
                let answer = store.missing(node_id(node), &asked, now_ms);
                let expected = model.missing(node, &asked, now_ms);
                assert_eq!(answer.map_err(code), expected, "missing");
            }
            2 => {
                let node = reader.node();
                let manifest = read_manifest(&mut reader);
                let answer = store.assemble(node_id(node), &manifest).map_err(code);
                if let Ok(tensor) = &answer {
                    assert_eq!(tensor.len() as u64, manifest.total_bytes);
                    for (index, hash) in manifest.chunks.iter().enumerate() {
                        assert_eq!(Hash::of(&tensor[manifest.range_of(index)]), *hash);
                    }
                }
                assert_eq!(answer, model.assemble(node, &manifest), "assemble");
            }
            3 => {
                let node = reader.node();
                let chunks = reader.chunk_hashes();
                store.release(node_id(node), &chunks);
                model.release(node, &chunks);
            }
            4 => {
                store.expire(now_ms);
                model.expire(now_ms);
            }
            _ => now_ms += u64::from(reader.byte()) * 8,
        }
        assert!(model.total() <= LIMITS.max_total_bytes);
        assert!(
            model
                .nodes
                .values()
                .all(|n| n.bytes() <= LIMITS.max_node_bytes)
        );
    }
}

/// Operation sequences: a result staged in three chunks and assembled, resumed, released;
/// a node over its quota; the store full; uploads expiring; another node's chunks.
pub(crate) fn seeds() -> Vec<Vec<u8>> {
    let stage = |node: u8, tag: u8, len: u16| {
        let [low, high] = len.to_le_bytes();
        vec![0, node, tag, low, high, 1]
    };
    let asked = |op: u8, node: u8, chunks: &[(u8, u16)]| {
        let mut bytes = vec![op, node, chunks.len() as u8];
        for &(tag, len) in chunks {
            bytes.push(tag);
            bytes.extend_from_slice(&len.to_le_bytes());
        }
        bytes
    };
    // Assemble 1 KiB chunks tagged 1, 2, 3 (the last 1,000 bytes: 999 + 1).
    let assemble = |node: u8, lie: u8| vec![2, node, 1, 3, 1, 2, 3, 0xe7, 0x03, lie];
    let three: &[(u8, u16)] = &[(1, 1024), (2, 1024), (3, 1000)];
    let result: Vec<u8> = [stage(0, 1, 1024), stage(0, 2, 1024), stage(0, 3, 1000)].concat();
    let over_quota: Vec<u8> = (0..4).flat_map(|tag| stage(1, tag, 2048)).collect();
    let full: Vec<u8> = (0..6)
        .flat_map(|tag| stage(tag % 3, tag + 10, 2048))
        .collect();
    vec![
        [
            asked(1, 0, three),
            result.clone(),
            asked(1, 0, three),
            assemble(0, 0),
            asked(3, 0, three),
        ]
        .concat(),
        [
            result.clone(),
            assemble(1, 0),
            assemble(0, 1),
            assemble(0, 3),
        ]
        .concat(),
        [
            stage(0, 1, 1024),
            vec![5, 200],
            stage(0, 2, 1024),
            vec![5, 100, 4],
            assemble(0, 2),
        ]
        .concat(),
        [over_quota, stage(2, 9, 0), stage(2, 9, 2049)].concat(),
        [full, vec![5, 255, 1, 2, 0]].concat(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_seed_assembles_its_result() {
        let mut model = Model::default();
        for (tag, len) in [(1, 1024), (2, 1024), (3, 1000)] {
            let bytes = content(tag, len);
            model.stage(0, Hash::of(&bytes), &bytes, 0).expect("fits");
        }
        let blob = [content(1, 1024), content(2, 1024), content(3, 1000)].concat();
        let mut reader = Reader {
            data: &[1, 3, 1, 2, 3, 0xe7, 0x03, 0],
        };
        let manifest = read_manifest(&mut reader);
        assert_eq!(manifest, Manifest::of(&blob, 1024));
        assert_eq!(model.assemble(0, &manifest), Ok(blob));
        for seed in seeds() {
            upload_store(&seed);
        }
    }
}
