//! The `notifier.requests` consumer: each `NotifyRequest` is checked (a bad one is answered
//! with a rejected report and dead-lettered with its reason, never retried), recorded once per
//! app and idempotency key, planned, delivered, and acked only after its outcomes are
//! recorded. Transient failures go through the queue's retry tiers (exponential delays); when
//! they are used up, the recipients still queued are reported failed.

use std::sync::Arc;
use std::time::Duration;

use bridge_bus::{Consumer, Delivery};
use bridge_contracts::topology::Q_NOTIFIER_REQUESTS;
use bridge_contracts::v1::{DeliveryReport, DeliveryStatus, NotifyRequest};
use bridge_runtime::Shutdown;
use prost::Message as _;
use tokio::sync::Semaphore;

use crate::deliver::{self, Outcome};
use crate::finish;
use crate::message::{self, Rejection};
use crate::plan;
use crate::records::{self, AcceptError, FINISHED};
use crate::Inner;

pub(crate) async fn subscribe(
    inner: &Inner,
    queue: &str,
    prefetch: u16,
    stop: &Shutdown,
) -> Option<Consumer> {
    loop {
        match inner.bus.consume(queue, prefetch).await {
            Ok(c) => return Some(c),
            Err(e) => {
                tracing::warn!(queue, error = %e, "cannot consume yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait() => return None,
                }
            }
        }
    }
}

pub async fn run(inner: Arc<Inner>, stop: Shutdown) {
    let conc = inner.settings.concurrency.clamp(1, u16::MAX as usize);
    let Some(mut consumer) = subscribe(&inner, Q_NOTIFIER_REQUESTS, conc as u16, &stop).await
    else {
        return;
    };
    let permits = Arc::new(Semaphore::new(conc));
    loop {
        let d = tokio::select! {
            d = consumer.next() => d,
            _ = stop.wait() => break,
        };
        let Some(d) = d else { break };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            handle(&inner, d).await;
            drop(permit);
        });
    }
    // Let the requests under way finish (their deliveries are acked or handed back).
    let _ = permits.acquire_many(conc as u32).await;
}

/// A refused request: a report for the asker, then the dead-letter queue with the reason.
async fn reject(inner: &Inner, d: Delivery, req: Option<&NotifyRequest>, r: &Rejection) {
    metrics::counter!("notifier_requests_total", "outcome" => "rejected").increment(1);
    let reason = format!("{} ({})", r, r.code());
    tracing::warn!(message_id = %d.props.message_id, reason, "notify request rejected");
    // Several deployments may share a broker, each seeing every request: one for an app it
    // does not serve is only dead-lettered here, not answered for.
    if matches!(r, Rejection::UnknownApp(_)) {
        if let Err(e) = d.dead_letter(&reason).await {
            tracing::warn!(error = %e, "dead-lettering failed; the request will come back");
        }
        return;
    }
    let report = DeliveryReport {
        app_id: req.map(|q| q.app_id.clone()).unwrap_or_default(),
        idempotency_key: req
            .map(|q| q.idempotency_key.clone())
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| d.props.message_id.clone()),
        status: DeliveryStatus::Rejected as i32,
        reason: reason.clone(),
        finished_at_ms: chrono::Utc::now().timestamp_millis(),
        requested_by: req.map(|q| q.requested_by.clone()).unwrap_or_default(),
        ..Default::default()
    };
    if let Err(e) = inner.bus.publish(&finish::report_message(&report)).await {
        tracing::warn!(error = %e, "rejection report not published");
    }
    if let Err(e) = d.dead_letter(&reason).await {
        tracing::warn!(error = %e, "dead-lettering failed; the request will come back");
    }
}

async fn handle(inner: &Inner, d: Delivery) {
    let req = match NotifyRequest::decode(d.body.as_ref()) {
        Ok(r) => r,
        Err(e) => return reject(inner, d, None, &Rejection::Undecodable(e.to_string())).await,
    };
    let accepted = match message::parse(req.clone(), &d.props.message_id, &inner.templates, |a| {
        inner.known_app(a)
    }) {
        Ok(a) => a,
        Err(r) => return reject(inner, d, Some(&req), &r).await,
    };
    let n = match records::accept(&inner.db, &accepted).await {
        Ok(n) => n,
        Err(AcceptError::Rejected(r)) => return reject(inner, d, Some(&req), &r).await,
        Err(AcceptError::Db(e)) => return retry(inner, d, None, &format!("database: {e}")).await,
    };
    let id = n.id.clone();
    if n.status == FINISHED {
        // A redelivery or a repeated key: nothing to send; make sure the report went out.
        metrics::counter!("notifier_requests_total", "outcome" => "duplicate").increment(1);
        if let Err(e) = finish::report(inner, &id).await {
            return retry(inner, d, None, &format!("database: {e}")).await;
        }
        let _ = d.ack().await;
        return;
    }
    match process(inner, n).await {
        Ok(Outcome::Done) => {
            metrics::counter!("notifier_requests_total", "outcome" => "done").increment(1);
            if let Err(e) = d.ack().await {
                tracing::warn!(error = %e, "ack failed; the request comes back and sends nothing twice");
            }
        }
        Ok(Outcome::Retry(reason)) => retry(inner, d, Some(&id), &reason).await,
        Err(e) => retry(inner, d, Some(&id), &format!("database: {e}")).await,
    }
}

/// Plans (once), delivers what is still queued, settles and reports.
async fn process(
    inner: &Inner,
    n: bridge_store::entity::notification::Model,
) -> Result<Outcome, sea_orm::DbErr> {
    plan::plan(
        &inner.db,
        &n,
        inner.settings.batch_threshold,
        bridge_feishu::api::im::BATCH_MAX_IDS,
    )
    .await?;
    let outcome = deliver::deliver(inner, &n).await?;
    if finish::refresh(inner, &n.id).await? {
        finish::report(inner, &n.id).await?;
    }
    Ok(outcome)
}

async fn retry(inner: &Inner, d: Delivery, id: Option<&str>, reason: &str) {
    metrics::counter!("notifier_requests_total", "outcome" => "retried").increment(1);
    match d.retry_later(reason).await {
        Ok(true) => {
            tracing::error!(notification_id = ?id, reason, "notify request dead-lettered after its retries");
            if let Some(id) = id {
                if let Err(e) = finish::give_up(inner, id, reason).await {
                    tracing::warn!(notification_id = %id, error = %e, "could not record the failure");
                }
            }
        }
        Ok(false) => tracing::info!(notification_id = ?id, reason, "notify request retried later"),
        Err(e) => tracing::warn!(error = %e, "could not schedule a retry; the request comes back"),
    }
}
