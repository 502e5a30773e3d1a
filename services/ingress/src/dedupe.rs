//! Feishu re-sends events it already delivered. An event id published recently is answered
//! 200 without publishing again; concurrent copies of one event wait for the first publish.
//! Per instance and bounded: consumers dedupe authoritatively.
//!
//! Keys are 128-bit SHA-256 prefixes of `app_id/event_id` (16 bytes each, collisions out of
//! reach), kept in two generations that rotate every half TTL: an id is remembered for at
//! least half and at most all of the TTL, and memory stays bounded by `capacity`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

type Key = [u8; 16];

/// Keys are SHA-256 prefixes, uniformly random already: their first eight bytes are the hash,
/// instead of running SipHash over them again on every claim and finish.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 16]` hashes as its length, then its bytes; mix whatever comes.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _len: usize) {
        // The fixed length tells nothing.
    }
}

type KeyHash = std::hash::BuildHasherDefault<KeyHasher>;

struct Generations {
    current: HashSet<Key, KeyHash>,
    previous: HashSet<Key, KeyHash>,
    rotated: Instant,
    inflight: HashMap<Key, watch::Receiver<Option<bool>>, KeyHash>,
}

pub struct Dedupe {
    inner: Mutex<Generations>,
    half_ttl: Duration,
    /// Entries per generation before it rotates early.
    per_generation: usize,
}

/// What the caller should do with an event.
pub enum Claim<'a> {
    /// Already published: answer 200.
    Published,
    /// Another request is publishing the same event: wait for its outcome.
    Wait(watch::Receiver<Option<bool>>),
    /// Publish it, then report through the guard.
    Publish(Guard<'a>),
}

/// The claim to publish an event. Dropped unfinished (its request was cancelled), it leaves
/// no entry behind, and its waiters see the claim closed.
pub struct Guard<'a> {
    dedupe: &'a Dedupe,
    key: Key,
    /// Taken by `finish`.
    tx: Option<watch::Sender<Option<bool>>>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.dedupe.lock().inflight.remove(&self.key);
        }
    }
}

fn key(app_id: &str, event_id: &str) -> Key {
    let mut h = Sha256::new();
    h.update(app_id.as_bytes());
    h.update(b"/");
    h.update(event_id.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

impl Dedupe {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Generations {
                current: HashSet::default(),
                previous: HashSet::default(),
                rotated: Instant::now(),
                inflight: HashMap::default(),
            }),
            half_ttl: ttl / 2,
            per_generation: (capacity / 2).max(1) as usize,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn rotate_if_due(&self, g: &mut Generations) {
        if g.rotated.elapsed() >= self.half_ttl || g.current.len() >= self.per_generation {
            g.previous = std::mem::take(&mut g.current);
            g.rotated = Instant::now();
        }
    }

    pub fn claim(&self, app_id: &str, event_id: &str) -> Claim<'_> {
        let k = key(app_id, event_id);
        let mut g = self.lock();
        self.rotate_if_due(&mut g);
        if g.current.contains(&k) || g.previous.contains(&k) {
            return Claim::Published;
        }
        // An unfinished guard removes its entry when dropped: an entry here has a holder.
        if let Some(rx) = g.inflight.get(&k) {
            return Claim::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        g.inflight.insert(k, rx);
        Claim::Publish(Guard {
            dedupe: self,
            key: k,
            tx: Some(tx),
        })
    }

    pub fn finish(&self, mut guard: Guard<'_>, published: bool) {
        {
            let mut g = self.lock();
            g.inflight.remove(&guard.key);
            if published {
                g.current.insert(guard.key);
            }
        }
        if let Some(tx) = guard.tx.take() {
            tx.send_replace(Some(published));
        }
    }

    #[cfg(test)]
    fn inflight(&self) -> usize {
        self.lock().inflight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_claim_waits_then_sees_published() {
        let d = Dedupe::new(100, Duration::from_secs(60));
        let Claim::Publish(g) = d.claim("a", "e1") else {
            panic!("first claim publishes")
        };
        let Claim::Wait(rx) = d.claim("a", "e1") else {
            panic!("second waits")
        };
        d.finish(g, true);
        assert_eq!(*rx.borrow(), Some(true));
        assert_eq!(d.inflight(), 0);
        assert!(matches!(d.claim("a", "e1"), Claim::Published));
        assert!(
            matches!(d.claim("b", "e1"), Claim::Publish(_)),
            "another app's id is another event"
        );
    }

    #[test]
    fn an_abandoned_claim_is_taken_over() {
        let d = Dedupe::new(100, Duration::from_secs(60));
        let Claim::Publish(g) = d.claim("a", "e1") else {
            panic!("first claim publishes")
        };
        let Claim::Wait(rx) = d.claim("a", "e1") else {
            panic!("second waits")
        };
        // The publishing request is cancelled: its guard is dropped unfinished.
        drop(g);
        assert!(
            rx.has_changed().is_err(),
            "the waiter sees the claim closed"
        );
        assert_eq!(d.inflight(), 0, "nothing is left behind");
        let Claim::Publish(g) = d.claim("a", "e1") else {
            panic!("the next copy publishes instead of waiting forever")
        };
        d.finish(g, true);
        assert!(matches!(d.claim("a", "e1"), Claim::Published));
    }

    #[test]
    fn failed_publish_can_be_retried() {
        let d = Dedupe::new(100, Duration::from_secs(60));
        let Claim::Publish(g) = d.claim("a", "e1") else {
            panic!()
        };
        d.finish(g, false);
        assert!(matches!(d.claim("a", "e1"), Claim::Publish(_)));
    }

    #[test]
    fn bounded_by_capacity_but_remembers_the_previous_generation() {
        let d = Dedupe::new(10, Duration::from_secs(3600));
        for i in 0..5 {
            let Claim::Publish(g) = d.claim("a", &i.to_string()) else {
                panic!()
            };
            d.finish(g, true);
        }
        // Generation full: the next claim rotates, the first five are still remembered.
        assert!(matches!(d.claim("a", "0"), Claim::Published));
        for i in 5..10 {
            let Claim::Publish(g) = d.claim("a", &i.to_string()) else {
                panic!()
            };
            d.finish(g, true);
        }
        let Claim::Publish(_) = d.claim("a", "zz") else {
            panic!()
        };
        // Two rotations later the oldest are forgotten.
        assert!(matches!(d.claim("a", "0"), Claim::Publish(_)));
    }
}
