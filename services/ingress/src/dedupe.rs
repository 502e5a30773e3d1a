//! Feishu re-sends events it already delivered. An event id published recently is answered
//! 200 without publishing again; concurrent copies of one event wait for the first publish.
//! Per instance and bounded: consumers dedupe authoritatively.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

pub struct Dedupe {
    done: moka::sync::Cache<String, ()>,
    inflight: Mutex<HashMap<String, watch::Receiver<Option<bool>>>>,
}

/// What the caller should do with an event.
pub enum Claim {
    /// Already published: answer 200.
    Published,
    /// Another request is publishing the same event: wait for its outcome.
    Wait(watch::Receiver<Option<bool>>),
    /// Publish it, then report through the guard.
    Publish(Guard),
}

pub struct Guard {
    key: String,
    tx: watch::Sender<Option<bool>>,
}

impl Dedupe {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            done: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    pub fn claim(&self, key: String) -> Claim {
        if self.done.contains_key(&key) {
            return Claim::Published;
        }
        let Ok(mut inflight) = self.inflight.lock() else {
            let (tx, _) = watch::channel(None);
            return Claim::Publish(Guard { key, tx });
        };
        if let Some(rx) = inflight.get(&key) {
            return Claim::Wait(rx.clone());
        }
        // Re-check under the lock: the first publisher may have finished in between.
        if self.done.contains_key(&key) {
            return Claim::Published;
        }
        let (tx, rx) = watch::channel(None);
        inflight.insert(key.clone(), rx);
        Claim::Publish(Guard { key, tx })
    }

    pub fn finish(&self, guard: Guard, published: bool) {
        if published {
            self.done.insert(guard.key.clone(), ());
        }
        if let Ok(mut inflight) = self.inflight.lock() {
            inflight.remove(&guard.key);
        }
        guard.tx.send_replace(Some(published));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_claim_waits_then_sees_published() {
        let d = Dedupe::new(100, Duration::from_secs(60));
        let Claim::Publish(g) = d.claim("a".into()) else {
            panic!("first claim publishes")
        };
        let Claim::Wait(rx) = d.claim("a".into()) else {
            panic!("second waits")
        };
        d.finish(g, true);
        assert_eq!(*rx.borrow(), Some(true));
        assert!(matches!(d.claim("a".into()), Claim::Published));
    }

    #[test]
    fn failed_publish_can_be_retried() {
        let d = Dedupe::new(100, Duration::from_secs(60));
        let Claim::Publish(g) = d.claim("a".into()) else {
            panic!()
        };
        d.finish(g, false);
        assert!(matches!(d.claim("a".into()), Claim::Publish(_)));
    }
}
