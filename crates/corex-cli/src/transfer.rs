//! The coordinator's byte counters, read from its `/metrics` at the end of a devnet.

use serde::{Deserialize, Serialize};

/// The coordinator's `corex_transfer_bytes_total`: chunks served (models, datasets,
/// checkpoints) and bodies taken (results, reveals, audit replays, uploaded chunks).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Transfer {
    pub sent: u64,
    pub received: u64,
}

impl Transfer {
    /// Reads the counters out of an OpenMetrics exposition; `None` if either is missing.
    pub fn from_metrics(text: &str) -> Option<Self> {
        let counter = |what: &str| {
            let prefix = format!("corex_transfer_bytes_total{{what=\"{what}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .and_then(|value| value.trim().parse::<f64>().ok())
                .map(|value| value as u64)
        };
        Some(Self {
            sent: counter("sent")?,
            received: counter("received")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_come_out_of_an_exposition() {
        let text = "# TYPE corex_transfer_bytes counter\n\
            corex_transfer_bytes_total{what=\"sent\"} 1234\n\
            corex_transfer_bytes_total{what=\"received\"} 5.6e3\n# EOF\n";
        let transfer = Transfer::from_metrics(text).unwrap();
        assert_eq!((transfer.sent, transfer.received), (1234, 5600));
        assert!(Transfer::from_metrics("# EOF\n").is_none());
    }
}
