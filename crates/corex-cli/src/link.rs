//! Shaped links for a devnet's nodes (`corex devnet --link 50mbit`): each node talks to the
//! coordinator through its own TCP relay on 127.0.0.1 that lets at most the link's rate through
//! each way, paced by one clock per direction that all of the node's connections share, so a
//! devnet on one machine shows what bytes cost over a home link. No root and no `tc`: TLS
//! passes through the relay untouched (the node pins the coordinator's certificate).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

/// Bytes a relay reads at a time: the pacing grain.
const GRAIN: usize = 16 * 1024;
/// How far a direction may run ahead of its pace after an idle spell (a short burst).
const BURST: Duration = Duration::from_millis(20);

/// A link's rate, each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkRate {
    pub bits_per_second: u64,
}

impl LinkRate {
    const MIN: u64 = 64_000;
    const MAX: u64 = 100_000_000_000;
}

impl FromStr for LinkRate {
    type Err = String;

    /// `50mbit`, `2.5mbit`, `512kbit`, `1gbit` (bits per second, decimal prefixes).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        let (number, scale) = [("kbit", 1e3), ("mbit", 1e6), ("gbit", 1e9)]
            .iter()
            .find_map(|(unit, scale)| lower.strip_suffix(unit).map(|number| (number, *scale)))
            .ok_or_else(|| format!("link rate '{text}': give a number and kbit, mbit or gbit"))?;
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("link rate '{text}': '{number}' is not a number"))?;
        let bits = value * scale;
        if !(bits.is_finite() && (Self::MIN as f64..=Self::MAX as f64).contains(&bits)) {
            return Err(format!("link rate '{text}' is outside 64kbit..=100gbit"));
        }
        Ok(Self {
            bits_per_second: bits as u64,
        })
    }
}

impl std::fmt::Display for LinkRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} Mbit/s", self.bits_per_second as f64 / 1e6)
    }
}

/// One direction's pace: when the link is next free.
#[derive(Debug)]
struct Pace {
    bytes_per_second: f64,
    free_at: Instant,
}

impl Pace {
    fn new(rate: LinkRate, now: Instant) -> Self {
        Self {
            bytes_per_second: rate.bits_per_second as f64 / 8.0,
            free_at: now,
        }
    }

    /// Books `bytes` on the link at `now`: how long to wait before sending them so that the
    /// direction stays within its rate (after an idle spell, up to [`BURST`] early).
    fn book(&mut self, bytes: usize, now: Instant) -> Duration {
        let earliest = now.checked_sub(BURST).unwrap_or(now);
        let start = self.free_at.max(earliest);
        self.free_at = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_second);
        start.saturating_duration_since(now)
    }
}

/// A node's link: a pace each way.
struct Link {
    up: Mutex<Pace>,
    down: Mutex<Pace>,
}

/// Starts a relay for one node: connections to the returned address go on to `upstream`, at
/// most `rate` each way. Runs until the handle is aborted.
pub async fn relay(
    upstream: SocketAddr,
    rate: LinkRate,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let now = Instant::now();
    let link = Arc::new(Link {
        up: Mutex::new(Pace::new(rate, now)),
        down: Mutex::new(Pace::new(rate, now)),
    });
    let task = tokio::spawn(async move {
        let mut pumps = tokio::task::JoinSet::new();
        loop {
            let Ok((node, _)) = listener.accept().await else {
                // Out of descriptors, say: do not spin on it.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let Ok(coordinator) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let _ = node.set_nodelay(true);
            let _ = coordinator.set_nodelay(true);
            let (node_read, node_write) = node.into_split();
            let (coordinator_read, coordinator_write) = coordinator.into_split();
            let up = link.clone();
            pumps.spawn(pump(node_read, coordinator_write, up, Direction::Up));
            pumps.spawn(pump(
                coordinator_read,
                node_write,
                link.clone(),
                Direction::Down,
            ));
            // Reap finished pumps so the set does not grow with every connection.
            while pumps.try_join_next().is_some() {}
        }
    });
    Ok((address, task))
}

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
}

/// Copies `from` to `to` at the link's pace until either side closes.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: Arc<Link>, way: Direction) {
    let mut buffer = vec![0u8; GRAIN];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let wait = {
            let pace = match way {
                Direction::Up => &link.up,
                Direction::Down => &link.down,
            };
            let mut pace = pace.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            pace.book(read, Instant::now())
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_their_units_and_bounds() {
        let rate = |text: &str| text.parse::<LinkRate>().map(|rate| rate.bits_per_second);
        assert_eq!(rate("50mbit"), Ok(50_000_000));
        assert_eq!(rate("2.5Mbit"), Ok(2_500_000));
        assert_eq!(rate("512kbit"), Ok(512_000));
        assert_eq!(rate("1gbit"), Ok(1_000_000_000));
        for bad in [
            "50", "fast", "-1mbit", "1kbit", "1000gbit", "nanmbit", "mbit",
        ] {
            assert!(rate(bad).is_err(), "{bad}");
        }
    }

    /// 10 MB booked at 80 Mbit/s (10 MB/s) in grains: the last grain may leave after ~1 s of
    /// link time, never earlier than its share allows, and an idle link lends only its burst.
    #[test]
    fn a_pace_keeps_each_direction_to_its_rate() {
        let start = Instant::now();
        let mut pace = Pace::new("80mbit".parse().unwrap(), start);
        let mut last_wait = Duration::ZERO;
        for _ in 0..(10_000_000 / GRAIN) {
            last_wait = pace.book(GRAIN, start);
        }
        let expected = (10_000_000 / GRAIN * GRAIN) as f64 / 10e6;
        let waited = last_wait.as_secs_f64();
        assert!(
            waited <= expected && waited >= expected - 0.03,
            "{waited} s for {expected} s of link time"
        );
        // After a long idle spell the link lends its 20 ms burst (200 KB here, 12 grains) at
        // once; the grains after it queue again.
        let later = start + Duration::from_secs(10);
        let queued: Vec<Duration> = (0..20).map(|_| pace.book(GRAIN, later)).collect();
        assert!(queued[..12].iter().all(Duration::is_zero), "{queued:?}");
        assert!(queued.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(queued[19] > Duration::from_millis(10), "{queued:?}");
    }
}
