//! One change to an app binding made through the console: who, when, what (field names; a
//! secret only as "changed", never its value).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "console_audit")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: ChronoDateTimeUtc,
    pub actor: String,
    /// `create`, `update`, `delete`, `install`.
    pub action: String,
    pub app_id: String,
    /// JSON object: field -> new value (secrets: "changed").
    pub changes: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
