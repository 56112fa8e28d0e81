//! Where audit seeds come from: one revealed hash chain at a time (`corex_verify::SeedChain`),
//! and the ordered log of what the ledger must record about them.
//!
//! Each chain's secret is a keyed hash of the chain's index under the source's entropy, a
//! secret from the OS that fresh OS randomness keeps re-keying and that nothing revealed
//! depends on, so no reveal (not even a chain's last one, its own secret) leads to a later
//! chain. At a chain's first reveal the next chain is drawn and its anchor logged, long before
//! the chain runs out; the ledger holds it as the successor. Anchors and reveals (each bound
//! to the job whose round it judges) leave in one ordered log of [`AuditEvent`]s, numbered,
//! which the server hands to the ledger before any round they judged.

use corex_core::Hash;
use corex_verify::SeedChain;

/// Reveals in one seed chain; a new chain (with a new anchor) follows when it runs out.
pub const CHAIN_LENGTH: usize = 100_000;

/// A fact about the audit seed chains that the ledger records, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    /// The anchor of the chain that follows the current one.
    Anchor(Hash),
    /// The seed revealed for `job`'s round, whose results are all committed.
    Reveal { job: Hash, seed: Hash },
}

pub struct SeedSource {
    /// The secret every chain's secret is drawn from: OS randomness, never revealed.
    entropy: [u8; 32],
    chain_length: usize,
    /// Chains drawn so far: the next draw's index, so no two chains share a secret.
    chains_drawn: u64,
    chain: SeedChain,
    /// The chain after `chain`, drawn (and its anchor logged) at `chain`'s first reveal.
    next_chain: Option<SeedChain>,
    next_reveal: usize,
    /// Events the ledger has not been handed yet; the first is number `events_start`.
    events: Vec<AuditEvent>,
    events_start: u64,
}

impl SeedSource {
    /// `secret` comes from the OS at the edge; chains hold `chain_length` reveals each.
    pub fn new(secret: [u8; 32], chain_length: usize) -> Self {
        let chain_length = chain_length.max(1);
        Self {
            chain: draw_chain(&secret, 0, chain_length),
            entropy: secret,
            chain_length,
            chains_drawn: 1,
            next_chain: None,
            next_reveal: 1,
            events: Vec::new(),
            events_start: 0,
        }
    }

    /// The current chain's anchor (before any reveal: the one to commit at start).
    pub fn anchor(&self) -> Hash {
        self.chain.anchor()
    }

    /// Mixes fresh OS randomness into the entropy future chains are drawn from.
    pub fn mix_entropy(&mut self, fresh: [u8; 32]) {
        self.entropy = Hash::of_parts(&[b"corex-audit-entropy", &self.entropy, &fresh]).0;
    }

    /// The next seed, revealed now that `job`'s round's results are committed. Moves to the
    /// next chain when this one is spent; at the first reveal of each chain draws the chain
    /// after it and logs its anchor after the reveal.
    pub fn reveal(&mut self, job: &Hash) -> Hash {
        if self.next_reveal > self.chain.len() {
            self.chain = match self.next_chain.take() {
                Some(next) => next,
                None => self.draw_next(),
            };
            self.next_reveal = 1;
        }
        let seed = self.chain.reveal(self.next_reveal).unwrap_or_default();
        self.next_reveal += 1;
        self.events.push(AuditEvent::Reveal { job: *job, seed });
        if self.next_chain.is_none() {
            let next = self.draw_next();
            self.events.push(AuditEvent::Anchor(next.anchor()));
            self.next_chain = Some(next);
        }
        seed
    }

    /// The events from number `from` on (those still kept), and the number after them.
    pub fn events_from(&self, from: u64) -> (&[AuditEvent], u64) {
        let skip = from.saturating_sub(self.events_start) as usize;
        let end = self.events_start + self.events.len() as u64;
        (self.events.get(skip..).unwrap_or_default(), end)
    }

    /// Drops the events before number `before`: the ledger has been handed them.
    pub fn forget_events_before(&mut self, before: u64) {
        let drop = (before.saturating_sub(self.events_start) as usize).min(self.events.len());
        self.events.drain(..drop);
        self.events_start += drop as u64;
    }

    fn draw_next(&mut self) -> SeedChain {
        let chain = draw_chain(&self.entropy, self.chains_drawn, self.chain_length);
        self.chains_drawn += 1;
        chain
    }
}

/// Chain number `index` drawn from `entropy`: its secret is a keyed hash of the index, so
/// chains are independent of each other and of everything revealed.
fn draw_chain(entropy: &[u8; 32], index: u64, length: usize) -> SeedChain {
    let secret = Hash::of_parts(&[b"corex-audit-chain", entropy, &index.to_le_bytes()]);
    SeedChain::new(secret.0, length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reveals(source: &mut SeedSource, job: &Hash, count: usize) -> Vec<Hash> {
        (0..count).map(|_| source.reveal(job)).collect()
    }

    #[test]
    fn every_reveal_follows_the_last_or_a_logged_anchor() {
        let mut source = SeedSource::new([7; 32], 3);
        let job = Hash::of(b"job");
        let mut current = source.anchor();
        let mut next = None;
        reveals(&mut source, &job, 20);
        let (events, end) = source.events_from(0);
        assert_eq!(end, events.len() as u64);
        let mut switches = 0;
        for event in events {
            match event {
                AuditEvent::Anchor(anchor) => {
                    assert!(next.is_none(), "one successor at a time");
                    next = Some(*anchor);
                }
                AuditEvent::Reveal { seed, .. } => {
                    if !corex_verify::follows(&current, seed) {
                        let anchor = next.take().expect("a successor was logged in time");
                        assert!(corex_verify::follows(&anchor, seed));
                        switches += 1;
                    }
                    current = *seed;
                }
            }
        }
        assert_eq!(switches, 6, "20 reveals of 3-long chains roll over 6 times");
    }

    #[test]
    fn the_next_chain_does_not_follow_from_anything_revealed() {
        // Two sources with the same first chain reveal the same seeds; once one of them mixed
        // in other randomness, their next chains differ: the reveals do not determine them.
        let job = Hash::of(b"job");
        let mut a = SeedSource::new([1; 32], 2);
        let mut b = SeedSource::new([1; 32], 2);
        b.mix_entropy([2; 32]);
        let seen_a = reveals(&mut a, &job, 2);
        let seen_b = reveals(&mut b, &job, 2);
        assert_eq!(seen_a, seen_b);
        let next_a = reveals(&mut a, &job, 2);
        let next_b = reveals(&mut b, &job, 2);
        assert_ne!(next_a, next_b);
        // Nor is the next chain any hash of a revealed value (the old rule derived it from
        // the last reveal).
        for seed in &seen_a {
            for candidate in [
                Hash::of_parts(&[b"corex-next-chain", &seed.0]),
                Hash::of_parts(&[b"corex-audit-seed", &seed.0]),
            ] {
                assert!(!next_a.contains(&candidate));
                let derived = SeedChain::new(candidate.0, 2);
                assert!(!next_a.contains(&derived.reveal(1).unwrap()));
            }
        }
    }

    #[test]
    fn forgotten_events_are_not_handed_out_again() {
        let mut source = SeedSource::new([3; 32], 4);
        let job = Hash::of(b"job");
        reveals(&mut source, &job, 2);
        let (events, end) = source.events_from(0);
        assert_eq!(events.len(), 3, "reveal, next anchor, reveal");
        source.forget_events_before(2);
        let (rest, same_end) = source.events_from(2);
        assert_eq!((rest.len(), same_end), (1, end));
        assert!(source.events_from(end).0.is_empty());
    }
}
