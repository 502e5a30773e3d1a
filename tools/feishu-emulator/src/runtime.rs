//! Runtime tables that are not part of the saved state: access tokens, OAuth codes,
//! refresh tokens, QR `tmp_code`s and the message `uuid` dedupe window.

use std::collections::HashMap;

use rand::rngs::OsRng;
use serde_json::Value;

use crate::ids::random_alnum;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    Tenant,
    App,
    User { user_id: String, scope: String },
}

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub kind: TokenKind,
    pub app_id: String,
    pub tenant: usize,
    pub expires_ms: i64,
}

#[derive(Debug, Clone)]
pub struct CodeInfo {
    pub app_id: String,
    pub tenant: usize,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: String,
    pub expires_ms: i64,
    pub used: bool,
}

#[derive(Debug, Clone)]
pub struct RefreshInfo {
    pub app_id: String,
    pub tenant: usize,
    pub user_id: String,
    pub scope: String,
    pub expires_ms: i64,
    pub used: bool,
}

#[derive(Debug, Default)]
pub struct Runtime {
    pub tokens: HashMap<String, TokenInfo>,
    /// (app_id, "tenant"|"app") -> the token currently handed out.
    pub current: HashMap<(String, &'static str), String>,
    pub codes: HashMap<String, CodeInfo>,
    pub refresh: HashMap<String, RefreshInfo>,
    /// QR login tmp_code -> (tenant, user_id, expires_ms).
    pub tmp_codes: HashMap<String, (usize, String, i64)>,
    /// (app_id, uuid) -> (expires_ms, the response data of the first send).
    pub uuids: HashMap<(String, String), (i64, Value)>,
    /// The user the QR frame scans as automatically.
    pub qr_auto_user: Option<String>,
    /// Card callback tokens (`c-...`) -> the card they may update.
    pub card_tokens: HashMap<String, CardToken>,
}

/// What a card.action.trigger token allows: two delayed updates of one card within 30 min.
#[derive(Debug, Clone)]
pub struct CardToken {
    pub app_id: String,
    pub message_id: String,
    pub expires_ms: i64,
    pub uses_left: u32,
}

/// Access-token lifetime rules.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    pub lifetime_ms: i64,
    pub reissue_below_ms: i64,
}

impl Runtime {
    /// Returns the app's current token of a kind, minting a new one when fewer than
    /// `reissue_below` remain (the old one stays valid until it expires).
    pub fn app_token(
        &mut self,
        app_id: &str,
        tenant: usize,
        kind: TokenKind,
        now_ms: i64,
        life: Lifetime,
    ) -> (String, i64) {
        let (slot, prefix) = match kind {
            TokenKind::App => ("app", "a-"),
            _ => ("tenant", "t-"),
        };
        let key = (app_id.to_string(), slot);
        if let Some(tok) = self.current.get(&key) {
            if let Some(info) = self.tokens.get(tok) {
                let left = info.expires_ms - now_ms;
                if left >= life.reissue_below_ms && left > 0 {
                    return (tok.clone(), (left + 500) / 1000);
                }
            }
        }
        let tok = format!("{prefix}g1044{}", random_alnum(&mut OsRng, 36));
        self.tokens.insert(
            tok.clone(),
            TokenInfo {
                kind,
                app_id: app_id.to_string(),
                tenant,
                expires_ms: now_ms + life.lifetime_ms,
            },
        );
        self.current.insert(key, tok.clone());
        self.gc(now_ms);
        (tok, life.lifetime_ms / 1000)
    }

    /// Drops expired entries now and then so long runs do not grow without bound.
    fn gc(&mut self, now_ms: i64) {
        if self.tokens.len() > 10_000 {
            self.tokens.retain(|_, t| t.expires_ms > now_ms);
        }
        if self.codes.len() > 10_000 {
            self.codes.retain(|_, c| c.expires_ms > now_ms);
        }
        if self.uuids.len() > 100_000 {
            self.uuids.retain(|_, (e, _)| *e > now_ms);
        }
    }

    /// Mints a user access token (a JWT-shaped string, as the v2 endpoint returns).
    pub fn user_token(
        &mut self,
        app_id: &str,
        tenant: usize,
        user_id: &str,
        scope: &str,
        now_ms: i64,
        lifetime_ms: i64,
    ) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        use base64::Engine as _;
        let header = B64.encode(br#"{"alg":"ES256","kid":"emulator","typ":"JWT"}"#);
        let payload = B64.encode(
            serde_json::json!({
                "jti": random_alnum(&mut OsRng, 16),
                "appid": app_id,
                "exp": (now_ms + lifetime_ms) / 1000,
                "iat": now_ms / 1000,
            })
            .to_string(),
        );
        let tok = format!("{header}.{payload}.{}", random_alnum(&mut OsRng, 86));
        self.tokens.insert(
            tok.clone(),
            TokenInfo {
                kind: TokenKind::User {
                    user_id: user_id.to_string(),
                    scope: scope.to_string(),
                },
                app_id: app_id.to_string(),
                tenant,
                expires_ms: now_ms + lifetime_ms,
            },
        );
        self.gc(now_ms);
        tok
    }
}
