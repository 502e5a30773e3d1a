//! Sends a planned notification: single sends (im/v1/messages with a uuid per recipient, or
//! the reply API) a few at a time, then the batch_send chunks, each call within the shared
//! budget. A recipient's outcome is recorded as soon as Feishu answers, so a redelivered
//! request only sends to those still queued; Feishu's uuid covers a crash between the send and
//! the record. Permanent refusals are final for their recipient; transient failures leave it
//! queued and ask for a retry of the whole request through the bus's retry tiers.

use bridge_feishu::api::im::{self, BatchSend, ReceiveIdType, RATE_CODES};
use bridge_feishu::api::{AppCredentials, FeishuError};
use bridge_store::entity::{notification, notification_recipient as rcpt};
use futures_util::StreamExt;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use crate::budget::Budget;
use crate::message::{send_uuid, Content};
use crate::records::{self, B_FAILED, B_PENDING, B_SENDING, B_SENT, FAILED, QUEUED, SENT};
use crate::Inner;

/// What became of a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every recipient has its final state (batches may still be followed).
    Done,
    /// Some recipients are still queued after a transient failure.
    Retry(String),
}

/// How a failed call counts for its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Permanent { code: Option<i64>, msg: String },
    Transient { code: Option<i64>, msg: String },
}

pub fn classify(e: &FeishuError) -> Failure {
    match e {
        FeishuError::Api {
            code, msg, status, ..
        } if RATE_CODES.contains(code) || *status >= 500 => Failure::Transient {
            code: Some(*code),
            msg: msg.clone(),
        },
        FeishuError::Api { code, msg, .. } => Failure::Permanent {
            code: Some(*code),
            msg: msg.clone(),
        },
        other => Failure::Transient {
            code: other.code(),
            msg: other.to_string(),
        },
    }
}

pub async fn deliver(inner: &Inner, n: &notification::Model) -> Result<Outcome, DbErr> {
    let Some(content) = Content::stored(&n.msg_type, &n.content) else {
        records::fail_queued(&inner.db, &n.id, None, None, "stored content unreadable").await?;
        return Ok(Outcome::Done);
    };
    let Some(creds) = inner.credentials(&n.app_id) else {
        return Ok(Outcome::Retry(format!(
            "app {} is not bound or is disabled",
            n.app_id
        )));
    };
    let singles = rcpt::Entity::find()
        .filter(rcpt::Column::NotificationId.eq(n.id.clone()))
        .filter(rcpt::Column::Status.eq(QUEUED))
        .filter(rcpt::Column::Chunk.is_null())
        .order_by_asc(rcpt::Column::Id)
        .all(&inner.db)
        .await?;
    let par = inner.settings.sends_per_notification;
    let results: Vec<Result<Option<String>, DbErr>> = futures_util::stream::iter(singles)
        .map(|r| send_one(inner, &creds, n, &content, r))
        .buffer_unordered(par)
        .collect()
        .await;
    let mut retry: Option<String> = None;
    for r in results {
        if let Some(reason) = r? {
            retry.get_or_insert(reason);
        }
    }
    let chunks = bridge_store::entity::notification_batch::Entity::find()
        .filter(bridge_store::entity::notification_batch::Column::NotificationId.eq(n.id.clone()))
        .filter(
            bridge_store::entity::notification_batch::Column::Status.is_in([B_PENDING, B_SENDING]),
        )
        .order_by_asc(bridge_store::entity::notification_batch::Column::Chunk)
        .all(&inner.db)
        .await?;
    for b in chunks {
        if let Some(reason) = send_chunk(inner, &creds, n, &content, b.chunk, &b.status).await? {
            retry.get_or_insert(reason);
        }
    }
    Ok(match retry {
        Some(r) => Outcome::Retry(r),
        None => Outcome::Done,
    })
}

/// Budget key of a recipient: Feishu's 5 QPS holds per user and per group.
fn recipient_key(app_id: &str, r: &rcpt::Model) -> String {
    match r.kind.as_str() {
        "chat_id" => format!("chat:{}", r.target),
        "reply" => format!("msg:{}", r.target),
        kind => format!("user:{app_id}:{kind}:{}", r.target),
    }
}

/// Sends to one recipient; `Some(reason)` when it stays queued for a retry.
async fn send_one(
    inner: &Inner,
    creds: &AppCredentials,
    n: &notification::Model,
    content: &Content,
    r: rcpt::Model,
) -> Result<Option<String>, DbErr> {
    let api = if r.kind == "reply" {
        im::REPLY
    } else {
        im::SEND
    };
    let key = recipient_key(&n.app_id, &r);
    let ask = Budget::ask(
        api,
        &n.app_id,
        Some(&key),
        inner.rate_scale,
        inner.settings.rate_headroom,
    );
    inner.budget.acquire(&ask).await?;
    let uuid = send_uuid(&n.id, &r.kind, &r.target);
    let body = content.as_string();
    let sent = match r.kind.as_str() {
        "reply" => {
            inner
                .client
                .reply_message(creds, &r.target, content.msg_type, &body, Some(&uuid))
                .await
        }
        kind => {
            let id_type = match kind {
                "chat_id" => ReceiveIdType::ChatId,
                "user_id" => ReceiveIdType::UserId,
                "union_id" => ReceiveIdType::UnionId,
                "email" => ReceiveIdType::Email,
                _ => ReceiveIdType::OpenId,
            };
            inner
                .client
                .send_message(
                    creds,
                    id_type,
                    &r.target,
                    content.msg_type,
                    &body,
                    Some(&uuid),
                )
                .await
        }
    };
    match sent {
        Ok(m) => {
            metrics::counter!("notifier_sends_total", "outcome" => "sent").increment(1);
            records::set_recipient(&inner.db, r.id, SENT, Some(&m.message_id), None, None).await?;
            Ok(None)
        }
        Err(e) => match classify(&e) {
            Failure::Permanent { code, msg } => {
                metrics::counter!("notifier_sends_total", "outcome" => "failed").increment(1);
                tracing::info!(notification_id = %n.id, kind = %r.kind, code, msg, "recipient refused by feishu");
                records::set_recipient(&inner.db, r.id, FAILED, None, code, Some(&msg)).await?;
                Ok(None)
            }
            Failure::Transient { code, msg } => {
                metrics::counter!("notifier_sends_total", "outcome" => "retry").increment(1);
                tracing::warn!(notification_id = %n.id, kind = %r.kind, error = %e, "send failed for now; will retry");
                records::set_recipient(&inner.db, r.id, QUEUED, None, code, Some(&msg)).await?;
                Ok(Some(e.to_string()))
            }
        },
    }
}

/// Sends one batch_send chunk; `Some(reason)` when it stays pending for a retry.
async fn send_chunk(
    inner: &Inner,
    creds: &AppCredentials,
    n: &notification::Model,
    content: &Content,
    chunk: i32,
    status: &str,
) -> Result<Option<String>, DbErr> {
    if status == B_SENDING {
        // A call was under way when a replica stopped: Feishu may or may not have taken it,
        // and batch_send has no uuid. Sending again could double every message of the chunk,
        // so the chunk is reported failed instead (at most once).
        records::set_batch(&inner.db, &n.id, chunk, &[B_SENDING], B_FAILED, None).await?;
        records::fail_queued(
            &inner.db,
            &n.id,
            Some(chunk),
            None,
            "outcome unknown: the batch_send call was interrupted; not resent to avoid duplicates",
        )
        .await?;
        return Ok(None);
    }
    let rows = rcpt::Entity::find()
        .filter(rcpt::Column::NotificationId.eq(n.id.clone()))
        .filter(rcpt::Column::Chunk.eq(chunk))
        .all(&inner.db)
        .await?;
    let (c, card) = content.for_batch();
    let mut req = BatchSend {
        msg_type: content.msg_type.to_string(),
        content: c,
        card,
        ..Default::default()
    };
    for r in rows.iter().filter(|r| r.status == QUEUED) {
        let list = match r.kind.as_str() {
            "open_id" => &mut req.open_ids,
            "user_id" => &mut req.user_ids,
            "union_id" => &mut req.union_ids,
            _ => &mut req.department_ids,
        };
        list.push(r.target.clone());
    }
    if req.open_ids.is_empty()
        && req.user_ids.is_empty()
        && req.union_ids.is_empty()
        && req.department_ids.is_empty()
    {
        records::set_batch(&inner.db, &n.id, chunk, &[B_PENDING], B_FAILED, None).await?;
        return Ok(None);
    }
    if !records::set_batch(&inner.db, &n.id, chunk, &[B_PENDING], B_SENDING, None).await? {
        return Ok(None);
    }
    let ask = Budget::ask(
        im::BATCH_SEND,
        &n.app_id,
        None,
        inner.rate_scale,
        inner.settings.rate_headroom,
    );
    inner.budget.acquire(&ask).await?;
    match inner.client.batch_send(creds, &req).await {
        Ok(sent) => {
            let invalid: std::collections::HashSet<&str> = sent
                .invalid_open_ids
                .iter()
                .chain(&sent.invalid_user_ids)
                .chain(&sent.invalid_union_ids)
                .chain(&sent.invalid_department_ids)
                .map(String::as_str)
                .collect();
            let ok_ids: Vec<i64> = rows
                .iter()
                .filter(|r| r.status == QUEUED && !invalid.contains(r.target.as_str()))
                .map(|r| r.id)
                .collect();
            let bad_ids: Vec<i64> = rows
                .iter()
                .filter(|r| r.status == QUEUED && invalid.contains(r.target.as_str()))
                .map(|r| r.id)
                .collect();
            let now = chrono::Utc::now();
            for ids in ok_ids.chunks(1000) {
                rcpt::Entity::update_many()
                    .col_expr(rcpt::Column::Status, Expr::value(SENT))
                    .col_expr(
                        rcpt::Column::MessageId,
                        Expr::value(sent.message_id.clone()),
                    )
                    .col_expr(
                        rcpt::Column::Attempts,
                        Expr::col(rcpt::Column::Attempts).add(1),
                    )
                    .col_expr(rcpt::Column::UpdatedAt, Expr::value(now))
                    .filter(rcpt::Column::Id.is_in(ids.iter().copied()))
                    .exec(&inner.db)
                    .await?;
            }
            for ids in bad_ids.chunks(1000) {
                rcpt::Entity::update_many()
                    .col_expr(rcpt::Column::Status, Expr::value(FAILED))
                    .col_expr(
                        rcpt::Column::MessageId,
                        Expr::value(sent.message_id.clone()),
                    )
                    .col_expr(
                        rcpt::Column::Msg,
                        Expr::value("invalid id: batch_send listed it among the invalid ids"),
                    )
                    .col_expr(rcpt::Column::UpdatedAt, Expr::value(now))
                    .filter(rcpt::Column::Id.is_in(ids.iter().copied()))
                    .exec(&inner.db)
                    .await?;
            }
            records::set_batch(
                &inner.db,
                &n.id,
                chunk,
                &[B_SENDING],
                B_SENT,
                Some(&sent.message_id),
            )
            .await?;
            metrics::counter!("notifier_batches_total", "outcome" => "sent").increment(1);
            tracing::debug!(notification_id = %n.id, chunk, batch_message_id = %sent.message_id, invalid = invalid.len(), "batch sent");
            inner.wake.notify_one();
            Ok(None)
        }
        Err(e) => match classify(&e) {
            Failure::Permanent { code, msg } => {
                records::set_batch(&inner.db, &n.id, chunk, &[B_SENDING], B_FAILED, None).await?;
                records::fail_queued(&inner.db, &n.id, Some(chunk), code, &msg).await?;
                metrics::counter!("notifier_batches_total", "outcome" => "failed").increment(1);
                Ok(None)
            }
            Failure::Transient { .. } => {
                records::set_batch(&inner.db, &n.id, chunk, &[B_SENDING], B_PENDING, None).await?;
                metrics::counter!("notifier_batches_total", "outcome" => "retry").increment(1);
                Ok(Some(e.to_string()))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: i64, status: u16) -> FeishuError {
        FeishuError::Api {
            api: "im.messages.create",
            code,
            msg: "m".into(),
            status,
            log_id: None,
        }
    }

    #[test]
    fn refusals_are_final_and_outages_are_retried() {
        assert!(matches!(
            classify(&api(230013, 400)),
            Failure::Permanent { .. }
        ));
        assert!(matches!(
            classify(&api(230002, 400)),
            Failure::Permanent { .. }
        ));
        assert!(matches!(
            classify(&api(230020, 400)),
            Failure::Transient { .. }
        ));
        assert!(matches!(classify(&api(1, 503)), Failure::Transient { .. }));
        let e = FeishuError::Unavailable {
            api: "x",
            detail: "http 503".into(),
            attempts: 5,
        };
        assert!(matches!(classify(&e), Failure::Transient { .. }));
    }
}
