//! Identifier formats Feishu uses (`cli_`, `ou_`, `on_`, `od-`, `oc_`, `om_`, `t-`, ...).
//!
//! `open_id` is per app and `union_id` per tenant (one developer); both are derived from the
//! tenant-wide `user_id` with SHA-256 so they are deterministic and need no storage.

use rand::Rng;
use sha2::{Digest, Sha256};

fn hex_digest(parts: &[&str], len: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = h.finalize();
    let mut s = String::with_capacity(64);
    for b in d.iter() {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s.truncate(len);
    s
}

/// `ou_` + 32 hex: the user's id as seen by one app.
pub fn open_id(app_id: &str, user_id: &str) -> String {
    format!("ou_{}", hex_digest(&["open", app_id, user_id], 32))
}

/// `on_` + 32 hex: the user's id across the developer's apps.
pub fn union_id(tenant_key: &str, user_id: &str) -> String {
    format!("on_{}", hex_digest(&["union", tenant_key, user_id], 32))
}

/// Random lowercase hex of `len` characters.
pub fn random_hex(rng: &mut impl Rng, len: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..len)
        .map(|_| HEX[rng.gen_range(0..16)] as char)
        .collect()
}

/// Random `[A-Za-z0-9]` of `len` characters.
pub fn random_alnum(rng: &mut impl Rng, len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

pub fn app_id(rng: &mut impl Rng) -> String {
    format!("cli_{}", random_hex(rng, 16))
}

pub fn open_department_id(rng: &mut impl Rng) -> String {
    format!("od-{}", random_hex(rng, 32))
}

pub fn chat_id(rng: &mut impl Rng) -> String {
    format!("oc_{}", random_hex(rng, 32))
}

pub fn message_id(rng: &mut impl Rng) -> String {
    format!("om_{}", random_hex(rng, 32))
}

pub fn batch_message_id(rng: &mut impl Rng) -> String {
    format!("bm-{}", random_hex(rng, 32))
}

pub fn event_id(rng: &mut impl Rng) -> String {
    random_hex(rng, 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_well_formed() {
        let a = open_id("cli_a", "u1");
        assert_eq!(a, open_id("cli_a", "u1"));
        assert_ne!(a, open_id("cli_b", "u1"));
        assert!(a.starts_with("ou_") && a.len() == 35);
        assert!(union_id("t", "u1").starts_with("on_"));
    }
}
