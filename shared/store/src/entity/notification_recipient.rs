//! One recipient of a notification: a user (by the id kind it was given or resolved to), a
//! chat, or the message replied to; queued, sent or failed (with Feishu's code and message).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_recipients")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub notification_id: String,
    /// open_id, user_id, union_id, email, chat_id, department_id, reply.
    pub kind: String,
    pub target: String,
    /// single (im/v1/messages or reply) or batch (message/v4/batch_send).
    pub via: String,
    /// The batch chunk (0-based) for batch recipients.
    pub chunk: Option<i32>,
    /// queued, sent, failed.
    pub status: String,
    /// om_... for single sends, bm-... for batch sends.
    pub message_id: Option<String>,
    pub code: Option<i64>,
    pub msg: Option<String>,
    pub attempts: i32,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
