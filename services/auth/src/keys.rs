//! Token signing keys: Ed25519, generated here, the private half sealed under the master key
//! in `auth_signing_keys`, the public half published as a JWK. Rotation adds a key that signs
//! from then on and retires the others, which stay published until their tokens expired.

use std::time::Duration;

use anyhow::Context as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use bridge_store::entity::auth_signing_key;
use bridge_store::MasterKey;
use chrono::Utc;
use jsonwebtoken::EncodingKey;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "EdDSA";

/// The key that signs new tokens.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
}

fn context(kid: &str) -> String {
    format!("auth_signing_keys.private_key:{kid}")
}

/// Generates a key and stores it; returns its kid.
pub async fn create(db: &DatabaseConnection, mk: &MasterKey) -> anyhow::Result<String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("generated Ed25519 key does not parse"))?;
    let public = pair.public_key().as_ref();
    let now = Utc::now();
    let kid = format!(
        "{}-{}",
        now.format("%Y%m%d"),
        &hex::encode(Sha256::digest(public))[..12]
    );
    let jwk = serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": B64URL.encode(public),
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    });
    auth_signing_key::Entity::insert(auth_signing_key::ActiveModel {
        kid: Set(kid.clone()),
        algorithm: Set(ALGORITHM.into()),
        private_key: Set(mk.seal(&B64.encode(pkcs8.as_ref()), &context(&kid))),
        public_jwk: Set(jwk.to_string()),
        created_at: Set(now),
        retired_at: Set(None),
    })
    .exec(db)
    .await
    .context("storing a signing key")?;
    Ok(kid)
}

/// The newest unretired key, if any.
pub async fn active(db: &DatabaseConnection, mk: &MasterKey) -> anyhow::Result<Option<SigningKey>> {
    let Some(row) = auth_signing_key::Entity::find()
        .filter(auth_signing_key::Column::RetiredAt.is_null())
        .order_by_desc(auth_signing_key::Column::CreatedAt)
        .order_by_desc(auth_signing_key::Column::Kid)
        .one(db)
        .await
        .context("reading signing keys")?
    else {
        return Ok(None);
    };
    let der = mk
        .open(&row.private_key, &context(&row.kid))
        .with_context(|| format!("opening signing key {}", row.kid))?;
    let der = B64
        .decode(der.expose_secret())
        .with_context(|| format!("signing key {} is malformed", row.kid))?;
    Ok(Some(SigningKey {
        kid: row.kid,
        encoding: EncodingKey::from_ed_der(&der),
    }))
}

/// The active key, creating the first one when there is none.
pub async fn ensure(db: &DatabaseConnection, mk: &MasterKey) -> anyhow::Result<SigningKey> {
    if let Some(k) = active(db, mk).await? {
        return Ok(k);
    }
    let kid = create(db, mk).await?;
    tracing::info!(%kid, "created the first token signing key");
    active(db, mk)
        .await?
        .context("the signing key just created is not readable")
}

/// Adds a key that signs from now on and retires the others (still published for `grace`, so
/// tokens they signed keep verifying until they expire); deletes keys retired longer ago.
pub async fn rotate(
    db: &DatabaseConnection,
    mk: &MasterKey,
    grace: Duration,
) -> anyhow::Result<String> {
    let kid = create(db, mk).await?;
    let now = Utc::now();
    auth_signing_key::Entity::update_many()
        .col_expr(
            auth_signing_key::Column::RetiredAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(auth_signing_key::Column::Kid.ne(kid.clone()))
        .filter(auth_signing_key::Column::RetiredAt.is_null())
        .exec(db)
        .await
        .context("retiring the previous signing keys")?;
    let cutoff = now - chrono::Duration::from_std(grace).unwrap_or_default();
    auth_signing_key::Entity::delete_many()
        .filter(auth_signing_key::Column::RetiredAt.lt(cutoff))
        .exec(db)
        .await
        .context("deleting expired signing keys")?;
    Ok(kid)
}
