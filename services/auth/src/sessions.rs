//! Sessions: created at login, refreshed with single-use refresh tokens (a reuse revokes the
//! whole session), revoked at logout. Access tokens are EdDSA JWTs carrying the session id.

use actix_web::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use bridge_session::{Claims, AUDIENCE};
use bridge_store::entity::{auth_login_state, auth_refresh_token, auth_session};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Header};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, Set, TransactionTrait,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Refusal;
use crate::Inner;

/// Who logged in, after every check passed.
#[derive(Debug, Clone)]
pub struct Identity {
    pub app_id: String,
    pub tenant_key: String,
    pub open_id: String,
    pub union_id: Option<String>,
    pub name: String,
    pub admin: bool,
    /// `qr` or `in_client`.
    pub method: &'static str,
}

/// A session's tokens as handed to the client.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: i64,
    pub refresh_token: String,
    /// Seconds until the session can no longer be refreshed.
    pub refresh_expires_in: i64,
    pub session_id: String,
    pub user: Claims,
}

pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rngs::OsRng, b.as_mut_slice());
    B64URL.encode(b)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn refused(detail: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, 40120, "Session refused", detail)
}

fn sign(
    inner: &Inner,
    s: &auth_session::Model,
    now: DateTime<Utc>,
) -> Result<(String, Claims), Refusal> {
    let exp = now + chrono::Duration::from_std(inner.settings.access_ttl).unwrap_or_default();
    let claims = Claims {
        iss: inner.settings.issuer.clone(),
        aud: AUDIENCE.into(),
        sub: s.open_id.clone(),
        sid: s.id.clone(),
        app_id: s.app_id.clone(),
        tenant_key: s.tenant_key.clone(),
        open_id: s.open_id.clone(),
        union_id: s.union_id.clone(),
        name: s.name.clone(),
        admin: s.is_admin,
        iat: now.timestamp(),
        exp: exp.timestamp(),
        jti: uuid::Uuid::new_v4().simple().to_string(),
    };
    let key = inner.signing_key();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    let jwt = jsonwebtoken::encode(&header, &claims, &key.encoding)
        .map_err(|e| Refusal::unavailable("token signing", e))?;
    Ok((jwt, claims))
}

fn issued(
    inner: &Inner,
    s: &auth_session::Model,
    refresh: String,
    now: DateTime<Utc>,
) -> Result<Issued, Refusal> {
    let (jwt, claims) = sign(inner, s, now)?;
    Ok(Issued {
        access_token: jwt,
        token_type: "Bearer",
        expires_in: inner.settings.access_ttl.as_secs() as i64,
        refresh_token: refresh,
        refresh_expires_in: (s.expires_at - now).num_seconds().max(0),
        session_id: s.id.clone(),
        user: claims,
    })
}

/// Starts a session for a person who passed every login check.
pub async fn create(inner: &Inner, who: &Identity) -> Result<Issued, Refusal> {
    let now = Utc::now();
    let access_exp =
        now + chrono::Duration::from_std(inner.settings.access_ttl).unwrap_or_default();
    let session = auth_session::Model {
        id: uuid::Uuid::new_v4().simple().to_string(),
        app_id: who.app_id.clone(),
        tenant_key: who.tenant_key.clone(),
        open_id: who.open_id.clone(),
        union_id: who.union_id.clone(),
        name: who.name.clone(),
        is_admin: who.admin,
        method: who.method.into(),
        created_at: now,
        refreshed_at: now,
        expires_at: now
            + chrono::Duration::from_std(inner.settings.refresh_ttl).unwrap_or_default(),
        access_expires_at: access_exp,
        revoked_at: None,
        revoke_reason: None,
    };
    let refresh = random_token(32);
    let txn = inner.db.begin().await?;
    auth_session::Entity::insert(auth_session::ActiveModel::from(session.clone()))
        .exec(&txn)
        .await?;
    auth_refresh_token::Entity::insert(auth_refresh_token::ActiveModel {
        token_hash: Set(hash_token(&refresh)),
        session_id: Set(session.id.clone()),
        created_at: Set(now),
        expires_at: Set(session.expires_at),
        used_at: Set(None),
    })
    .exec(&txn)
    .await?;
    txn.commit().await?;
    metrics::counter!("auth_logins_total", "method" => who.method).increment(1);
    issued(inner, &session, refresh, now)
}

/// Trades a refresh token for a new access token and refresh token. A refresh token works
/// once: presenting it again revokes the session (someone else may hold a copy).
pub async fn refresh(inner: &Inner, token: &str) -> Result<Issued, Refusal> {
    let now = Utc::now();
    let hash = hash_token(token);
    let txn = inner.db.begin().await?;
    let Some(row) = auth_refresh_token::Entity::find_by_id(hash.clone())
        .one(&txn)
        .await?
    else {
        return Err(refused("the refresh token is not known"));
    };
    let taken = auth_refresh_token::Entity::update_many()
        .col_expr(
            auth_refresh_token::Column::UsedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(auth_refresh_token::Column::TokenHash.eq(hash))
        .filter(auth_refresh_token::Column::UsedAt.is_null())
        .exec(&txn)
        .await?;
    if taken.rows_affected == 0 {
        txn.rollback().await?;
        let revoked = revoke(inner, &row.session_id, "refresh_reuse").await?;
        if revoked.is_some() {
            tracing::warn!(session = %row.session_id, "a refresh token was used twice: session revoked");
        }
        return Err(refused(
            "the refresh token was already used; the session has been revoked, log in again",
        ));
    }
    let Some(session) = auth_session::Entity::find_by_id(row.session_id.clone())
        .one(&txn)
        .await?
    else {
        return Err(refused("the session no longer exists"));
    };
    if session.revoked_at.is_some() {
        return Err(refused("the session was logged out"));
    }
    if session.expires_at <= now || row.expires_at <= now {
        return Err(refused("the session has expired; log in again"));
    }
    let new_refresh = random_token(32);
    auth_refresh_token::Entity::insert(auth_refresh_token::ActiveModel {
        token_hash: Set(hash_token(&new_refresh)),
        session_id: Set(session.id.clone()),
        created_at: Set(now),
        expires_at: Set(session.expires_at),
        used_at: Set(None),
    })
    .exec(&txn)
    .await?;
    let access_exp =
        now + chrono::Duration::from_std(inner.settings.access_ttl).unwrap_or_default();
    let mut am: auth_session::ActiveModel = session.clone().into();
    am.refreshed_at = Set(now);
    am.access_expires_at = Set(access_exp);
    let session = am.update(&txn).await?;
    txn.commit().await?;
    issued(inner, &session, new_refresh, now)
}

/// Revokes a session (if not revoked already) and tells everyone: this process's verifier at
/// once, the other processes through the database poll, and subscribers of `auth.events`.
pub async fn revoke(
    inner: &Inner,
    sid: &str,
    reason: &'static str,
) -> Result<Option<auth_session::Model>, Refusal> {
    let now = Utc::now();
    let r = auth_session::Entity::update_many()
        .col_expr(
            auth_session::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .col_expr(
            auth_session::Column::RevokeReason,
            sea_orm::sea_query::Expr::value(reason),
        )
        .filter(auth_session::Column::Id.eq(sid))
        .filter(auth_session::Column::RevokedAt.is_null())
        .exec(&inner.db)
        .await?;
    let Some(s) = auth_session::Entity::find_by_id(sid.to_string())
        .one(&inner.db)
        .await?
    else {
        return Ok(None);
    };
    inner
        .verifier
        .revoke(sid, s.access_expires_at.timestamp() + 60);
    if r.rows_affected > 0 {
        metrics::counter!("auth_logouts_total", "reason" => reason).increment(1);
        crate::events::logout(inner, &s, reason).await;
    }
    Ok(Some(s))
}

/// The session a refresh token belongs to (logout with only the refresh cookie).
pub async fn session_of_refresh(inner: &Inner, token: &str) -> Result<Option<String>, Refusal> {
    Ok(auth_refresh_token::Entity::find_by_id(hash_token(token))
        .one(&inner.db)
        .await?
        .map(|r| r.session_id))
}

/// Deletes login states that expired an hour ago and refresh tokens of ended sessions.
pub async fn purge(inner: &Inner) -> Result<(), sea_orm::DbErr> {
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    auth_login_state::Entity::delete_many()
        .filter(auth_login_state::Column::ExpiresAt.lt(hour_ago))
        .exec(&inner.db)
        .await?;
    auth_refresh_token::Entity::delete_many()
        .filter(
            Condition::any()
                .add(auth_refresh_token::Column::ExpiresAt.lt(hour_ago))
                .add(auth_refresh_token::Column::UsedAt.lt(hour_ago)),
        )
        .exec(&inner.db)
        .await?;
    Ok(())
}
