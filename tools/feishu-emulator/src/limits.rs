//! Rate limits as token buckets per (API, app) — Feishu limits per API × app × tenant, and an
//! app belongs to one tenant — at the documented tiers, scaled by `rate_limit_scale`.

use std::collections::HashMap;

/// A two-window tier such as "1000/min & 50/s"; tripping either window refuses the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub per_sec: u32,
    pub per_min: Option<u32>,
}

/// Feishu's default tier for the APIs emulated here (openapi.md §3.3). The 特殊频控 APIs
/// (department get/parent, user_info) have no published number; they get the same tier.
pub const DEFAULT_TIER: Tier = Tier {
    per_sec: 50,
    per_min: Some(1000),
};

/// Messages: 5 QPS per recipient user or chat (openapi.md §7.1).
pub const PER_RECIPIENT: Tier = Tier {
    per_sec: 5,
    per_min: None,
};

/// The tier of an API (by the emulator's API name).
pub fn tier(_api: &str) -> Tier {
    DEFAULT_TIER
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: i64,
}

/// A refusal: the cap of the window that tripped and seconds until a call is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub limit: u32,
    pub reset_secs: u64,
}

#[derive(Debug, Default)]
pub struct Limiter {
    buckets: HashMap<(String, String, u8), Bucket>,
}

impl Limiter {
    /// Takes one call from the (api, key) buckets of `tier` scaled by `scale`.
    pub fn check(
        &mut self,
        api: &str,
        key: &str,
        tier: Tier,
        scale: f64,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let mut windows: Vec<(u8, u32, f64)> = vec![(0, scaled(tier.per_sec, scale), 1.0)];
        if let Some(m) = tier.per_min {
            windows.push((1, scaled(m, scale), 60.0));
        }
        let mut refusal: Option<Refusal> = None;
        for &(w, cap, secs) in &windows {
            let b = self.bucket(api, key, w, cap, now_ms);
            let rate = f64::from(cap) / secs;
            b.tokens =
                (b.tokens + rate * (now_ms - b.last_ms).max(0) as f64 / 1000.0).min(f64::from(cap));
            b.last_ms = now_ms;
            if b.tokens < 1.0 && refusal.is_none() {
                let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0) as u64;
                refusal = Some(Refusal {
                    limit: cap,
                    reset_secs: wait,
                });
            }
        }
        if let Some(r) = refusal {
            return Err(r);
        }
        for &(w, cap, _) in &windows {
            let b = self.bucket(api, key, w, cap, now_ms);
            b.tokens -= 1.0;
        }
        Ok(())
    }

    fn bucket(&mut self, api: &str, key: &str, w: u8, cap: u32, now_ms: i64) -> &mut Bucket {
        self.buckets
            .entry((api.to_string(), key.to_string(), w))
            .or_insert(Bucket {
                tokens: f64::from(cap),
                last_ms: now_ms,
            })
    }
}

fn scaled(n: u32, scale: f64) -> u32 {
    ((f64::from(n) * scale).round() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_window_trips_then_recovers() {
        let mut l = Limiter::default();
        let t = Tier {
            per_sec: 5,
            per_min: Some(1000),
        };
        for _ in 0..5 {
            assert!(l.check("a", "app", t, 1.0, 0).is_ok());
        }
        let r = l.check("a", "app", t, 1.0, 0);
        assert_eq!(
            r,
            Err(Refusal {
                limit: 5,
                reset_secs: 1
            })
        );
        assert!(l.check("a", "app", t, 1.0, 1000).is_ok());
        assert!(
            l.check("b", "app", t, 1.0, 0).is_ok(),
            "buckets are per api"
        );
    }

    #[test]
    fn minute_window_trips() {
        let mut l = Limiter::default();
        let t = Tier {
            per_sec: 50,
            per_min: Some(1000),
        };
        let scale = 0.01; // 1/s (rounded up from 0.5), 10/min
        let mut ok = 0;
        // 10 at once, then refilled at 10 per 60 s: about 15 over 30 s.
        for i in 0..30 {
            if l.check("a", "k", t, scale, i * 1000).is_ok() {
                ok += 1;
            }
        }
        assert!((14..=16).contains(&ok), "ok = {ok}");
    }
}
