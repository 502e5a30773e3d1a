//! A login session: who, for which app, how, and whether it was revoked (logout, or a refresh
//! token used twice). Its id is the `sid` claim of every access token it issued.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub app_id: String,
    pub tenant_key: String,
    pub open_id: String,
    pub union_id: Option<String>,
    pub name: String,
    pub is_admin: bool,
    /// `qr` or `in_client`.
    pub method: String,
    pub created_at: ChronoDateTimeUtc,
    pub refreshed_at: ChronoDateTimeUtc,
    /// The session cannot be refreshed past this instant.
    pub expires_at: ChronoDateTimeUtc,
    /// When the newest access token issued for the session expires.
    pub access_expires_at: ChronoDateTimeUtc,
    pub revoked_at: Option<ChronoDateTimeUtc>,
    pub revoke_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
