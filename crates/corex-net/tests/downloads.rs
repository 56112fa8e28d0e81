//! Resumable downloads on real TLS sockets: the real `CoordinatorClient` against a small blob
//! server that uses the project's own certificate code, speaks just enough HTTP/1.1 for chunk
//! fetches, and misbehaves as scripted (cuts a chunk's body halfway, alters a chunk, goes down).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corex_core::chunk::Manifest;
use corex_core::{Hash, Keypair};
use corex_net::{CoordinatorClient, TlsIdentity, TransferPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const CHUNK: usize = 1000;
const CHUNKS: usize = 10;

/// How the server misbehaves when chunk `index` is asked for the `nth` time (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Sends the headers and half the body, then drops the connection.
    CutBody { index: usize, times: usize },
    /// Serves the chunk with one byte flipped.
    Alter { index: usize, times: usize },
    /// Drops the connection without answering for this chunk and every later one.
    DownFrom { index: usize },
}

struct Blob {
    bytes: Vec<u8>,
    manifest: Manifest,
}

#[derive(Default)]
struct Script {
    faults: Vec<Fault>,
    /// How often each chunk was asked for.
    requests: BTreeMap<usize, usize>,
}

enum Reply {
    Whole(Vec<u8>),
    Cut(Vec<u8>),
    Hangup,
}

impl Script {
    fn answer(&mut self, blob: &Blob, path: &str) -> Reply {
        let prefix = format!("/v1/blobs/{}", blob.manifest.hash);
        let Some(rest) = path.strip_prefix(&prefix) else {
            return Reply::Hangup;
        };
        let Some(index) = rest.strip_prefix("/chunks/") else {
            return Reply::Whole(serde_json::to_vec(&blob.manifest).unwrap());
        };
        let index: usize = index.parse().unwrap();
        let nth = self.requests.entry(index).or_default();
        *nth += 1;
        let mut chunk = blob.bytes[blob.manifest.range_of(index)].to_vec();
        for fault in &self.faults {
            match *fault {
                Fault::CutBody { index: at, times } if at == index && *nth <= times => {
                    return Reply::Cut(chunk);
                }
                Fault::Alter { index: at, times } if at == index && *nth <= times => {
                    chunk[3] ^= 0xff;
                }
                Fault::DownFrom { index: from } if index >= from => return Reply::Hangup,
                _ => {}
            }
        }
        Reply::Whole(chunk)
    }
}

struct BlobServer {
    url: String,
    pin: String,
    blob: Arc<Blob>,
    script: Arc<Mutex<Script>>,
    _dir: tempfile::TempDir,
}

impl BlobServer {
    async fn start(faults: Vec<Fault>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsIdentity::load_or_create(dir.path()).unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls.server_config().unwrap()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let bytes: Vec<u8> = (0..CHUNK * CHUNKS - 123)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let manifest = Manifest::of(&bytes, CHUNK);
        let blob = Arc::new(Blob { bytes, manifest });
        let script = Arc::new(Mutex::new(Script {
            faults,
            ..Script::default()
        }));
        let (served, scripted) = (blob.clone(), script.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, blob, script) = (acceptor.clone(), served.clone(), scripted.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(socket).await {
                        let _ = serve(stream, &blob, &script).await;
                    }
                });
            }
        });
        Self {
            url,
            pin: tls.fingerprint(),
            blob,
            script,
            _dir: dir,
        }
    }

    fn client(&self) -> CoordinatorClient {
        CoordinatorClient::new(&self.url, &self.pin, Keypair::from_secret([7; 32]))
            .unwrap()
            .with_transfer_policy(quick(3))
    }

    fn requests(&self) -> BTreeMap<usize, usize> {
        self.script.lock().unwrap().requests.clone()
    }

    fn heal(&self) {
        self.script.lock().unwrap().faults.clear();
    }
}

/// Retries without the production backoff.
fn quick(attempts: u32) -> TransferPolicy {
    TransferPolicy {
        attempts,
        first_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..TransferPolicy::default()
    }
}

/// Answers requests on one connection until the client closes it or the script hangs up.
async fn serve(
    mut stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    blob: &Blob,
    script: &Mutex<Script>,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        let head = loop {
            if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                buffer.drain(..end + 4);
                break head;
            }
            let mut read = [0u8; 4096];
            let n = stream.read(&mut read).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&read[..n]);
        };
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let reply = script.lock().unwrap().answer(blob, &path);
        let (body, whole) = match reply {
            Reply::Whole(body) => (body, true),
            Reply::Cut(body) => (body, false),
            Reply::Hangup => return Ok(()),
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        if !whole {
            stream.write_all(&body[..body.len() / 2]).await?;
            stream.flush().await?;
            return Ok(());
        }
        stream.write_all(&body).await?;
        stream.flush().await?;
    }
}

/// One request per chunk, except the `(chunk, requests)` given.
fn once_each_but(special: &[(usize, usize)]) -> BTreeMap<usize, usize> {
    let mut expected: BTreeMap<usize, usize> = (0..CHUNKS).map(|index| (index, 1)).collect();
    expected.extend(special.iter().copied());
    expected
}

#[tokio::test]
async fn a_download_cut_in_the_middle_of_a_chunk_resumes_with_the_right_hash() {
    let server = BlobServer::start(vec![Fault::CutBody { index: 4, times: 1 }]).await;
    let name = server.blob.manifest.hash;
    let blob = server.client().fetch_blob(&name).await.unwrap();
    assert_eq!(blob, server.blob.bytes);
    assert_eq!(Manifest::of(&blob, CHUNK).hash, name);
    // Only the cut chunk was asked for twice: verified chunks are never fetched again.
    assert_eq!(server.requests(), once_each_but(&[(4, 2)]));
}

#[tokio::test]
async fn a_chunk_altered_in_flight_is_detected_and_fetched_again() {
    let server = BlobServer::start(vec![Fault::Alter { index: 6, times: 1 }]).await;
    let name = server.blob.manifest.hash;
    let blob = server.client().fetch_blob(&name).await.unwrap();
    assert_eq!(Manifest::of(&blob, CHUNK).hash, name);
    assert_eq!(server.requests(), once_each_but(&[(6, 2)]));
}

#[tokio::test]
async fn a_chunk_that_keeps_failing_ends_the_download_after_bounded_tries() {
    let server = BlobServer::start(vec![Fault::Alter {
        index: 2,
        times: 99,
    }])
    .await;
    let error = server
        .client()
        .fetch_blob(&server.blob.manifest.hash)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("hash check"), "{error}");
    assert_eq!(server.requests()[&2], 3);
    assert!(!server.requests().contains_key(&3));
}

/// Every file under `root`, relative to it.
fn files_under(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                files.push(relative.display().to_string());
            }
        }
    }
    files
}

#[tokio::test]
async fn a_restarted_node_resumes_a_download_from_its_staged_chunks() {
    let server = BlobServer::start(vec![Fault::DownFrom { index: 5 }]).await;
    let name = server.blob.manifest.hash;
    let data_dir = tempfile::tempdir().unwrap();
    let staging = data_dir.path().join("downloads");

    // The first run gets chunks 0..5, then the server goes away for longer than it retries.
    let first = server.client().with_download_staging(staging.clone());
    let error = first.fetch_blob(&name).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    let staged = files_under(data_dir.path());
    assert_eq!(staged.len(), 5, "{staged:?}");
    for file in &staged {
        let (folder, chunk) = file.rsplit_once('/').unwrap();
        assert_eq!(folder, format!("downloads/{}", name.to_hex()));
        assert!(
            server.blob.manifest.chunks[..5]
                .iter()
                .any(|hash| hash.to_hex() == chunk)
        );
    }
    // A staged chunk damaged on disk while the node was down is not trusted.
    let damaged = server.blob.manifest.chunks[1];
    std::fs::write(
        staging.join(name.to_hex()).join(damaged.to_hex()),
        b"bit rot",
    )
    .unwrap();

    // The restarted node (a new client on the same data directory) fetches only the rest.
    server.heal();
    let restarted = server.client().with_download_staging(staging.clone());
    let blob = restarted.fetch_blob(&name).await.unwrap();
    assert_eq!(Manifest::of(&blob, CHUNK).hash, name);
    assert_eq!(server.requests(), once_each_but(&[(1, 2), (5, 4)]));
    assert!(
        files_under(data_dir.path()).is_empty(),
        "staging is cleaned up"
    );
}

#[tokio::test]
async fn the_client_refuses_plain_http() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let pin = Hash::of(b"any certificate").to_hex();
    let client = CoordinatorClient::new(&url, &pin, Keypair::from_secret([7; 32])).unwrap();
    assert!(client.fetch_blob(&Hash::of(b"blob")).await.is_err());
    assert!(
        listener.accept().is_err(),
        "the client connected without TLS"
    );
}
