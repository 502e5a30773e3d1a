//! A notification the notifier accepted: the rendered message, its targets, where delivery
//! stands, and whether its delivery report went out.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub app_id: String,
    pub idempotency_key: String,
    /// SHA-256 (hex) of the request's content, to refuse a key reused for another message.
    pub request_hash: String,
    pub requested_by: String,
    /// Feishu's msg_type: text, post, interactive.
    pub msg_type: String,
    /// The im/v1 content object (JSON), rendered.
    pub content: String,
    pub reply_to: Option<String>,
    /// The targets as requested (JSON).
    pub targets: String,
    /// accepted, delivering, finished.
    pub status: String,
    /// delivered, partial, failed (once finished).
    pub outcome: Option<String>,
    /// Recipients were resolved and recorded.
    pub planned: bool,
    pub recipients: i64,
    pub sent: i64,
    pub failed: i64,
    pub reason: Option<String>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
    pub finished_at: Option<ChronoDateTimeUtc>,
    pub reported_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
