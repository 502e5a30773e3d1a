//! Org-change messages written in the same transaction as the change, published after commit.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub app_id: String,
    /// `user:<open_id>`, `department:<id>`, `membership:<open_id>:<id>`.
    pub entity_key: String,
    pub routing_key: String,
    pub message_id: String,
    pub type_name: String,
    pub body: Vec<u8>,
    pub created_at: ChronoDateTimeUtc,
    pub published_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
