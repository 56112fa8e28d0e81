//! Protocol messages decoded from JSON: the request bodies the coordinator's API reads from
//! any key, and the answers nodes and job owners read back.
//!
//! Every input is tried as every message type. Oracle: no panic; a message that decodes
//! encodes again; and for messages without floats, decoding what was encoded gives the same
//! message (floats are left out of that check: JSON has no infinities, so a number too large
//! for an f32 decodes to one and is written back as `null`).

use std::fmt::Debug;

use corex_core::JobSpec;
use corex_core::chunk::Manifest;
use corex_core::hash::Hash;
use corex_core::messages::{
    ApiError, ChallengeCommit, ChallengeIssued, ChallengeVector, ChunkedResult,
    DeclineRevealRequest, DeviceBenchmark, DeviceReport, JobOutputs, JobReport, JobStatus,
    LeaseRequest, LeaseResponse, MatmulSpeed, MissingChunksRequest, MissingChunksResponse,
    NodeInfo, RegisterRequest, RegisterResponse, ResultHeader, SubmitJobRequest, SubmitJobResponse,
    UploadDatasetRequest, UploadDatasetResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::frame::header;

/// Decodes `data` as a `T`; what decodes must encode and decode back to itself.
fn exact<T: Serialize + DeserializeOwned + Eq + Debug>(data: &[u8]) -> Option<T> {
    let value = serde_json::from_slice::<T>(data).ok()?;
    let json = serde_json::to_vec(&value).expect("a decoded message encodes");
    let again: T = serde_json::from_slice(&json).expect("an encoded message decodes");
    assert_eq!(again, value);
    Some(value)
}

/// Decodes `data` as a `T` with floats in it; what decodes must encode.
fn with_floats<T: Serialize + DeserializeOwned>(data: &[u8]) -> Option<T> {
    let value = serde_json::from_slice::<T>(data).ok()?;
    serde_json::to_vec(&value).expect("a decoded message encodes");
    Some(value)
}

pub fn messages(data: &[u8]) {
    // What the coordinator reads from any key.
    exact::<RegisterRequest>(data);
    exact::<ChallengeCommit>(data);
    exact::<LeaseRequest>(data);
    exact::<DeclineRevealRequest>(data);
    exact::<MissingChunksRequest>(data);
    if let Some(request) = exact::<UploadDatasetRequest>(data) {
        request.manifest.is_consistent();
    }
    if let Some(result) = with_floats::<ChunkedResult>(data) {
        result.tensor.is_consistent();
    }
    with_floats::<SubmitJobRequest>(data);
    // What nodes and owners read back.
    exact::<RegisterResponse>(data);
    exact::<ChallengeIssued>(data);
    exact::<ChallengeVector>(data);
    exact::<LeaseResponse>(data);
    exact::<MissingChunksResponse>(data);
    exact::<SubmitJobResponse>(data);
    exact::<UploadDatasetResponse>(data);
    exact::<ApiError>(data);
    exact::<NodeInfo>(data);
    with_floats::<JobStatus>(data);
    with_floats::<JobReport>(data);
    with_floats::<JobOutputs>(data);
}

fn device() -> DeviceReport {
    DeviceReport {
        hostname: "node-1".into(),
        os: "linux".into(),
        cpu_model: "Fuzz CPU @ 3 GHz".into(),
        logical_cores: 16,
        memory_bytes: 64 << 30,
        gpus: vec!["H100".into()],
        compute_threads: 8,
        agent_version: "0.1.0".into(),
        claimed_gflops: Some(120),
        fingerprint: Hash::of(b"machine"),
        benchmark: Some(DeviceBenchmark {
            matmul: vec![MatmulSpeed {
                backend: corex_core::ComputeBackend::Cpu,
                threads: 8,
                mflops: 90_000,
            }],
            memory_mbps: 20_000,
            device_memory: Vec::new(),
            round_trip_us: 350,
            download_mbps: 900,
            spread_ppm: 1_500,
            repeats: 5,
        }),
        backend: corex_core::ComputeBackend::Cpu,
        adapter: None,
    }
}

/// Real request bodies and answers, as the client and the coordinator encode them.
pub(crate) fn seeds() -> Vec<Vec<u8>> {
    let manifest = Manifest::of(&[7u8; 3000], 1024);
    let chunks = manifest.chunks.clone();
    vec![
        encode(&RegisterRequest { device: device() }),
        encode(&ChallengeCommit {
            commitment: Hash::of(b"product"),
        }),
        encode(&LeaseRequest { wait_ms: 25_000 }),
        encode(&DeclineRevealRequest {
            fragment: Hash::of(b"fragment"),
        }),
        encode(&MissingChunksRequest { chunks }),
        encode(&UploadDatasetRequest {
            manifest: manifest.clone(),
        }),
        encode(&ChunkedResult {
            header: header(64, 0.75),
            tensor: manifest.clone(),
        }),
        encode(&SubmitJobRequest {
            spec: JobSpec::default_digits(),
        }),
        encode(&LeaseResponse::Idle { retry_ms: 500 }),
        encode(&LeaseResponse::Reveal {
            fragment: Hash::of(b"fragment"),
            model: Hash::of(b"model"),
            steps: vec![4, 8],
            leaves: vec![1, 7],
            feedback: vec![0, 3],
        }),
        encode(&ApiError {
            error: "malformed_body".into(),
            message: "expected value at line 1 column 1".into(),
        }),
        encode(&ChunkedResult {
            header: ResultHeader {
                state_paths: Some(corex_core::feedback_state::StatePaths {
                    before: vec![vec![Hash::of(b"sibling")]],
                    after: vec![vec![Hash::of(b"other sibling")]],
                }),
                checkpoint_paths: Some(vec![vec![Hash::of(b"checkpoint sibling")]]),
                ..header(0, 0.0)
            },
            tensor: manifest,
        }),
    ]
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("messages encode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_decodes_as_some_message() {
        for seed in seeds() {
            let decodes = serde_json::from_slice::<serde_json::Value>(&seed)
                .is_ok_and(|value| value.is_object());
            assert!(decodes, "{}", String::from_utf8_lossy(&seed));
            messages(&seed);
        }
        assert!(exact::<LeaseRequest>(b"{\"wait_ms\": 7}").is_some());
        assert!(with_floats::<SubmitJobRequest>(&seeds()[7]).is_some());
    }
}
