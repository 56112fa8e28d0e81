//! Request signatures after HTTP Message Signatures (RFC 9421), pure part.
//!
//! Every API request carries three headers:
//!
//! ```text
//! content-digest:  blake3=:<base64 of BLAKE3(body)>:
//! signature-input: corex=("@method" "@path" "content-digest");created=<unix s>;nonce="<hex>";keyid="<hex ed25519 key>";alg="ed25519"
//! signature:       corex=:<base64 ed25519 signature over the signature base>:
//! ```
//!
//! The signature base is the RFC 9421 one for those components. The caller supplies `created`
//! and `nonce` (clock and randomness live at the edges); freshness and replay checks against a
//! nonce cache are the server's job, on the [`VerifiedRequest`] this returns.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use thiserror::Error;

use crate::hash::Hash;
use crate::identity::{Keypair, NodeId, Signature};

pub const CONTENT_DIGEST: &str = "content-digest";
pub const SIGNATURE_INPUT: &str = "signature-input";
pub const SIGNATURE: &str = "signature";
const LABEL: &str = "corex";
const COVERED: &str = r#"("@method" "@path" "content-digest")"#;
/// Longest nonce accepted, so a nonce cache cannot be flooded with huge keys.
pub const MAX_NONCE_LEN: usize = 64;

/// The three header values to attach to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub content_digest: String,
    pub signature_input: String,
    pub signature: String,
}

/// What a valid signature establishes: who signed, when they say, and with which nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    pub signer: NodeId,
    pub created: u64,
    pub nonce: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestSignatureError {
    #[error("missing {0} header: every request must be signed")]
    MissingHeader(&'static str),
    #[error("malformed {header} header: {reason}")]
    Malformed {
        header: &'static str,
        reason: String,
    },
    #[error("content-digest does not match the body")]
    DigestMismatch,
    #[error("signature does not verify for key {0}")]
    BadSignature(String),
}

pub fn content_digest(body: &[u8]) -> String {
    content_digest_of(&Hash::of(body))
}

/// The content-digest header value for a body whose BLAKE3 hash is `body_hash`.
pub fn content_digest_of(body_hash: &Hash) -> String {
    format!("blake3=:{}:", BASE64.encode(body_hash.as_bytes()))
}

fn signature_params(created: u64, nonce: &str, keyid: &NodeId) -> String {
    format!(r#"{COVERED};created={created};nonce="{nonce}";keyid="{keyid}";alg="ed25519""#)
}

fn signature_base(method: &str, path: &str, digest: &str, params: &str) -> String {
    format!(
        "\"@method\": {}\n\"@path\": {path}\n\"content-digest\": {digest}\n\"@signature-params\": {params}",
        method.to_ascii_uppercase()
    )
}

/// Signs a request; `path` is the request target's path (no query string).
pub fn sign_request(
    key: &Keypair,
    method: &str,
    path: &str,
    body: &[u8],
    created: u64,
    nonce: &str,
) -> SignatureHeaders {
    sign_request_digest(key, method, path, &Hash::of(body), created, nonce)
}

/// [`sign_request`] for a body whose BLAKE3 hash is already known.
pub fn sign_request_digest(
    key: &Keypair,
    method: &str,
    path: &str,
    body_hash: &Hash,
    created: u64,
    nonce: &str,
) -> SignatureHeaders {
    let digest = content_digest_of(body_hash);
    let params = signature_params(created, nonce, &key.id());
    let base = signature_base(method, path, &digest, &params);
    let signature = key.sign(base.as_bytes());
    SignatureHeaders {
        content_digest: digest,
        signature_input: format!("{LABEL}={params}"),
        signature: format!("{LABEL}=:{}:", signature.to_base64()),
    }
}

/// Checks a request's signature headers against its method, path and body.
pub fn verify_request(
    method: &str,
    path: &str,
    body: &[u8],
    digest_header: Option<&str>,
    input_header: Option<&str>,
    signature_header: Option<&str>,
) -> Result<VerifiedRequest, RequestSignatureError> {
    verify_request_digest(
        method,
        path,
        &Hash::of(body),
        digest_header,
        input_header,
        signature_header,
    )
}

/// [`verify_request`] for a body whose BLAKE3 hash is already known.
pub fn verify_request_digest(
    method: &str,
    path: &str,
    body_hash: &Hash,
    digest_header: Option<&str>,
    input_header: Option<&str>,
    signature_header: Option<&str>,
) -> Result<VerifiedRequest, RequestSignatureError> {
    let signed =
        verify_request_headers(method, path, digest_header, input_header, signature_header)?;
    if signed.body_hash != *body_hash {
        return Err(RequestSignatureError::DigestMismatch);
    }
    Ok(signed.request)
}

/// A request whose headers carry a valid signature, before its body is read: the signature
/// covers the content-digest, so the body is known to be the one the signer meant once it
/// hashes to `body_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub request: VerifiedRequest,
    /// The BLAKE3 hash of the body, as the signed content-digest states it.
    pub body_hash: Hash,
}

/// Checks a request's signature from its headers alone, so that an unsigned or badly signed
/// request is refused before a byte of its body is read. The caller must still check that the
/// body hashes to [`SignedHeaders::body_hash`].
pub fn verify_request_headers(
    method: &str,
    path: &str,
    digest_header: Option<&str>,
    input_header: Option<&str>,
    signature_header: Option<&str>,
) -> Result<SignedHeaders, RequestSignatureError> {
    let digest = digest_header.ok_or(RequestSignatureError::MissingHeader(CONTENT_DIGEST))?;
    let input = input_header.ok_or(RequestSignatureError::MissingHeader(SIGNATURE_INPUT))?;
    let signature = signature_header.ok_or(RequestSignatureError::MissingHeader(SIGNATURE))?;

    let body_hash = parse_content_digest(digest)?;
    let params = input
        .strip_prefix(LABEL)
        .and_then(|rest| rest.strip_prefix('='))
        .ok_or_else(|| malformed(SIGNATURE_INPUT, "expected label 'corex='"))?;
    let parsed = parse_params(params)?;
    // Rebuild the parameters canonically: anything but the exact expected form is refused.
    if signature_params(parsed.created, &parsed.nonce, &parsed.signer) != params {
        return Err(malformed(
            SIGNATURE_INPUT,
            "parameters are not in the canonical corex form",
        ));
    }
    let encoded = signature
        .strip_prefix("corex=:")
        .and_then(|rest| rest.strip_suffix(':'))
        .ok_or_else(|| malformed(SIGNATURE, "expected 'corex=:<base64>:'"))?;
    let signature =
        Signature::from_base64(encoded).map_err(|error| malformed(SIGNATURE, error.to_string()))?;
    let base = signature_base(method, path, digest, params);
    parsed
        .signer
        .verify(base.as_bytes(), &signature)
        .map_err(|_| RequestSignatureError::BadSignature(parsed.signer.short()))?;
    Ok(SignedHeaders {
        request: parsed,
        body_hash,
    })
}

/// The hash a content-digest header states, in the one form [`content_digest_of`] writes.
fn parse_content_digest(digest: &str) -> Result<Hash, RequestSignatureError> {
    let bytes = digest
        .strip_prefix("blake3=:")
        .and_then(|rest| rest.strip_suffix(':'))
        .filter(|encoded| encoded.len() == 44)
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| malformed(CONTENT_DIGEST, "expected 'blake3=:<base64 of 32 bytes>:'"))?;
    let hash = Hash(bytes);
    // Only the canonical encoding: one digest, one header value.
    if content_digest_of(&hash) != digest {
        return Err(malformed(CONTENT_DIGEST, "not in canonical base64"));
    }
    Ok(hash)
}

fn malformed(header: &'static str, reason: impl Into<String>) -> RequestSignatureError {
    RequestSignatureError::Malformed {
        header,
        reason: reason.into(),
    }
}

fn parse_params(params: &str) -> Result<VerifiedRequest, RequestSignatureError> {
    let rest = params
        .strip_prefix(COVERED)
        .ok_or_else(|| malformed(SIGNATURE_INPUT, format!("must cover exactly {COVERED}")))?;
    let mut created = None;
    let mut nonce = None;
    let mut keyid = None;
    for item in rest.split(';').skip(1) {
        let (name, value) = item.split_once('=').ok_or_else(|| {
            malformed(SIGNATURE_INPUT, format!("parameter '{item}' has no value"))
        })?;
        let unquoted = || {
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| malformed(SIGNATURE_INPUT, format!("{name} must be quoted")))
        };
        match name {
            "created" => {
                created = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| malformed(SIGNATURE_INPUT, "created must be unix seconds"))?,
                )
            }
            "nonce" => nonce = Some(unquoted()?.to_owned()),
            "keyid" => {
                keyid = Some(
                    unquoted()?
                        .parse::<NodeId>()
                        .map_err(|error| malformed(SIGNATURE_INPUT, format!("keyid: {error}")))?,
                )
            }
            "alg" if value == "\"ed25519\"" => {}
            _ => {
                return Err(malformed(
                    SIGNATURE_INPUT,
                    format!("unexpected parameter '{item}'"),
                ));
            }
        }
    }
    let nonce = nonce.ok_or_else(|| malformed(SIGNATURE_INPUT, "nonce is required"))?;
    if nonce.is_empty()
        || nonce.len() > MAX_NONCE_LEN
        || !nonce.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(malformed(
            SIGNATURE_INPUT,
            format!("nonce must be 1..={MAX_NONCE_LEN} ASCII letters or digits"),
        ));
    }
    Ok(VerifiedRequest {
        signer: keyid.ok_or_else(|| malformed(SIGNATURE_INPUT, "keyid is required"))?,
        created: created.ok_or_else(|| malformed(SIGNATURE_INPUT, "created is required"))?,
        nonce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(
        headers: &SignatureHeaders,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<VerifiedRequest, RequestSignatureError> {
        verify_request(
            method,
            path,
            body,
            Some(&headers.content_digest),
            Some(&headers.signature_input),
            Some(&headers.signature),
        )
    }

    #[test]
    fn a_signed_request_verifies() {
        let key = Keypair::from_secret([3; 32]);
        let headers = sign_request(
            &key,
            "post",
            "/v1/results",
            b"body",
            1_700_000_000,
            "abc123",
        );
        let verified = verify(&headers, "POST", "/v1/results", b"body").expect("valid");
        assert_eq!(verified.signer, key.id());
        assert_eq!(verified.created, 1_700_000_000);
        assert_eq!(verified.nonce, "abc123");
    }

    #[test]
    fn tampering_with_any_covered_part_is_refused() {
        let key = Keypair::from_secret([3; 32]);
        let headers = sign_request(&key, "POST", "/v1/results", b"body", 5, "n1");
        assert_eq!(
            verify(&headers, "POST", "/v1/results", b"other").unwrap_err(),
            RequestSignatureError::DigestMismatch
        );
        assert!(matches!(
            verify(&headers, "GET", "/v1/results", b"body"),
            Err(RequestSignatureError::BadSignature(_))
        ));
        assert!(matches!(
            verify(&headers, "POST", "/v1/lease", b"body"),
            Err(RequestSignatureError::BadSignature(_))
        ));
        let mut changed_nonce = headers.clone();
        changed_nonce.signature_input = changed_nonce.signature_input.replace("n1", "n2");
        assert!(matches!(
            verify(&changed_nonce, "POST", "/v1/results", b"body"),
            Err(RequestSignatureError::BadSignature(_))
        ));
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let key = Keypair::from_secret([3; 32]);
        let forger = Keypair::from_secret([4; 32]);
        let mut headers = sign_request(&forger, "POST", "/p", b"", 5, "n");
        headers.signature_input = headers
            .signature_input
            .replace(&forger.id().to_hex(), &key.id().to_hex());
        assert!(matches!(
            verify(&headers, "POST", "/p", b""),
            Err(RequestSignatureError::BadSignature(_))
        ));
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        assert_eq!(
            verify_request("GET", "/", b"", None, None, None).unwrap_err(),
            RequestSignatureError::MissingHeader(CONTENT_DIGEST)
        );
        let key = Keypair::from_secret([3; 32]);
        let mut headers = sign_request(&key, "GET", "/", b"", 5, "n");
        headers.signature_input = headers.signature_input.replace("created=5", "created=x");
        assert!(matches!(
            verify(&headers, "GET", "/", b""),
            Err(RequestSignatureError::Malformed { .. })
        ));
    }
}
