//! Client-side rate limiting per API and app, at Feishu's documented tiers: a token bucket per
//! window ("1000/min and 50/s": tripping either trips the limiter), waiting instead of failing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// A tier: several windows, each `max` calls per `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tier {
    pub windows: &'static [(u32, Duration)],
}

/// 1000 per minute and 50 per second: most APIs this project calls (openapi.md §3.3).
pub const DEFAULT_TIER: Tier = Tier {
    windows: &[
        (1000, Duration::from_secs(60)),
        (50, Duration::from_secs(1)),
    ],
};

/// "特殊频控" APIs have no published number; be conservative.
pub const SPECIAL_TIER: Tier = Tier {
    windows: &[(300, Duration::from_secs(60)), (10, Duration::from_secs(1))],
};

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Instant,
}

impl Bucket {
    fn new(max: u32, per: Duration, scale: f64) -> Self {
        let capacity = (max as f64 * scale).max(1.0);
        Self {
            capacity,
            tokens: capacity,
            per_sec: capacity / per.as_secs_f64(),
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        // `last` lies in the future while a penalty (a 429's reset) lasts: nothing refills.
        if now <= self.last {
            return;
        }
        let dt = (now - self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(self.capacity);
        self.last = now;
    }

    fn wait_for_one(&self, now: Instant) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            self.last.saturating_duration_since(now)
                + Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec)
        }
    }
}

type Buckets = HashMap<(&'static str, String), Vec<Bucket>>;

/// All buckets of one process, keyed by (api, app).
#[derive(Clone, Default)]
pub struct RateLimiter {
    buckets: Arc<Mutex<Buckets>>,
    /// Multiplies every tier (e.g. 10.0 against an emulator scaled the same way).
    scale: f64,
}

impl RateLimiter {
    pub fn new(scale: f64) -> Self {
        Self {
            buckets: Arc::default(),
            scale: if scale > 0.0 { scale } else { 1.0 },
        }
    }

    /// Waits until a call to `api` for `app_id` is within every window of `tier`.
    pub async fn acquire(&self, api: &'static str, app_id: &str, tier: Tier) {
        loop {
            let wait = {
                let Ok(mut all) = self.buckets.lock() else {
                    return;
                };
                let now = Instant::now();
                let buckets = all.entry((api, app_id.to_string())).or_insert_with(|| {
                    tier.windows
                        .iter()
                        .map(|(m, p)| Bucket::new(*m, *p, self.scale))
                        .collect()
                });
                for b in buckets.iter_mut() {
                    b.refill(now);
                }
                let wait = buckets
                    .iter()
                    .map(|b| b.wait_for_one(now))
                    .max()
                    .unwrap_or_default();
                if wait.is_zero() {
                    for b in buckets.iter_mut() {
                        b.tokens -= 1.0;
                    }
                }
                wait
            };
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// After a 429: empty the buckets so no caller goes before `reset`.
    pub fn penalise(&self, api: &'static str, app_id: &str, reset: Duration) {
        if let Ok(mut all) = self.buckets.lock() {
            if let Some(buckets) = all.get_mut(&(api, app_id.to_string())) {
                let resume = Instant::now() + reset;
                for b in buckets.iter_mut() {
                    b.tokens = 0.0;
                    b.last = resume;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_the_per_second_window() {
        let l = RateLimiter::new(1.0);
        let start = Instant::now();
        for _ in 0..100 {
            l.acquire("x", "cli_a", DEFAULT_TIER).await;
        }
        // 50 at once, then 50 more at 50/s: about one second.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(990), "{took:?}");
        assert!(took < Duration::from_millis(1100), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn apps_and_apis_have_separate_budgets() {
        let l = RateLimiter::new(1.0);
        let start = Instant::now();
        for i in 0..50 {
            l.acquire("x", "cli_a", DEFAULT_TIER).await;
            l.acquire("x", "cli_b", DEFAULT_TIER).await;
            l.acquire(
                "y",
                if i % 2 == 0 { "cli_a" } else { "cli_b" },
                DEFAULT_TIER,
            )
            .await;
        }
        assert!(start.elapsed() < Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn penalty_delays_everyone_until_reset() {
        let l = RateLimiter::new(1.0);
        l.acquire("x", "a", DEFAULT_TIER).await;
        l.penalise("x", "a", Duration::from_secs(3));
        let start = Instant::now();
        l.acquire("x", "a", DEFAULT_TIER).await;
        assert!(start.elapsed() >= Duration::from_secs(3));
    }
}
