//! Event encryption and signatures as Feishu documents them (events.md §2.3, §2.4).
//!
//! key = SHA-256(Encrypt Key); body = base64(iv || AES-256-CBC(PKCS#7(plaintext)));
//! X-Lark-Signature = hex(SHA-256(timestamp + nonce + encrypt_key + raw_body)).

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;

/// Why a body could not be decrypted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("encrypt field is not valid base64")]
    Base64,
    #[error("ciphertext length {0} is not a positive multiple of 16 after the 16-byte IV")]
    Length(usize),
    #[error("padding is not valid PKCS#7 (wrong Encrypt Key?)")]
    Padding,
}

/// The AES key derived from an app's Encrypt Key, with the raw key kept for signatures.
#[derive(Clone)]
pub struct EventCipher {
    aes_key: [u8; 32],
    encrypt_key: Vec<u8>,
}

impl std::fmt::Debug for EventCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventCipher([REDACTED])")
    }
}

impl EventCipher {
    /// Derives the AES-256 key: SHA-256 of the Encrypt Key's UTF-8 bytes.
    pub fn new(encrypt_key: &str) -> Self {
        let aes_key: [u8; 32] = Sha256::digest(encrypt_key.as_bytes()).into();
        Self {
            aes_key,
            encrypt_key: encrypt_key.as_bytes().to_vec(),
        }
    }

    /// Decrypts the value of an `encrypt` field, checking PKCS#7 strictly.
    pub fn decrypt(&self, encrypt_b64: &str) -> Result<Vec<u8>, CryptoError> {
        let raw = B64
            .decode(encrypt_b64.trim())
            .map_err(|_| CryptoError::Base64)?;
        if raw.len() < 32 || raw.len() % 16 != 0 {
            return Err(CryptoError::Length(raw.len().saturating_sub(16)));
        }
        let (iv, ct) = raw.split_at(16);
        let mut buf = ct.to_vec();
        let dec = Aes256CbcDec::new((&self.aes_key).into(), iv.into());
        let len = dec
            .decrypt_padded_mut::<Pkcs7>(&mut buf)
            .map_err(|_| CryptoError::Padding)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Encrypts `plaintext` with the given IV, as Feishu's sender does.
    pub fn encrypt_with_iv(&self, plaintext: &[u8], iv: [u8; 16]) -> String {
        let enc = Aes256CbcEnc::new((&self.aes_key).into(), (&iv).into());
        let ct = enc.encrypt_padded_vec_mut::<Pkcs7>(plaintext);
        let mut out = Vec::with_capacity(16 + ct.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        B64.encode(out)
    }

    /// Encrypts `plaintext` with a random IV.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        self.encrypt_with_iv(plaintext, rand::random())
    }

    /// The `X-Lark-Signature` for a request: lowercase hex SHA-256 of
    /// timestamp + nonce + encrypt_key + the raw body bytes.
    pub fn signature(&self, timestamp: &str, nonce: &str, raw_body: &[u8]) -> String {
        hex::encode(self.signature_digest(timestamp, nonce, raw_body))
    }

    fn signature_digest(&self, timestamp: &str, nonce: &str, raw_body: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(timestamp.as_bytes());
        h.update(nonce.as_bytes());
        h.update(&self.encrypt_key);
        h.update(raw_body);
        h.finalize().into()
    }

    /// Checks `X-Lark-Signature` in constant time. The header is hex; any case is accepted.
    pub fn verify_signature(
        &self,
        timestamp: &str,
        nonce: &str,
        raw_body: &[u8],
        signature_hex: &str,
    ) -> bool {
        hex_matches(
            signature_hex,
            &self.signature_digest(timestamp, nonce, raw_body),
        )
    }
}

/// The signature of a legacy message-card callback (`card.action.trigger_v1`, events.md
/// §2.4): lowercase hex SHA-1 of timestamp + nonce + Verification Token + the raw body.
pub fn legacy_card_signature(
    verification_token: &str,
    timestamp: &str,
    nonce: &str,
    raw_body: &[u8],
) -> String {
    hex::encode(legacy_card_digest(
        verification_token,
        timestamp,
        nonce,
        raw_body,
    ))
}

fn legacy_card_digest(token: &str, timestamp: &str, nonce: &str, raw_body: &[u8]) -> [u8; 20] {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(timestamp.as_bytes());
    h.update(nonce.as_bytes());
    h.update(token.as_bytes());
    h.update(raw_body);
    h.finalize().into()
}

/// Checks a legacy card callback's `X-Lark-Signature` in constant time (hex, any case).
pub fn verify_legacy_card_signature(
    verification_token: &str,
    timestamp: &str,
    nonce: &str,
    raw_body: &[u8],
    signature_hex: &str,
) -> bool {
    hex_matches(
        signature_hex,
        &legacy_card_digest(verification_token, timestamp, nonce, raw_body),
    )
}

/// Whether the hex `signature` (any case) is `expected`, compared in constant time.
fn hex_matches(signature: &str, expected: &[u8]) -> bool {
    let Ok(given) = hex::decode(signature.trim()) else {
        return false;
    };
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// Compares two secrets (Verification Tokens) in constant time.
pub fn secret_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // ct_eq on slices of different length returns false without leaking the position.
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // events.md §10.1: the official documentation example.
    #[test]
    fn official_doc_vector() {
        let c = EventCipher::new("test key");
        let pt = c.decrypt("P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=");
        assert_eq!(pt.as_deref(), Ok(&b"hello world"[..]));
    }

    // events.md §10.2: node-sdk's encrypted url_verification.
    #[test]
    fn node_sdk_challenge_vector() {
        let c = EventCipher::new("mazhe.nerd");
        let pt = c
            .decrypt("tT1xP+ovuc0T3b/rnZX3ax76exqAn0ANQ6/U45GcciC0mgNBc8JtvqOJGNAPMKpgRs2dVU1NYk9VDeqS8T4SYtU0hzNU54aS84WnxvZ3VFfDcy/RyABlNqlUiGyLDzFI0yxdCMT4KR/YEQXlt6nZi50KwRlZ+A75r645KesZuLMljezYyY8VeeXEVjPw35+e")
            .unwrap();
        assert_eq!(
            String::from_utf8(pt).unwrap(),
            r#"{"challenge":"5634b122-c042-4634-bc7f-b07a3c3e77ad","token":"iRdCP2WwXNBXRM3mGLqhrgch3cn0gbT6","type":"url_verification"}"#
        );
    }

    // events.md §10.4: Go SDK vector, plaintext a multiple of 16 (a full block of padding).
    #[test]
    fn go_sdk_full_block_padding_vector() {
        let c = EventCipher::new("1212121212");
        let pt = c.decrypt("bZ3L7yh6m3Fkuffl4g+3uGjIHnhOm5fVZbKVuyT8t7tcd5ABMYm8l28/X900ZL3knZ7n+sCREu/H2WnIzft0amC7+xWqNH8o25IU63N4BnZWfHh+4hyG76QPd19vkw2bPJCx9aqxK8Nz+xqFNbk0RdgyWhmgd30jSxHtcQXAllkI7FMpGpOCteJad3bLXPDBQIV/xkCtKICCS7Z63gakpxZCLaRZ3qCXP1fapHh+LBIupxenrU6ysc7I3nHmjmKie41IiWwS5puG4zQHhVbq6KWLcgWm/3NBZOPQy53ucMu75SXA55I7jarVLZXWUcqBGrcgE3vouWbtwgZuzmoTQl0GSh5VYSVvpW992BuGxUWj0XjPYdICJm6Cr7xouNXwMcdb7N8caVdkdSZeEnswG19qSyDoQhklwzNGW0yiaayulBqJNjfge/G5V3401c2XaIuAeEIo+QQ4RSNpRGfnHkbu/j55FGQAGWjpuBNaIwZbaUoVP3NkGP+vM5rpEDe3sL2GN+Xsd+g9yBs7FqdMV8mXTGgLjCqjrPrke5/km76Q3Pe6KPs2YexMRG4MkSx3xUTzZnNn7zIzShPcjeSwBd2pxk6ht5N+fzueZdxl6Oo=").unwrap();
        assert_eq!(pt.len() % 16, 0);
        let text = String::from_utf8(pt).unwrap();
        assert_eq!(
            text,
            r#"{"schema":"2.0","header":{"event_id":"f7984f25108f8137722bb63cee927e66","event_type":"contact.user.created_v3","app_id":"cli_xxxxxxxx","tenant_key":"xxxxxxx","create_time":"1603977298000000","token":"v"},"event":{"object":{"open_id":"ou_7dab8a3d3cdcc9da365777c7ad535d62","union_id":"on_576833b917gda3d939b9a3c2d53e72c8","user_id":"e33ggbyz","name":"张三","employee_no":"employee_no"}},"challenge":"1212","type":"url_verification"}"#
        );
    }

    // events.md §10.6: derived signature vector.
    #[test]
    fn derived_signature_vector() {
        let c = EventCipher::new("test key");
        let body = br#"{"encrypt":"P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="}"#;
        let want = "002a272a435d056759149cce18e88064ff320d38d91a09432445c344c4296949";
        assert_eq!(c.signature("1700000000", "nonce-1", body), want);
        assert!(c.verify_signature("1700000000", "nonce-1", body, want));
        assert!(c.verify_signature("1700000000", "nonce-1", body, &want.to_uppercase()));
        assert!(!c.verify_signature("1700000001", "nonce-1", body, want));
        assert!(!c.verify_signature("1700000000", "nonce-1", body, "not hex"));
        assert!(!c.verify_signature("1700000000", "nonce-1", body, &want[..62]));
    }

    // events.md §10.6: derived legacy card (SHA-1) signature vector.
    #[test]
    fn legacy_card_signature_vector() {
        let body = br#"{"encrypt":"P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="}"#;
        let want = "d5e3cd2cd7ec20d65e1eea1bfe56da70536be9de";
        let token = "verification-token";
        assert_eq!(
            legacy_card_signature(token, "1700000000", "nonce-1", body),
            want
        );
        assert!(verify_legacy_card_signature(
            token,
            "1700000000",
            "nonce-1",
            body,
            want
        ));
        assert!(verify_legacy_card_signature(
            token,
            "1700000000",
            "nonce-1",
            body,
            &want.to_uppercase()
        ));
        assert!(!verify_legacy_card_signature(
            "other",
            "1700000000",
            "nonce-1",
            body,
            want
        ));
        assert!(!verify_legacy_card_signature(
            token,
            "1700000000",
            "nonce-1",
            &body[1..],
            want
        ));
        assert!(!verify_legacy_card_signature(
            token,
            "1700000000",
            "nonce-1",
            body,
            &want[..38]
        ));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let c = EventCipher::new("test key");
        assert_eq!(c.decrypt("%%%"), Err(CryptoError::Base64));
        assert_eq!(c.decrypt("AAAA"), Err(CryptoError::Length(0)));
        // Right length, wrong key: padding check fails (or, rarely, yields garbage that the
        // JSON parser rejects later).
        let other = EventCipher::new("other key");
        let ct = c.encrypt(b"{\"a\":1}");
        assert_ne!(other.decrypt(&ct).ok(), Some(b"{\"a\":1}".to_vec()));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let c = EventCipher::new("super-secret-key");
        assert!(!format!("{c:?}").contains("super-secret"));
    }

    #[test]
    fn secret_eq_works() {
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "abcd"));
        assert!(!secret_eq("", "a"));
    }

    proptest! {
        #[test]
        fn round_trip(key in ".{0,40}", pt in proptest::collection::vec(any::<u8>(), 0..600), iv in any::<[u8; 16]>()) {
            let c = EventCipher::new(&key);
            let ct = c.encrypt_with_iv(&pt, iv);
            prop_assert_eq!(c.decrypt(&ct).unwrap(), pt);
        }

        #[test]
        fn any_bit_flip_breaks_the_signature(
            body in proptest::collection::vec(any::<u8>(), 1..300),
            ts in "[0-9]{10}", nonce in "[a-z0-9]{1,16}",
            which in 0usize..3, pos in any::<usize>(), bit in 0u8..8,
        ) {
            let c = EventCipher::new("k");
            let sig = c.signature(&ts, &nonce, &body);
            let (mut ts2, mut nonce2, mut body2) = (ts.clone().into_bytes(), nonce.clone().into_bytes(), body.clone());
            let target = match which { 0 => &mut body2, 1 => &mut ts2, _ => &mut nonce2 };
            let i = pos % target.len();
            target[i] ^= 1 << bit;
            let ts2 = String::from_utf8_lossy(&ts2).into_owned();
            let nonce2 = String::from_utf8_lossy(&nonce2).into_owned();
            // A flip that lossy-decodes back to the same string is not a change.
            prop_assume!(ts2 != ts || nonce2 != nonce || body2 != body);
            prop_assert!(!c.verify_signature(&ts2, &nonce2, &body2, &sig));
        }

        #[test]
        fn any_bit_flip_in_the_signature_fails(body in proptest::collection::vec(any::<u8>(), 0..100), pos in 0usize..32, bit in 0u8..8) {
            let c = EventCipher::new("k");
            let mut sig = hex::decode(c.signature("1", "n", &body)).unwrap();
            sig[pos] ^= 1 << bit;
            prop_assert!(!c.verify_signature("1", "n", &body, &hex::encode(sig)));
        }
    }
}
