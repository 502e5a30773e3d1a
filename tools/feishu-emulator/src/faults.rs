//! Fault injection per API: 5xx answers, latency, dropped connections and forced rate
//! limiting, for a number of calls or a share of them.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What a fault does to a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this HTTP status (code 50000-style body).
    Status { status: u16 },
    /// Delay the answer.
    Latency { ms: u64 },
    /// Close the connection without a complete response.
    Drop,
    /// Answer 429 / 99991400 as if the limit were reached.
    RateLimit,
}

/// One fault rule. `api` is an API name (see the README) or `*` for every API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub api: String,
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Applies to this many matching calls, then retires.
    #[serde(default)]
    pub count: Option<u32>,
    /// Applies to this share (0..=1) of matching calls.
    #[serde(default)]
    pub share: Option<f64>,
}

#[derive(Debug)]
pub struct Faults {
    pub rules: Vec<Fault>,
    rng: ChaCha8Rng,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Self {
            rules: vec![],
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xfa17),
        }
    }

    /// The faults that fire for this call, consuming counts.
    pub fn fire(&mut self, api: &str) -> Vec<FaultKind> {
        let mut out = Vec::new();
        for r in self.rules.iter_mut() {
            if r.api != "*" && r.api != api {
                continue;
            }
            if r.count == Some(0) {
                continue;
            }
            if let Some(p) = r.share {
                if !self.rng.gen_bool(p.clamp(0.0, 1.0)) {
                    continue;
                }
            }
            if let Some(c) = r.count.as_mut() {
                *c -= 1;
            }
            out.push(r.kind.clone());
        }
        self.rules.retain(|r| r.count != Some(0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_retires_rule() {
        let mut f = Faults::new(1);
        f.rules.push(Fault {
            api: "x".into(),
            kind: FaultKind::Status { status: 503 },
            count: Some(2),
            share: None,
        });
        assert_eq!(f.fire("y").len(), 0);
        assert_eq!(f.fire("x").len(), 1);
        assert_eq!(f.fire("x").len(), 1);
        assert_eq!(f.fire("x").len(), 0);
        assert!(f.rules.is_empty());
    }
}
