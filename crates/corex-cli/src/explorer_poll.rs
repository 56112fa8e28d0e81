//! A reader of the explorer, as a browser tab left open on it would be: every second it loads
//! the overview, the job's page, the ledger and the metrics (unsigned GETs over the same TLS
//! port), so that `corex bench overhead --explorer` can measure what watching costs training.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use corex_core::Hash;
use corex_net::CoordinatorClient;

/// Loads the explorer's pages about `job` every second until aborted, counting in `loaded` the
/// pages that came back.
pub async fn poll_explorer(client: CoordinatorClient, job: Hash, loaded: Arc<AtomicU64>) {
    let pages = [
        "/explorer".to_owned(),
        format!("/explorer/jobs/{}", job.to_hex()),
        "/explorer/ledger".to_owned(),
        "/metrics".to_owned(),
    ];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        for page in &pages {
            match client.send_raw("GET", page, Bytes::new(), None).await {
                Ok((200, _)) => {
                    loaded.fetch_add(1, Ordering::Relaxed);
                }
                Ok((status, _)) => tracing::warn!(page, status, "an explorer page failed"),
                Err(error) => tracing::warn!(page, %error, "an explorer page failed"),
            }
        }
    }
}
