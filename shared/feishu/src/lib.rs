//! Feishu (Lark): the Open API client (`api`), and event crypto and envelopes: the signature check, AES-256-CBC decryption and
//! encryption, and parsing of schema 2.0 / 1.0 envelopes and url_verification requests.

pub mod api;
pub mod crypto;
pub mod envelope;

pub use crypto::{CryptoError, EventCipher};
pub use envelope::{Envelope, EnvelopeError, Inbound};
