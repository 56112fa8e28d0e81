//! Limits applied to connections and requests before any of them is authenticated: request
//! head size and read timeout (hyper), TLS handshake timeout, body read and whole-request
//! timeouts and a cap on requests in flight (tower and tower-http layers), connections in all
//! and per address (the acceptor below), and a per-key request rate (governor).
//!
//! In: accepted TCP streams and requests. Out: the same, or a closed connection / a 4xx–5xx
//! answer before the handler reads a byte of the body. Invariant: a connection that is
//! refused or times out holds nothing once it is gone (its slots are released on drop).

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use corex_core::NodeId;
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::CoordinatorError;
use crate::server::lock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportLimits {
    /// Largest request head (request line and headers) hyper buffers.
    pub max_header_bytes: usize,
    /// A connection must deliver a request's head within this long (and its first request
    /// within this long of the TLS handshake).
    pub header_timeout_ms: u64,
    /// The TLS handshake must finish within this long.
    pub handshake_timeout_ms: u64,
    /// A request's body must arrive within this long of its head.
    pub body_timeout_ms: u64,
    /// A whole request (long polls included) must be answered within this long.
    pub request_timeout_ms: u64,
    /// Open connections in all; more are closed at accept.
    pub max_connections: usize,
    /// Open connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Requests being handled at once; more are answered 503 at once.
    pub max_in_flight_requests: usize,
    /// Body limit of requests that carry a small JSON message (registration, leases, …).
    pub max_message_body_bytes: usize,
    /// Body limit of a job submission (its spec).
    pub max_spec_body_bytes: usize,
    /// Sustained requests per second one key may make, and the burst above it.
    pub requests_per_key_per_s: u32,
    pub request_burst_per_key: u32,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            header_timeout_ms: 10_000,
            handshake_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            request_timeout_ms: 120_000,
            max_connections: 4096,
            max_connections_per_ip: 256,
            max_in_flight_requests: 2048,
            max_message_body_bytes: 64 * 1024,
            max_spec_body_bytes: 256 * 1024,
            requests_per_key_per_s: 200,
            request_burst_per_key: 1000,
        }
    }
}

impl TransportLimits {
    /// Every node of a one-machine network shares 127.0.0.1: no per-address cap.
    pub fn one_machine() -> Self {
        Self {
            max_connections_per_ip: usize::MAX,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), CoordinatorError> {
        let positive = [
            self.header_timeout_ms,
            self.handshake_timeout_ms,
            self.body_timeout_ms,
            self.request_timeout_ms,
            self.max_connections as u64,
            self.max_connections_per_ip as u64,
            self.max_in_flight_requests as u64,
            u64::from(self.requests_per_key_per_s),
            u64::from(self.request_burst_per_key),
        ];
        if positive.contains(&0)
            || self.max_header_bytes < 8192
            || self.max_message_body_bytes < 1024
            || self.max_spec_body_bytes < self.max_message_body_bytes
        {
            return Err(CoordinatorError::InvalidSpec(
                "transport limits: timeouts, connection, request and rate limits > 0; header buffer ≥ 8 KiB; message bodies ≥ 1 KiB ≤ spec bodies".into(),
            ));
        }
        Ok(())
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
}

/// Counts open connections, in all and per IP address; a connection over either limit is
/// closed as soon as it is accepted, before its TLS handshake.
#[derive(Clone)]
pub struct ConnectionLimiter {
    slots: Arc<Semaphore>,
    per_ip: Arc<Mutex<BTreeMap<IpAddr, usize>>>,
    max_per_ip: usize,
}

impl ConnectionLimiter {
    pub fn new(limits: &TransportLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip: Arc::default(),
            max_per_ip: limits.max_connections_per_ip,
        }
    }

    fn admit(&self, peer: Option<IpAddr>) -> io::Result<ConnectionSlot> {
        let refused = |why: &str| io::Error::new(io::ErrorKind::ConnectionRefused, why.to_owned());
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| refused("connection limit reached"))?;
        if let Some(ip) = peer {
            let mut per_ip = lock(&self.per_ip);
            let open = per_ip.entry(ip).or_default();
            if *open >= self.max_per_ip {
                return Err(refused("per-address connection limit reached"));
            }
            *open += 1;
        }
        Ok(ConnectionSlot {
            _permit: permit,
            peer,
            per_ip: self.per_ip.clone(),
        })
    }
}

/// One admitted connection's place; released when the connection is dropped.
struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    peer: Option<IpAddr>,
    per_ip: Arc<Mutex<BTreeMap<IpAddr, usize>>>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(ip) = self.peer {
            let mut per_ip = lock(&self.per_ip);
            if let Some(open) = per_ip.get_mut(&ip) {
                *open -= 1;
                if *open == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

/// A TCP stream that holds its connection slot for as long as it lives.
pub struct LimitedStream {
    inner: TcpStream,
    _slot: ConnectionSlot,
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for ConnectionLimiter {
    type Stream = LimitedStream;
    type Service = S;
    type Future = std::future::Ready<io::Result<(LimitedStream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        // Answers go out as they are written: with Nagle's algorithm on, the tail of a
        // response written in two parts (a head, then a body) waits for the peer's delayed
        // acknowledgement, 40 ms on Linux, which stalled every lease by that much.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not turn Nagle's algorithm off for a connection");
        }
        let peer = stream
            .peer_addr()
            .ok()
            .map(|address: SocketAddr| address.ip());
        std::future::ready(self.admit(peer).map(|slot| {
            (
                LimitedStream {
                    inner: stream,
                    _slot: slot,
                },
                service,
            )
        }))
    }
}

/// Requests per key over time: a token bucket per key that signed a request.
pub struct KeyRateLimiter {
    limiter: DefaultKeyedRateLimiter<NodeId>,
}

impl KeyRateLimiter {
    pub fn new(limits: &TransportLimits) -> Self {
        let rate = NonZeroU32::new(limits.requests_per_key_per_s).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.request_burst_per_key).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// Counts one request of `key`; refused when the key is over its rate.
    pub fn check(&self, key: &NodeId) -> Result<(), CoordinatorError> {
        self.limiter
            .check_key(key)
            .map_err(|_| CoordinatorError::RateLimited(key.short()))
    }

    /// Forgets keys whose buckets are full again, so that many one-off keys cost no memory.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_without_waiting_for_acknowledgements() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        assert!(
            !stream.nodelay().unwrap(),
            "sockets start with Nagle's algorithm on"
        );
        let limiter = ConnectionLimiter::new(&TransportLimits::default());
        let (accepted, ()) = limiter.accept(stream, ()).await.unwrap();
        assert!(accepted.inner.nodelay().unwrap());
    }
}
