//! The outbox relay: publishes committed org changes to `org.changes` in commit order, at
//! least once (subscribers dedupe by message id). One relay is active across replicas (a
//! PostgreSQL lease), and changes to the same entity are never in flight together, so their
//! order holds even though confirms are pipelined.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bridge_bus::{Described, Message, Props};
use bridge_contracts::topology::ORG_CHANGES;
use bridge_contracts::v1::OrgChange;
use bridge_runtime::Shutdown;
use bridge_store::entity::outbox;
use chrono::Utc;
use prost::Message as _;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use crate::Inner;
use bridge_store::lease::{self as lock, Lease};

const BATCH: u64 = 500;
const CHUNK: usize = 128;

pub async fn run(inner: Arc<Inner>, stop: Shutdown) {
    let mut lease: Option<Lease> = None;
    let mut last_cleanup = tokio::time::Instant::now();
    loop {
        if lease.is_none() {
            lease = lock::try_lease(&inner.db, lock::OUTBOX, 0)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "outbox lease unavailable");
                    None
                });
        } else if let Some(l) = lease.as_mut() {
            if !l.alive().await {
                lease = None;
                continue;
            }
        }
        let mut more = false;
        if lease.is_some() {
            match publish_pending(&inner).await {
                Ok(n) => more = n as u64 >= BATCH,
                Err(e) => tracing::warn!(error = %e, "outbox relay paused"),
            }
            if last_cleanup.elapsed() > Duration::from_secs(600) {
                last_cleanup = tokio::time::Instant::now();
                let cutoff = Utc::now() - chrono::Duration::days(1);
                let _ = outbox::Entity::delete_many()
                    .filter(outbox::Column::PublishedAt.lt(cutoff))
                    .exec(&inner.db)
                    .await;
            }
        }
        // While a sync is applying a whole organisation here, the relay takes one batch a
        // second and leaves the cores and the database to the sync: the changes are committed
        // and published right after (the contract is "after commit, at least once", not
        // "at once"). Otherwise it drains as fast as the broker confirms.
        let syncing = inner.running.lock().map(|r| !r.is_empty()).unwrap_or(false);
        if more && !syncing {
            continue;
        }
        tokio::select! {
            _ = inner.outbox_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait() => {
                if lease.is_some() {
                    let _ = publish_pending(&inner).await;
                }
                return;
            }
        }
    }
}

/// Publishes up to one batch of unpublished rows; returns how many were published.
async fn publish_pending(inner: &Inner) -> Result<usize, String> {
    let rows = outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .order_by_asc(outbox::Column::Id)
        .limit(BATCH)
        .all(&inner.db)
        .await
        .map_err(|e| e.to_string())?;
    let mut published: Vec<i64> = Vec::with_capacity(rows.len());
    let mut i = 0;
    while i < rows.len() {
        // A chunk never holds two changes of one entity, so their order survives.
        let mut keys = HashSet::new();
        let mut end = i;
        while end < rows.len() && end - i < CHUNK && keys.insert(rows[end].entity_key.as_str()) {
            end += 1;
        }
        let chunk = &rows[i..end];
        let results = futures_util::future::join_all(
            chunk.iter().map(|r| inner.bus.publish_owned(message(r))),
        )
        .await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            // What went out before stays marked; the rest goes again on the next round.
            if let Err(mark) = mark_published(inner, published).await {
                tracing::warn!(error = %mark, "marking the published part of a failed batch failed; it will be published again");
            }
            return Err(e.to_string());
        }
        published.extend(chunk.iter().map(|r| r.id));
        metrics::counter!("directory_org_changes_published_total").increment(chunk.len() as u64);
        i = end;
    }
    let n = published.len();
    mark_published(inner, published).await?;
    Ok(n)
}

/// Marks rows as published, in one statement for the whole batch. The mark does not wait for
/// the WAL flush on PostgreSQL: a mark lost in a crash only means those rows are published
/// again, which "at least once" allows (subscribers dedupe by message id), and the marks of a
/// later batch, being later in the WAL, are then lost with it, so the order holds too.
async fn mark_published(inner: &Inner, ids: Vec<i64>) -> Result<(), String> {
    if ids.is_empty() {
        return Ok(());
    }
    let txn = inner.db.begin().await.map_err(|e| e.to_string())?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL synchronous_commit TO OFF")
            .await
            .map_err(|e| e.to_string())?;
    }
    outbox::Entity::update_many()
        .col_expr(outbox::Column::PublishedAt, Expr::value(Utc::now()))
        .filter(outbox::Column::Id.is_in(ids))
        .exec(&txn)
        .await
        .map_err(|e| e.to_string())?;
    txn.commit().await.map_err(|e| e.to_string())
}

fn message(r: &outbox::Model) -> Message {
    // The sequence is the outbox id, known only after the insert.
    let body = match OrgChange::decode(r.body.as_slice()) {
        Ok(mut m) => {
            m.sequence = r.id;
            m.encode_to_vec()
        }
        Err(_) => r.body.clone(),
    };
    Message {
        exchange: ORG_CHANGES.to_string(),
        routing_key: r.routing_key.clone(),
        body: bytes::Bytes::from(body),
        props: Props::protobuf(Described {
            id: r.message_id.clone(),
            type_name: r.type_name.clone(),
            timestamp_ms: r.created_at.timestamp_millis(),
            source: format!("urn:feishu-bridge:directory:{}", r.app_id),
            kind: format!(
                "org.{}",
                r.routing_key
                    .split_once('.')
                    .map(|x| x.1)
                    .unwrap_or_default()
            ),
            time_ms: r.created_at.timestamp_millis(),
            subject: r.entity_key.clone(),
            traceparent: bridge_runtime::telemetry::current_traceparent(),
        }),
    }
}
