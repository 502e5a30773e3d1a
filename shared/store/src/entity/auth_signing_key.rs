//! A token signing key of auth: the private half sealed under the master key, the public
//! half as the JWK that `/.well-known/jwks.json` publishes. The newest unretired key signs;
//! retired keys stay published until every token they signed has expired.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_signing_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    pub algorithm: String,
    /// PKCS#8 DER, base64, sealed (AAD `auth_signing_keys.private_key:<kid>`).
    pub private_key: String,
    /// The public JWK (JSON).
    pub public_jwk: String,
    pub created_at: ChronoDateTimeUtc,
    pub retired_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
