//! TLS 1.3 with self-signed, pinned certificates.
//!
//! The coordinator makes a self-signed certificate on first start and keeps it in its data
//! directory; its fingerprint (BLAKE3 of the DER bytes, hex) is printed so that nodes can pin
//! it. A node's client accepts exactly that certificate and still checks the handshake
//! signature, so the channel is authenticated without any certificate authority.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use corex_core::Hash;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::NetError;
use crate::keys::{check_owner_only, write_private};

const CERT_FILE: &str = "tls-cert.der";
const KEY_FILE: &str = "tls-key.der";

/// A certificate and its private key.
pub struct TlsIdentity {
    pub certificate: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl TlsIdentity {
    /// Loads the certificate kept in `dir`, or makes and keeps a new one. Its private key is
    /// written readable by its owner only, and refused if group or others may read it.
    pub fn load_or_create(dir: &Path) -> Result<Self, NetError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let read = |path: &Path| {
            fs::read(path).map_err(|source| NetError::Io {
                path: path.to_owned(),
                source,
            })
        };
        if cert_path.exists() && key_path.exists() {
            check_owner_only(&key_path)?;
            return Ok(Self {
                certificate: CertificateDer::from(read(&cert_path)?),
                key: PrivatePkcs8KeyDer::from(read(&key_path)?),
            });
        }
        let generated = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "corex-coordinator".to_owned(),
        ])
        .map_err(|error| NetError::Tls(error.to_string()))?;
        let key = generated.signing_key.serialize_der();
        write_private(&key_path, &key)?;
        let certificate = generated.cert.der().to_vec();
        fs::write(&cert_path, &certificate).map_err(|source| NetError::Io {
            path: cert_path.clone(),
            source,
        })?;
        Ok(Self {
            certificate: CertificateDer::from(certificate),
            key: PrivatePkcs8KeyDer::from(key),
        })
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.certificate)
    }

    /// A TLS 1.3-only server configuration for this identity.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, NetError> {
        rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| NetError::Tls(error.to_string()))?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.certificate.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .map_err(|error| NetError::Tls(error.to_string()))
    }
}

/// The pin of a certificate: BLAKE3 of its DER encoding, as 64 hex digits.
pub fn fingerprint(certificate: &CertificateDer<'_>) -> String {
    Hash::of(certificate.as_ref()).to_hex()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.3-only client configuration that trusts exactly the certificate with `pin`.
pub fn pinned_client_config(pin: &str) -> Result<rustls::ClientConfig, NetError> {
    let pin: Hash = pin.trim().parse().map_err(|error| {
        NetError::Tls(format!("pin must be a 64-digit hex fingerprint: {error}"))
    })?;
    let provider = provider();
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| NetError::Tls(error.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate { pin, provider }))
            .with_no_client_auth(),
    )
}

#[derive(Debug)]
struct PinnedCertificate {
    pin: Hash,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Hash::of(end_entity.as_ref()) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "server certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_kept_across_restarts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = TlsIdentity::load_or_create(dir.path()).expect("created");
        let second = TlsIdentity::load_or_create(dir.path()).expect("loaded");
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert!(first.server_config().is_ok());
        assert!(pinned_client_config(&first.fingerprint()).is_ok());
        assert!(pinned_client_config("nope").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn the_private_key_is_owner_only_and_refused_when_others_may_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        TlsIdentity::load_or_create(dir.path()).expect("created");
        let key = dir.path().join(KEY_FILE);
        let mode = fs::metadata(&key).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(
            TlsIdentity::load_or_create(dir.path()),
            Err(NetError::KeyFile { .. })
        ));
    }
}
