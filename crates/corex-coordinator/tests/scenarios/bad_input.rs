//! Bad input against a running coordinator: each request gets a clear 4xx naming the problem,
//! and none of them changes the job: it finishes with the same model as a clean run. Chunked
//! uploads included: chunks that do not match their hash, oversized or unsigned chunks, and
//! results naming chunks never uploaded.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestNet, adam, assert_refused, expect_error, small_job, wait_for_end};
use corex_coordinator::CoordinatorConfig;
use corex_core::chunk::Manifest;
use corex_core::messages::{ChunkedResult, JobState, LeaseResponse, ResultHeader};
use corex_core::request_signature::sign_request;
use corex_core::result_frame::{ResultTensor, decode_result, encode_result};
use corex_core::tensor::{bytes_to_f32s, f32s_to_bytes};
use corex_core::{Fragment, Hash, Keypair};
use corex_ml::Dataset;
use corex_net::CoordinatorClient;

const BODY_LIMIT: usize = 2 * 1024 * 1024;
const UPLOAD_CHUNK_LIMIT: usize = 4096;

/// Only the job owner (key 100) may submit jobs or stage dataset chunks here, so that a
/// stranger's chunk upload is refused (under an open policy it would be a dataset upload).
fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        admission: corex_coordinator::Admission {
            policy: corex_coordinator::AdmissionPolicy::AllowList(BTreeSet::from([
                Keypair::from_secret([100; 32]).id(),
            ])),
            operators: BTreeSet::new(),
        },
        max_body_bytes: BODY_LIMIT,
        max_upload_chunk_bytes: UPLOAD_CHUNK_LIMIT,
        ..CoordinatorConfig::one_machine()
    }
}

/// A result for `fragment` signed by `key`, with `gradient` as the tensor, framed.
fn result_body(
    key: &Keypair,
    fragment: &Fragment,
    model: Hash,
    gradient: &[f32],
    samples: u32,
) -> Vec<u8> {
    let (header, tensor) = result_parts(key, fragment, model, gradient, samples);
    encode_result(&header, tensor)
}

/// The header and tensor bytes of such a result.
fn result_parts(
    key: &Keypair,
    fragment: &Fragment,
    model: Hash,
    gradient: &[f32],
    samples: u32,
) -> (ResultHeader, Vec<u8>) {
    let tensor = f32s_to_bytes(gradient);
    let result_hash = Hash::of(&tensor);
    let header = common::signed_header(key, fragment.id, model, result_hash, 1.0, samples, None);
    (header, tensor)
}

/// Uploads `tensor` as chunks of `chunk_size` from `client`; its manifest.
async fn upload_chunks(client: &CoordinatorClient, tensor: &[u8], chunk_size: usize) -> Manifest {
    let manifest = Manifest::of(tensor, chunk_size);
    for (index, chunk) in manifest.chunks.iter().enumerate() {
        let bytes = tensor[manifest.range_of(index)].to_vec();
        client
            .call("PUT", &format!("/v1/uploads/{chunk}"), bytes)
            .await
            .unwrap();
    }
    manifest
}

async fn finished_model(net: &mut TestNet, owner: &CoordinatorClient, job: &Hash) -> Hash {
    net.spawn_node(21);
    net.spawn_node(22);
    let status = wait_for_end(owner, job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Finished);
    status.model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let spec = small_job(adam());

    // The clean run, for the model every run of this job must end with.
    let mut clean = TestNet::start(config()).await;
    let owner = clean.client(100);
    let job = owner.submit_job(&spec).await.unwrap();
    let clean_model = finished_model(&mut clean, &owner, &job).await;
    clean.shutdown().await;

    let mut net = TestNet::start(config()).await;
    let owner = net.client(100);
    let job = owner.submit_job(&spec).await.unwrap();
    let holder_key = Keypair::from_secret([1; 32]);
    let holder = net.client(1);
    let other_key = Keypair::from_secret([2; 32]);
    let other = net.client(2);
    let stranger = net.client(3);
    let device = corex_node::device::detect(1, &corex_ml::Backend::cpu());
    holder.register(device.clone()).await.unwrap();
    other.register(device).await.unwrap();

    // An unregistered node may not lease.
    let lease_body = br#"{"wait_ms": 0}"#.to_vec();
    expect_error(
        &stranger,
        "POST",
        "/v1/lease",
        lease_body.clone(),
        403,
        "unregistered_node",
    )
    .await;

    let LeaseResponse::Work { fragment, .. } = holder.lease(0).await.unwrap() else {
        panic!("a fresh job has work");
    };
    let model = fragment.model;
    let parameters = bytes_to_f32s(&holder.fetch_blob(&model).await.unwrap()).unwrap();
    let dataset = Dataset::digits().unwrap();
    let honest = corex_ml::compute_gradient(
        &corex_ml::Backend::cpu(),
        &spec.model,
        &parameters,
        &dataset,
        &fragment.indices,
    )
    .unwrap();
    let samples = honest.samples;

    // Malformed bodies.
    expect_error(
        &holder,
        "POST",
        "/v1/results",
        b"garbage".to_vec(),
        400,
        "malformed_body",
    )
    .await;
    expect_error(
        &holder,
        "POST",
        "/v1/lease",
        b"{not json".to_vec(),
        400,
        "malformed_body",
    )
    .await;
    expect_error(
        &owner,
        "POST",
        "/v1/jobs",
        br#"{"spec": 5}"#.to_vec(),
        400,
        "malformed_body",
    )
    .await;
    let mut bad_spec = spec.clone();
    bad_spec.fragment_samples = 0;
    let body = serde_json::to_vec(&serde_json::json!({ "spec": bad_spec })).unwrap();
    expect_error(&owner, "POST", "/v1/jobs", body, 422, "invalid_spec").await;

    // Wrong tensor shape, NaN and infinity.
    let short = &honest.gradient[..honest.gradient.len() - 1];
    let body = result_body(&holder_key, &fragment, model, short, samples);
    expect_error(&holder, "POST", "/v1/results", body, 422, "wrong_shape").await;
    for poison in [f32::NAN, f32::INFINITY] {
        let mut poisoned = honest.gradient.clone();
        poisoned[7] = poison;
        let body = result_body(&holder_key, &fragment, model, &poisoned, samples);
        let message = expect_error(&holder, "POST", "/v1/results", body, 422, "non_finite").await;
        assert!(message.contains("index 7"), "{message}");
    }
    let body = result_body(&holder_key, &fragment, model, &honest.gradient, samples + 1);
    expect_error(
        &holder,
        "POST",
        "/v1/results",
        body,
        422,
        "wrong_sample_count",
    )
    .await;

    // A body over the size limit: refused on its declared length, before it is read (the
    // server may hang up before the client has sent it all).
    let oversized = vec![0; BODY_LIMIT + 1];
    let headers = holder
        .signed_headers("POST", "/v1/results", &oversized)
        .unwrap();
    match holder
        .send_raw("POST", "/v1/results", oversized, Some(&headers))
        .await
    {
        Ok((status, bytes)) => {
            assert_refused(status, &bytes, 413, "body_too_large");
        }
        Err(error) => assert!(format!("{error:?}").contains("BrokenPipe"), "{error:?}"),
    }

    // No signature, a forged signature, a replayed nonce, a signature over another body.
    let honest_body = result_body(&holder_key, &fragment, model, &honest.gradient, samples);
    let (status, bytes) = holder
        .send_raw("POST", "/v1/results", honest_body.clone(), None)
        .await
        .unwrap();
    assert_refused(status, &bytes, 401, "unsigned_request");
    let forger = Keypair::from_secret([66; 32]);
    let mut forged = sign_request(
        &forger,
        "POST",
        "/v1/results",
        &honest_body,
        now(),
        "forged1",
    );
    forged.signature_input = forged
        .signature_input
        .replace(&forger.id().to_hex(), &holder_key.id().to_hex());
    let (status, bytes) = holder
        .send_raw("POST", "/v1/results", honest_body.clone(), Some(&forged))
        .await
        .unwrap();
    assert_refused(status, &bytes, 401, "bad_signature");
    let mut swapped = holder
        .signed_headers("POST", "/v1/results", b"other")
        .unwrap();
    swapped.content_digest = corex_core::request_signature::content_digest(&honest_body);
    let (status, bytes) = holder
        .send_raw("POST", "/v1/results", honest_body.clone(), Some(&swapped))
        .await
        .unwrap();
    assert_refused(status, &bytes, 401, "bad_signature");
    // A node may read the spec of a job it computes.
    let path = format!("/v1/jobs/{job}/spec");
    let once = holder.signed_headers("GET", &path, b"").unwrap();
    let (status, _) = holder
        .send_raw("GET", &path, Vec::new(), Some(&once))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, bytes) = holder
        .send_raw("GET", &path, Vec::new(), Some(&once))
        .await
        .unwrap();
    assert_refused(status, &bytes, 401, "replayed_nonce");
    let stale = sign_request(&holder_key, "GET", &path, b"", now() - 3_600, "old1");
    let (status, bytes) = holder
        .send_raw("GET", &path, Vec::new(), Some(&stale))
        .await
        .unwrap();
    assert_refused(status, &bytes, 401, "stale_signature");

    // A result for a fragment leased to another node, and a commitment not signed by the sender.
    let body = result_body(&other_key, &fragment, model, &honest.gradient, samples);
    expect_error(&other, "POST", "/v1/results", body, 403, "leased_to_other").await;
    let body = result_body(&other_key, &fragment, model, &honest.gradient, samples);
    expect_error(&holder, "POST", "/v1/results", body, 401, "bad_commitment").await;

    // A result for a stale model version.
    let body = result_body(
        &holder_key,
        &fragment,
        Hash::of(b"an older model"),
        &honest.gradient,
        samples,
    );
    expect_error(&holder, "POST", "/v1/results", body, 409, "stale_model").await;

    // Unknown and malformed ids.
    let mut unknown = fragment.clone();
    unknown.id = Hash::of(b"no such fragment");
    let body = result_body(&holder_key, &unknown, model, &honest.gradient, samples);
    expect_error(
        &holder,
        "POST",
        "/v1/results",
        body,
        404,
        "unknown_fragment",
    )
    .await;
    let nowhere = Hash::of(b"no such job");
    expect_error(
        &owner,
        "GET",
        &format!("/v1/jobs/{nowhere}"),
        Vec::new(),
        404,
        "unknown_job",
    )
    .await;
    expect_error(
        &owner,
        "GET",
        "/v1/jobs/xyz",
        Vec::new(),
        400,
        "malformed_id",
    )
    .await;
    expect_error(
        &owner,
        "GET",
        &format!("/v1/blobs/{nowhere}"),
        Vec::new(),
        404,
        "unknown_blob",
    )
    .await;
    expect_error(
        &owner,
        "GET",
        &format!("/v1/jobs/{job}/weights"),
        Vec::new(),
        409,
        "job_not_finished",
    )
    .await;
    expect_error(
        &owner,
        "GET",
        "/v1/teapot",
        Vec::new(),
        404,
        "no_such_endpoint",
    )
    .await;

    // Chunks that do not hash to their name, over the chunk limit, unsigned, from an unregistered
    // node, under a malformed name; a malformed missing-chunks question.
    let chunk = vec![5u8; 2048];
    let chunk_hash = Hash::of(&chunk);
    let chunk_path = format!("/v1/uploads/{chunk_hash}");
    let message = expect_error(
        &holder,
        "PUT",
        &format!("/v1/uploads/{}", Hash::of(b"other bytes")),
        chunk.clone(),
        422,
        "chunk_hash_mismatch",
    )
    .await;
    assert!(message.contains(&chunk_hash.to_hex()), "{message}");
    let oversized = vec![5u8; UPLOAD_CHUNK_LIMIT + 1];
    expect_error(
        &holder,
        "PUT",
        &format!("/v1/uploads/{}", Hash::of(&oversized)),
        oversized,
        413,
        "body_too_large",
    )
    .await;
    let (status, bytes) = holder
        .send_raw("PUT", &chunk_path, chunk.clone(), None)
        .await
        .unwrap();
    assert_refused(status, &bytes, 401, "unsigned_request");
    expect_error(
        &stranger,
        "PUT",
        &chunk_path,
        chunk.clone(),
        403,
        "not_admitted",
    )
    .await;
    expect_error(
        &holder,
        "PUT",
        "/v1/uploads/xyz",
        chunk,
        400,
        "malformed_id",
    )
    .await;
    expect_error(
        &holder,
        "POST",
        "/v1/uploads/missing",
        b"[1, 2]".to_vec(),
        400,
        "malformed_body",
    )
    .await;
    assert_eq!(
        holder.missing_uploads(&[chunk_hash]).await.unwrap(),
        BTreeSet::from([chunk_hash]),
        "a refused chunk was staged"
    );

    // Chunked results: one naming chunks never uploaded (the refusal names them), one whose
    // manifest does not add up, one naming another node's chunks, and one whose assembled
    // tensor has the wrong shape, refused like the inline one.
    let (header, tensor) = result_parts(&holder_key, &fragment, model, &honest.gradient, samples);
    let manifest = Manifest::of(&tensor, 1024);
    let chunked = |header: &ResultHeader, tensor: &Manifest| {
        serde_json::to_vec(&ChunkedResult {
            header: header.clone(),
            tensor: tensor.clone(),
        })
        .unwrap()
    };
    let message = expect_error(
        &holder,
        "POST",
        "/v1/results/chunked",
        chunked(&header, &manifest),
        409,
        "missing_chunks",
    )
    .await;
    assert!(message.contains(&manifest.chunks[0].to_hex()), "{message}");
    let mut lying = manifest.clone();
    lying.total_bytes -= 4;
    expect_error(
        &holder,
        "POST",
        "/v1/results/chunked",
        chunked(&header, &lying),
        422,
        "bad_manifest",
    )
    .await;
    upload_chunks(&other, &tensor, 1024).await;
    expect_error(
        &holder,
        "POST",
        "/v1/results/chunked",
        chunked(&header, &manifest),
        409,
        "missing_chunks",
    )
    .await;
    let (short_header, short_tensor) = result_parts(&holder_key, &fragment, model, short, samples);
    let short_manifest = upload_chunks(&holder, &short_tensor, 1024).await;
    expect_error(
        &holder,
        "POST",
        "/v1/results/chunked",
        chunked(&short_header, &short_manifest),
        422,
        "wrong_shape",
    )
    .await;

    // None of that moved the job.
    let status = owner.job_status(&job).await.unwrap();
    assert_eq!((status.round, status.state.clone()), (0, JobState::Running));
    assert!(status.nodes.is_empty());

    // The honest result is taken once; sending it again is refused.
    let (header, tensor) = decode_result(&honest_body).unwrap();
    holder
        .submit_result(&header, ResultTensor::from_bytes(tensor.to_vec()))
        .await
        .unwrap();
    let again = holder
        .submit_result(&header, ResultTensor::from_bytes(tensor.to_vec()))
        .await
        .unwrap_err();
    assert_eq!(again.api_code(), Some("already_done"));

    let model_after_abuse = finished_model(&mut net, &owner, &job).await;
    assert_eq!(
        model_after_abuse, clean_model,
        "bad input changed the trained model"
    );
    net.shutdown().await;
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
