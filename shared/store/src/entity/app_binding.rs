//! A Feishu app bound to this platform. Secret columns hold ciphertext (see `secrets`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "app_bindings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub app_id: String,
    pub app_secret: String,
    pub encrypt_key: Option<String>,
    pub verification_token: String,
    pub team_name: String,
    pub domain: String,
    pub enabled: bool,
    pub qr_login_enabled: bool,
    /// `webhook`, `long_connection` or `both` (see `apps::Delivery`).
    pub delivery: String,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
