//! One batch_send call of a notification (at most 200 ids a list) and its progress.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_batches")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub notification_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub chunk: i32,
    pub batch_message_id: Option<String>,
    /// pending, sending, sent (progress being followed), done, failed.
    pub status: String,
    pub valid_count: i64,
    pub success_count: i64,
    pub polls: i32,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
