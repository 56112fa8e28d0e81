//! Transport for Corex: TLS 1.3 with pinned self-signed certificates, key files readable by
//! their owner only, and the signed HTTPS client with chunked, hash-checked blob transfer.

pub mod client;
pub mod error;
pub mod keys;
pub mod tls;

pub use client::{CoordinatorClient, JobDescriptor};
pub use error::NetError;
pub use keys::{load_keypair, load_or_create_keypair, random_bytes};
pub use tls::{TlsIdentity, fingerprint, pinned_client_config};
