//! Multi-part payloads (events.md §7.7): fragments share a `message_id`, `sum` is their
//! count and `seq` their 0-based index. Partial messages are bounded in number and size and
//! expire `ttl` after their last fragment; Feishu re-pushes what was never acknowledged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Partial {
    slots: Vec<Option<Vec<u8>>>,
    filled: usize,
    bytes: usize,
    touched: Instant,
}

pub struct Reassembler {
    ttl: Duration,
    max_pending: usize,
    max_bytes: usize,
    /// More fragments than this for one message is refused as malformed.
    max_parts: usize,
    partial: HashMap<String, Partial>,
}

/// What a fragment led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Complete(Vec<u8>),
    Pending,
    /// Bad `sum`/`seq`, or the message grew beyond the size limit: dropped.
    Refused(&'static str),
}

impl Reassembler {
    pub fn new(ttl: Duration, max_pending: usize, max_bytes: usize) -> Self {
        Self {
            ttl,
            max_pending,
            max_bytes,
            max_parts: 1024,
            partial: HashMap::new(),
        }
    }

    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    pub fn push(
        &mut self,
        message_id: &str,
        sum: usize,
        seq: usize,
        payload: Vec<u8>,
        now: Instant,
    ) -> Outcome {
        if sum <= 1 {
            return Outcome::Complete(payload);
        }
        if sum > self.max_parts || seq >= sum {
            return Outcome::Refused("bad sum or seq");
        }
        let ttl = self.ttl;
        self.partial
            .retain(|_, p| now.saturating_duration_since(p.touched) < ttl);
        if !self.partial.contains_key(message_id) && self.partial.len() >= self.max_pending {
            if let Some(oldest) = self
                .partial
                .iter()
                .min_by_key(|(_, p)| p.touched)
                .map(|(k, _)| k.clone())
            {
                self.partial.remove(&oldest);
            }
        }
        let p = self
            .partial
            .entry(message_id.to_string())
            .or_insert_with(|| Partial {
                slots: vec![None; sum],
                filled: 0,
                bytes: 0,
                touched: now,
            });
        if p.slots.len() != sum {
            self.partial.remove(message_id);
            return Outcome::Refused("sum changed between fragments");
        }
        p.touched = now;
        if p.slots[seq].is_none() {
            p.filled += 1;
            p.bytes += payload.len();
        }
        p.slots[seq] = Some(payload);
        if p.bytes > self.max_bytes {
            self.partial.remove(message_id);
            return Outcome::Refused("message too large");
        }
        if p.filled < sum {
            return Outcome::Pending;
        }
        let Some(p) = self.partial.remove(message_id) else {
            return Outcome::Pending;
        };
        let mut out = Vec::with_capacity(p.bytes);
        for s in p.slots.into_iter().flatten() {
            out.extend_from_slice(&s);
        }
        Outcome::Complete(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Reassembler {
        Reassembler::new(Duration::from_secs(5), 2, 100)
    }

    #[test]
    fn joins_out_of_order_fragments_in_index_order() {
        let mut r = r();
        let t = Instant::now();
        assert_eq!(r.push("m", 3, 2, b"c".to_vec(), t), Outcome::Pending);
        assert_eq!(r.push("m", 3, 0, b"a".to_vec(), t), Outcome::Pending);
        assert_eq!(r.push("m", 3, 0, b"a".to_vec(), t), Outcome::Pending);
        assert_eq!(
            r.push("m", 3, 1, b"b".to_vec(), t),
            Outcome::Complete(b"abc".to_vec())
        );
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn single_part_passes_through() {
        assert_eq!(
            r().push("m", 1, 0, b"x".to_vec(), Instant::now()),
            Outcome::Complete(b"x".to_vec())
        );
    }

    #[test]
    fn expires_bounds_and_refuses() {
        let mut r = r();
        let t = Instant::now();
        r.push("old", 2, 0, b"a".to_vec(), t);
        // After the TTL the old fragment is gone: its second half alone does not complete it.
        let later = t + Duration::from_secs(6);
        assert_eq!(r.push("old", 2, 1, b"b".to_vec(), later), Outcome::Pending);
        r.push("x", 2, 0, b"a".to_vec(), later);
        r.push("y", 2, 0, b"a".to_vec(), later + Duration::from_millis(1));
        assert_eq!(r.pending(), 2, "bounded: the oldest was evicted");
        assert_eq!(
            r.push("z", 2, 5, b"a".to_vec(), later),
            Outcome::Refused("bad sum or seq")
        );
        assert_eq!(
            r.push("big", 2, 0, vec![0; 101], later),
            Outcome::Refused("message too large")
        );
    }
}
