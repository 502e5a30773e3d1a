//! Settling notifications: following batch progress until Feishu has worked through each
//! batch, closing a notification once every recipient and batch is settled, and publishing
//! its `DeliveryReport` to `notify.results` (at least once; `message_id` = notification id, so
//! subscribers dedupe). A background loop does what no consumer is waiting for.

use std::sync::Arc;

use bridge_bus::{Described, Message, Props};
use bridge_contracts::topology::NOTIFY_RESULTS;
use bridge_contracts::v1::{DeliveryReport, DeliveryStatus, RecipientResult};
use bridge_runtime::Shutdown;
use bridge_store::entity::{
    notification, notification_batch as batch, notification_recipient as rcpt,
};
use bytes::Bytes;
use chrono::Utc;
use prost::Message as _;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::records::{self, B_DONE, B_SENT, DELIVERING, FAILED, FINISHED};
use crate::Inner;

/// Polls of an unchanged progress after which a batch counts as worked through (Feishu's
/// `success` may stay below `valid` for users the bot cannot reach).
const STALL_POLLS: i32 = 3;

/// Closes `id` if everything is settled; returns whether it is finished.
pub async fn refresh(inner: &Inner, id: &str) -> Result<bool, DbErr> {
    let Some(n) = records::get(&inner.db, id).await? else {
        return Ok(false);
    };
    if n.status == FINISHED {
        return Ok(true);
    }
    if !n.planned {
        return Ok(false);
    }
    let t = records::tally(&inner.db, id).await?;
    let open = records::open_batches(&inner.db, id).await?;
    let done = t.queued == 0 && open == 0;
    let now = Utc::now();
    let mut q = notification::Entity::update_many()
        .col_expr(notification::Column::Sent, Expr::value(t.sent))
        .col_expr(notification::Column::Failed, Expr::value(t.failed))
        .col_expr(notification::Column::Recipients, Expr::value(t.total()))
        .col_expr(notification::Column::UpdatedAt, Expr::value(now));
    if done {
        let outcome = if t.failed == 0 {
            "delivered"
        } else if t.sent == 0 {
            "failed"
        } else {
            "partial"
        };
        q = q
            .col_expr(notification::Column::Status, Expr::value(FINISHED))
            .col_expr(notification::Column::Outcome, Expr::value(outcome))
            .col_expr(notification::Column::FinishedAt, Expr::value(now));
        metrics::counter!("notifier_notifications_total", "outcome" => outcome).increment(1);
    }
    q.filter(notification::Column::Id.eq(id))
        .filter(notification::Column::Status.ne(FINISHED))
        .exec(&inner.db)
        .await?;
    Ok(done)
}

/// Retries are used up: whoever is still queued has failed, with the last error.
pub async fn give_up(inner: &Inner, id: &str, reason: &str) -> Result<(), DbErr> {
    let msg = format!("gave up after the retries: {reason}");
    batch::Entity::update_many()
        .col_expr(batch::Column::Status, Expr::value(records::B_FAILED))
        .filter(batch::Column::NotificationId.eq(id))
        .filter(batch::Column::Status.is_in([records::B_PENDING, records::B_SENDING]))
        .exec(&inner.db)
        .await?;
    records::fail_queued(&inner.db, id, None, None, &msg).await?;
    refresh(inner, id).await?;
    report(inner, id).await
}

fn status_of(outcome: Option<&str>) -> DeliveryStatus {
    match outcome {
        Some("delivered") => DeliveryStatus::Delivered,
        Some("partial") => DeliveryStatus::Partial,
        _ => DeliveryStatus::Failed,
    }
}

fn routing_status(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Partial => "partial",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::Rejected => "rejected",
        DeliveryStatus::Unspecified => "unknown",
    }
}

/// The bus message of a report.
pub fn report_message(r: &DeliveryReport) -> Message {
    let status = DeliveryStatus::try_from(r.status).unwrap_or(DeliveryStatus::Unspecified);
    let message_id = if r.notification_id.is_empty() {
        format!("rejected:{}:{}", r.app_id, r.idempotency_key)
    } else {
        r.notification_id.clone()
    };
    let app = if r.app_id.is_empty() {
        "unknown"
    } else {
        &r.app_id
    };
    Message {
        exchange: NOTIFY_RESULTS.to_string(),
        routing_key: format!("{app}.{}", routing_status(status)),
        body: Bytes::from(r.encode_to_vec()),
        props: Props::protobuf(Described {
            id: message_id,
            type_name: DeliveryReport::FULL_NAME.to_string(),
            timestamp_ms: r.finished_at_ms,
            source: format!("urn:feishu-bridge:notifier:{app}"),
            kind: "feishu_bridge.notifier.delivery_report".to_string(),
            time_ms: r.finished_at_ms,
            subject: r.idempotency_key.clone(),
            traceparent: bridge_runtime::telemetry::current_traceparent(),
        }),
    }
}

/// Publishes the report of a finished notification not reported yet.
pub async fn report(inner: &Inner, id: &str) -> Result<(), DbErr> {
    let Some(n) = records::get(&inner.db, id).await? else {
        return Ok(());
    };
    if n.status != FINISHED || n.reported_at.is_some() {
        return Ok(());
    }
    let failures = rcpt::Entity::find()
        .filter(rcpt::Column::NotificationId.eq(id))
        .filter(rcpt::Column::Status.eq(FAILED))
        .order_by_asc(rcpt::Column::Id)
        .limit(1000)
        .all(&inner.db)
        .await?
        .into_iter()
        .map(|r| RecipientResult {
            kind: r.kind,
            id: r.target,
            code: r.code.unwrap_or(0),
            msg: r.msg.unwrap_or_default(),
        })
        .collect();
    let batch_ids = batch::Entity::find()
        .filter(batch::Column::NotificationId.eq(id))
        .order_by_asc(batch::Column::Chunk)
        .all(&inner.db)
        .await?
        .into_iter()
        .filter_map(|b| b.batch_message_id)
        .collect();
    let r = DeliveryReport {
        notification_id: n.id.clone(),
        app_id: n.app_id.clone(),
        idempotency_key: n.idempotency_key.clone(),
        status: status_of(n.outcome.as_deref()) as i32,
        recipients: n.recipients,
        sent: n.sent,
        failed: n.failed,
        failures,
        batch_message_ids: batch_ids,
        reason: String::new(),
        finished_at_ms: n.finished_at.unwrap_or_else(Utc::now).timestamp_millis(),
        requested_by: n.requested_by.clone(),
    };
    match inner.bus.publish(&report_message(&r)).await {
        Ok(()) => {
            notification::Entity::update_many()
                .col_expr(notification::Column::ReportedAt, Expr::value(Utc::now()))
                .filter(notification::Column::Id.eq(id))
                .exec(&inner.db)
                .await?;
            tracing::info!(notification_id = %id, app_id = %n.app_id, outcome = ?n.outcome, sent = n.sent, failed = n.failed, "notification finished");
        }
        // The loop below tries again.
        Err(e) => {
            tracing::warn!(notification_id = %id, error = %e, "delivery report not published yet")
        }
    }
    Ok(())
}

/// Follows one batch's progress.
async fn poll_batch(inner: &Inner, b: batch::Model, app_id: &str) -> Result<(), DbErr> {
    let Some(bm) = b.batch_message_id.clone() else {
        return Ok(());
    };
    let Some(creds) = inner.credentials(app_id) else {
        return Ok(());
    };
    let ask = crate::budget::Budget::ask(
        bridge_feishu::api::im::BATCH_PROGRESS,
        app_id,
        None,
        inner.rate_scale,
        inner.settings.rate_headroom,
    );
    inner.budget.acquire(&ask).await?;
    let aged = Utc::now() - b.created_at
        > chrono::Duration::from_std(inner.settings.progress_timeout).unwrap_or_default();
    let (valid, success, polls, done) = match inner.client.batch_progress(&creds, &bm).await {
        Ok(p) => {
            let s = p.batch_message_send_progress;
            let unchanged = s.valid_user_ids_count == b.valid_count
                && s.success_user_ids_count == b.success_count;
            let polls = if unchanged { b.polls + 1 } else { 1 };
            let complete =
                s.valid_user_ids_count > 0 && s.success_user_ids_count >= s.valid_user_ids_count;
            let stalled = s.valid_user_ids_count > 0 && unchanged && polls >= STALL_POLLS;
            (
                s.valid_user_ids_count,
                s.success_user_ids_count,
                polls,
                complete || stalled || aged,
            )
        }
        Err(e) => {
            tracing::warn!(batch_message_id = %bm, error = %e, "batch progress not available");
            (b.valid_count, b.success_count, b.polls, aged)
        }
    };
    let mut q = batch::Entity::update_many()
        .col_expr(batch::Column::ValidCount, Expr::value(valid))
        .col_expr(batch::Column::SuccessCount, Expr::value(success))
        .col_expr(batch::Column::Polls, Expr::value(polls))
        .col_expr(batch::Column::UpdatedAt, Expr::value(Utc::now()));
    if done {
        q = q.col_expr(batch::Column::Status, Expr::value(B_DONE));
    }
    q.filter(batch::Column::NotificationId.eq(b.notification_id.clone()))
        .filter(batch::Column::Chunk.eq(b.chunk))
        .filter(batch::Column::Status.eq(B_SENT))
        .exec(&inner.db)
        .await?;
    if done {
        tracing::debug!(batch_message_id = %bm, valid, success, "batch worked through");
    }
    Ok(())
}

async fn tick(inner: &Inner) -> Result<(), DbErr> {
    let sent: Vec<batch::Model> = batch::Entity::find()
        .filter(batch::Column::Status.eq(B_SENT))
        .order_by_asc(batch::Column::UpdatedAt)
        .limit(100)
        .all(&inner.db)
        .await?;
    let mut ids: Vec<String> = sent.iter().map(|b| b.notification_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let apps: std::collections::HashMap<String, String> = notification::Entity::find()
        .select_only()
        .column(notification::Column::Id)
        .column(notification::Column::AppId)
        .filter(notification::Column::Id.is_in(ids.clone()))
        .into_tuple::<(String, String)>()
        .all(&inner.db)
        .await?
        .into_iter()
        .collect();
    let mut touched: Vec<String> = ids;
    for b in sent {
        let Some(app_id) = apps.get(&b.notification_id) else {
            continue;
        };
        poll_batch(inner, b, app_id).await?;
    }
    // Notifications whose last batch was just worked through, or left unsettled by a stop.
    let waiting: Vec<String> = notification::Entity::find()
        .select_only()
        .column(notification::Column::Id)
        .filter(notification::Column::Status.eq(DELIVERING))
        .filter(notification::Column::Planned.eq(true))
        .order_by_asc(notification::Column::UpdatedAt)
        .limit(100)
        .into_tuple()
        .all(&inner.db)
        .await?;
    touched.extend(waiting);
    touched.sort();
    touched.dedup();
    for id in &touched {
        refresh(inner, id).await?;
    }
    let unreported: Vec<String> = notification::Entity::find()
        .select_only()
        .column(notification::Column::Id)
        .filter(notification::Column::Status.eq(FINISHED))
        .filter(notification::Column::ReportedAt.is_null())
        .limit(100)
        .into_tuple()
        .all(&inner.db)
        .await?;
    for id in unreported {
        report(inner, &id).await?;
    }
    Ok(())
}

pub async fn run(inner: Arc<Inner>, stop: Shutdown) {
    loop {
        if let Err(e) = tick(&inner).await {
            tracing::warn!(error = %e, "notifier follow-up failed; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.settings.poll_interval) => {}
            _ = inner.wake.notified() => {}
            _ = stop.wait() => return,
        }
    }
}
