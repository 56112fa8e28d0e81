//! Transport for Corex: TLS 1.3 with pinned self-signed certificates, key files readable by
//! their owner only, and the signed HTTPS client with chunked, hash-checked, resumable transfers
//! (downloads staged on disk when the caller gives a directory), and chunk-by-chunk access to
//! a blob with a persistent chunk cache.

pub mod client;
pub mod error;
pub mod keys;
pub mod sparse;
pub mod stage;
pub mod tls;
pub mod transfer;

pub use client::{CoordinatorClient, JobDescriptor};
pub use error::NetError;
pub use keys::{load_keypair, load_or_create_keypair, random_bytes};
pub use sparse::ChunkOrigin;
pub use tls::{TlsIdentity, fingerprint, pinned_client_config};
pub use transfer::{TransferPolicy, UploadReport};
