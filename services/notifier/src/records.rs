//! The notification records in the database: accepting a request (once per app and key),
//! recipient and batch updates, and the tallies a delivery report is made of.

use bridge_store::entity::{notification, notification_batch, notification_recipient as rcpt};
use chrono::Utc;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Set};

use crate::message::{Accepted, Rejection};

pub const QUEUED: &str = "queued";
pub const SENT: &str = "sent";
pub const FAILED: &str = "failed";

/// Notification status: accepted (recorded), delivering (recipients planned, sends under way
/// or batches being followed), finished.
pub const ACCEPTED: &str = "accepted";
pub const DELIVERING: &str = "delivering";
pub const FINISHED: &str = "finished";

/// Batch status.
pub const B_PENDING: &str = "pending";
pub const B_SENDING: &str = "sending";
pub const B_SENT: &str = "sent";
pub const B_DONE: &str = "done";
pub const B_FAILED: &str = "failed";

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Records the notification unless the app and key are known; a known key with another
/// message is refused. Returns the record.
pub async fn accept(
    db: &impl ConnectionTrait,
    a: &Accepted,
) -> Result<notification::Model, AcceptError> {
    let id = a.notification_id();
    let hash = a.request_hash();
    let now = Utc::now();
    let row = notification::ActiveModel {
        id: Set(id.clone()),
        app_id: Set(a.app_id.clone()),
        idempotency_key: Set(a.idempotency_key.clone()),
        request_hash: Set(hash.clone()),
        requested_by: Set(a.requested_by.chars().take(200).collect()),
        msg_type: Set(a.content.msg_type.to_string()),
        content: Set(a.content.as_string()),
        reply_to: Set(a.reply_to.clone()),
        targets: Set(serde_json::to_string(&a.targets).unwrap_or_default()),
        status: Set(ACCEPTED.into()),
        outcome: Set(None),
        planned: Set(false),
        recipients: Set(0),
        sent: Set(0),
        failed: Set(0),
        reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        finished_at: Set(None),
        reported_at: Set(None),
    };
    notification::Entity::insert(row)
        .on_conflict(
            OnConflict::column(notification::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    let found = notification::Entity::find_by_id(id.clone())
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(id.clone()))?;
    if found.request_hash != hash {
        return Err(Rejection::KeyReused(a.idempotency_key.clone()).into());
    }
    Ok(found)
}

pub async fn get(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<notification::Model>, DbErr> {
    notification::Entity::find_by_id(id.to_string())
        .one(db)
        .await
}

/// Recipient counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
}

impl Tally {
    pub fn total(&self) -> i64 {
        self.queued + self.sent + self.failed
    }
}

pub async fn tally(db: &impl ConnectionTrait, id: &str) -> Result<Tally, DbErr> {
    let rows: Vec<(String, i64)> = rcpt::Entity::find()
        .select_only()
        .column(rcpt::Column::Status)
        .column_as(rcpt::Column::Id.count(), "n")
        .filter(rcpt::Column::NotificationId.eq(id))
        .group_by(rcpt::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let mut t = Tally::default();
    for (status, n) in rows {
        match status.as_str() {
            SENT => t.sent = n,
            FAILED => t.failed = n,
            _ => t.queued += n,
        }
    }
    Ok(t)
}

/// Batches of a notification not yet settled (to send, being sent, or progress followed).
pub async fn open_batches(db: &impl ConnectionTrait, id: &str) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    notification_batch::Entity::find()
        .filter(notification_batch::Column::NotificationId.eq(id))
        .filter(notification_batch::Column::Status.is_in([B_PENDING, B_SENDING, B_SENT]))
        .count(db)
        .await
}

/// Marks a recipient's outcome.
pub async fn set_recipient(
    db: &impl ConnectionTrait,
    row_id: i64,
    status: &str,
    message_id: Option<&str>,
    code: Option<i64>,
    msg: Option<&str>,
) -> Result<(), DbErr> {
    let mut q = rcpt::Entity::update_many()
        .col_expr(rcpt::Column::Status, Expr::value(status))
        .col_expr(
            rcpt::Column::Attempts,
            Expr::col(rcpt::Column::Attempts).add(1),
        )
        .col_expr(rcpt::Column::UpdatedAt, Expr::value(Utc::now()))
        .col_expr(rcpt::Column::Code, Expr::value(code))
        .col_expr(
            rcpt::Column::Msg,
            Expr::value(msg.map(|m| m.chars().take(2000).collect::<String>())),
        );
    if let Some(m) = message_id {
        q = q.col_expr(rcpt::Column::MessageId, Expr::value(m));
    }
    q.filter(rcpt::Column::Id.eq(row_id)).exec(db).await?;
    Ok(())
}

/// Everyone still queued in the notification is failed (retries used up, or the batch they
/// were in failed).
pub async fn fail_queued(
    db: &impl ConnectionTrait,
    id: &str,
    chunk: Option<i32>,
    code: Option<i64>,
    msg: &str,
) -> Result<(), DbErr> {
    let mut q = rcpt::Entity::update_many()
        .col_expr(rcpt::Column::Status, Expr::value(FAILED))
        .col_expr(rcpt::Column::UpdatedAt, Expr::value(Utc::now()))
        .col_expr(rcpt::Column::Code, Expr::value(code))
        .col_expr(
            rcpt::Column::Msg,
            Expr::value(msg.chars().take(2000).collect::<String>()),
        )
        .filter(rcpt::Column::NotificationId.eq(id))
        .filter(rcpt::Column::Status.eq(QUEUED));
    if let Some(c) = chunk {
        q = q.filter(rcpt::Column::Chunk.eq(c));
    }
    q.exec(db).await?;
    Ok(())
}

pub async fn set_batch(
    db: &impl ConnectionTrait,
    id: &str,
    chunk: i32,
    from: &[&str],
    to: &str,
    batch_message_id: Option<&str>,
) -> Result<bool, DbErr> {
    let mut q = notification_batch::Entity::update_many()
        .col_expr(notification_batch::Column::Status, Expr::value(to))
        .col_expr(
            notification_batch::Column::UpdatedAt,
            Expr::value(Utc::now()),
        );
    if let Some(b) = batch_message_id {
        q = q.col_expr(notification_batch::Column::BatchMessageId, Expr::value(b));
    }
    let r = q
        .filter(notification_batch::Column::NotificationId.eq(id))
        .filter(notification_batch::Column::Chunk.eq(chunk))
        .filter(notification_batch::Column::Status.is_in(from.iter().copied()))
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}
