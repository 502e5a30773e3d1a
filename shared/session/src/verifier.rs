//! Offline verification of auth's access tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bridge_store::entity::{auth_session, auth_signing_key};
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};

/// The `aud` of every access token auth issues.
pub const AUDIENCE: &str = "feishu-bridge";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The platform user id: the user's open_id within `app_id`.
    pub sub: String,
    /// The session; logout revokes it.
    pub sid: String,
    pub app_id: String,
    pub tenant_key: String,
    pub open_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub union_id: Option<String>,
    pub name: String,
    /// An admin of the app in the tenant's admin console (`is_user_admin`).
    pub admin: bool,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token is signed with an unknown key ({0})")]
    UnknownKey(String),
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not for this platform: {0}")]
    WrongAudience(String),
    #[error("the session was revoked")]
    Revoked,
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

/// Where the public keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// `auth_signing_keys` in the shared database (every service of this system).
    Database(DatabaseConnection),
    /// A JWKS document (`https://<auth>/.well-known/jwks.json`).
    JwksUrl(url::Url),
    /// Fixed keys (tests, tools).
    Static(JwkSet),
}

#[derive(Debug, Clone)]
pub struct VerifierOptions {
    /// Expected `iss`.
    pub issuer: String,
    /// Clock skew allowed on `exp`.
    pub leeway: Duration,
    /// A retired key stays trusted this long (the longest access token lifetime, plus margin).
    pub retired_key_grace: Duration,
    /// At most one key refetch per this interval when tokens name an unknown key.
    pub refetch_interval: Duration,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            issuer: "feishu-bridge".into(),
            leeway: Duration::from_secs(30),
            retired_key_grace: Duration::from_secs(20 * 60),
            refetch_interval: Duration::from_millis(500),
        }
    }
}

struct Inner {
    source: KeySource,
    opts: VerifierOptions,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, Arc<DecodingKey>>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Revoked session id -> the instant (unix s) its last access token expires.
    revoked: RwLock<HashMap<String, i64>>,
    revocation_cursor: Mutex<Option<DateTime<Utc>>>,
}

/// Verifies access tokens. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

fn keys_of(set: &JwkSet) -> HashMap<String, Arc<DecodingKey>> {
    set.keys
        .iter()
        .filter_map(|k: &Jwk| {
            let kid = k.common.key_id.clone()?;
            DecodingKey::from_jwk(k).ok().map(|d| (kid, Arc::new(d)))
        })
        .collect()
}

impl Verifier {
    pub fn new(source: KeySource, opts: VerifierOptions) -> Self {
        let keys = match &source {
            KeySource::Static(set) => keys_of(set),
            _ => HashMap::new(),
        };
        Self {
            inner: Arc::new(Inner {
                source,
                opts,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
                keys: RwLock::new(keys),
                last_fetch: tokio::sync::Mutex::new(None),
                revoked: RwLock::new(HashMap::new()),
                revocation_cursor: Mutex::new(None),
            }),
        }
    }

    /// The keys a verifier should trust now, read from the database: every unretired key and
    /// the retired ones still inside the grace period. auth's JWKS publishes the same set.
    pub async fn database_keys(
        db: &DatabaseConnection,
        grace: Duration,
    ) -> Result<JwkSet, sea_orm::DbErr> {
        let since = Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
        let rows = auth_signing_key::Entity::find()
            .filter(
                Condition::any()
                    .add(auth_signing_key::Column::RetiredAt.is_null())
                    .add(auth_signing_key::Column::RetiredAt.gt(since)),
            )
            .all(db)
            .await?;
        Ok(JwkSet {
            keys: rows
                .iter()
                .filter_map(|r| serde_json::from_str::<Jwk>(&r.public_jwk).ok())
                .collect(),
        })
    }

    /// Reloads the keys from the source (at most once per `refetch_interval` unless forced).
    /// Callers queue behind one another, so a burst of tokens under a new key costs one fetch
    /// per interval.
    pub async fn refresh_keys(&self, force: bool) -> Result<(), VerifyError> {
        let mut last = self.inner.last_fetch.lock().await;
        if let (false, Some(t)) = (force, *last) {
            // Keys were read a moment ago: wait out the interval (one fetch at a time), so a
            // key rotated in meanwhile is still found, without a fetch per request.
            let since = t.elapsed();
            if since < self.inner.opts.refetch_interval {
                tokio::time::sleep(self.inner.opts.refetch_interval - since).await;
            }
        }
        let set = match &self.inner.source {
            KeySource::Static(set) => set.clone(),
            KeySource::Database(db) => Self::database_keys(db, self.inner.opts.retired_key_grace)
                .await
                .map_err(|e| VerifyError::KeysUnavailable(e.to_string()))?,
            KeySource::JwksUrl(url) => self
                .inner
                .http
                .get(url.clone())
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| VerifyError::KeysUnavailable(format!("{url}: {e}")))?
                .json::<JwkSet>()
                .await
                .map_err(|e| VerifyError::KeysUnavailable(format!("{url}: {e}")))?,
        };
        *last = Some(Instant::now());
        let keys = keys_of(&set);
        if let Ok(mut k) = self.inner.keys.write() {
            *k = keys;
        }
        Ok(())
    }

    fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.inner.keys.read().ok()?.get(kid).cloned()
    }

    /// Checks signature, issuer, audience, expiry and revocation.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::Malformed(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| VerifyError::Malformed("no kid".into()))?;
        let key = match self.key(&kid) {
            Some(k) => k,
            None => {
                self.refresh_keys(false).await?;
                self.key(&kid)
                    .ok_or_else(|| VerifyError::UnknownKey(kid.clone()))?
            }
        };
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[&self.inner.opts.issuer]);
        v.leeway = self.inner.opts.leeway.as_secs();
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => VerifyError::Expired,
                K::InvalidSignature => VerifyError::BadSignature,
                K::InvalidAudience | K::InvalidIssuer => VerifyError::WrongAudience(e.to_string()),
                _ => VerifyError::Malformed(e.to_string()),
            }
        })?;
        if self.is_revoked(&data.claims.sid) {
            return Err(VerifyError::Revoked);
        }
        Ok(data.claims)
    }

    pub fn is_revoked(&self, sid: &str) -> bool {
        self.inner
            .revoked
            .read()
            .map(|r| r.contains_key(sid))
            .unwrap_or(true)
    }

    /// Marks a session revoked here until `until` (unix s: its last access token's expiry).
    pub fn revoke(&self, sid: &str, until: i64) {
        if let Ok(mut r) = self.inner.revoked.write() {
            r.insert(sid.to_string(), until);
        }
    }

    /// Reads sessions revoked since the last poll (at the first poll: every revoked session
    /// whose access tokens have not expired) and forgets revocations whose tokens expired.
    pub async fn poll_revocations(&self, db: &DatabaseConnection) -> Result<usize, sea_orm::DbErr> {
        let now = Utc::now();
        let cursor = self.inner.revocation_cursor.lock().ok().and_then(|c| *c);
        let mut q = auth_session::Entity::find()
            .select_only()
            .column(auth_session::Column::Id)
            .column(auth_session::Column::AccessExpiresAt)
            .column(auth_session::Column::RevokedAt)
            .filter(auth_session::Column::RevokedAt.is_not_null())
            .filter(
                auth_session::Column::AccessExpiresAt
                    .gt(now
                        - chrono::Duration::from_std(self.inner.opts.leeway).unwrap_or_default()),
            );
        if let Some(c) = cursor {
            // Commits can land slightly out of order: look a little behind the cursor.
            q = q.filter(auth_session::Column::RevokedAt.gt(c - chrono::Duration::seconds(5)));
        }
        let rows: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> =
            q.into_tuple().all(db).await?;
        let mut newest = cursor;
        let leeway = self.inner.opts.leeway.as_secs() as i64;
        if let Ok(mut r) = self.inner.revoked.write() {
            for (sid, access_exp, revoked_at) in &rows {
                r.insert(sid.clone(), access_exp.timestamp() + leeway);
                newest = newest.max(*revoked_at);
            }
            let t = now.timestamp();
            r.retain(|_, until| *until >= t);
        }
        if let Ok(mut c) = self.inner.revocation_cursor.lock() {
            *c = newest;
        }
        Ok(rows.len())
    }

    /// Polls revocations from the database every `every` until `stop` resolves.
    pub fn spawn_revocation_poll(
        &self,
        db: DatabaseConnection,
        every: Duration,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = me.poll_revocations(&db).await {
                    tracing::warn!(error = %e, "cannot read session revocations; retrying");
                }
            }
        })
    }
}
