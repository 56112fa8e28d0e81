//! Request signatures: the three headers every API request carries, checked against its
//! method, path and body.
//!
//! Input: `method \n path \n content-digest \n signature-input \n signature \n body` (the body
//! is the rest, newlines included). An empty header, or one that is not UTF-8, is absent (a
//! server cannot read a header value that is not visible ASCII as text). Oracle: no panic; the
//! header check and the full check agree; and a request that verifies under the seed key is in
//! the one canonical form: signing its method, path, body, time and nonce again gives exactly
//! the headers it came with (no second encoding of one signed request passes).

use corex_core::request_signature::{
    SignatureHeaders, sign_request, verify_request, verify_request_headers,
};
use corex_core::{Hash, Keypair};

/// The key of the seed requests: what the fuzzer can start from.
fn seed_key() -> Keypair {
    Keypair::from_secret([7; 32])
}

pub fn request_signature(data: &[u8]) {
    let mut parts = data.splitn(6, |&byte| byte == b'\n');
    let mut next = || parts.next().unwrap_or_default();
    let method = String::from_utf8_lossy(next()).into_owned();
    let path = String::from_utf8_lossy(next()).into_owned();
    let header = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .ok()
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let (digest, input, signature) = (header(next()), header(next()), header(next()));
    let body = next();

    let full = verify_request(
        &method,
        &path,
        body,
        digest.as_deref(),
        input.as_deref(),
        signature.as_deref(),
    );
    let headers = verify_request_headers(
        &method,
        &path,
        digest.as_deref(),
        input.as_deref(),
        signature.as_deref(),
    );
    match (&full, &headers) {
        (Ok(request), Ok(signed)) => {
            assert_eq!(*request, signed.request);
            assert_eq!(signed.body_hash, Hash::of(body));
        }
        (Err(_), Ok(signed)) => assert_ne!(signed.body_hash, Hash::of(body)),
        (Ok(_), Err(error)) => panic!("the body check passed but the headers failed: {error}"),
        (Err(_), Err(_)) => {}
    }
    let Ok(request) = full else {
        return;
    };
    let key = seed_key();
    if request.signer == key.id() {
        let again = sign_request(&key, &method, &path, body, request.created, &request.nonce);
        let given = SignatureHeaders {
            content_digest: digest.unwrap_or_default(),
            signature_input: input.unwrap_or_default(),
            signature: signature.unwrap_or_default(),
        };
        assert_eq!(given, again, "a verified request is not in canonical form");
    }
}

/// Real signed requests: several methods, paths, bodies, times and nonces.
pub(crate) fn seeds() -> Vec<Vec<u8>> {
    let key = seed_key();
    let requests: [(&str, &str, &[u8], u64, &str); 5] = [
        (
            "POST",
            "/v1/results",
            b"\x00\x01\x02\x03CXR2",
            1_700_000_000,
            "a1b2c3",
        ),
        ("GET", "/v1/lease", b"", 5, "n"),
        (
            "POST",
            "/v1/jobs",
            b"{\"spec\":{}}\nsecond line",
            u64::MAX,
            "0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789abcdefABCD",
        ),
        ("put", "/v1/uploads/00ff", &[0xff; 40], 0, "z"),
        ("DELETE", "/", b"x", 42, "Nonce9"),
    ];
    requests
        .iter()
        .map(|&(method, path, body, created, nonce)| {
            let headers = sign_request(&key, method, path, body, created, nonce);
            let mut input = Vec::new();
            for part in [
                method,
                path,
                &headers.content_digest,
                &headers.signature_input,
                &headers.signature,
            ] {
                input.extend_from_slice(part.as_bytes());
                input.push(b'\n');
            }
            input.extend_from_slice(body);
            input
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_verifies() {
        for seed in seeds() {
            let mut parts = seed.splitn(6, |&byte| byte == b'\n');
            let mut next = || std::str::from_utf8(parts.next().unwrap_or_default()).ok();
            let (method, path, digest, input, signature) = (next(), next(), next(), next(), next());
            let body = parts.next().unwrap_or_default();
            let verified = verify_request(
                method.unwrap_or_default(),
                path.unwrap_or_default(),
                body,
                digest,
                input,
                signature,
            );
            assert_eq!(verified.expect("a seed verifies").signer, seed_key().id());
            request_signature(&seed);
        }
    }
}
