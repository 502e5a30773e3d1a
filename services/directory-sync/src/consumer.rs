//! The contact-event consumer: deliveries are applied in batches, one transaction per batch
//! (each event skipped if already processed, applied only if newer than the stored row, its
//! id recorded, its org changes written to the outbox), then acked together after the commit
//! (one frame for the whole batch where the broker allows).
//! A batch that fails is retried event by event, so one bad event cannot hold up the rest.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bridge_bus::{Consumer, Delivery};
use bridge_contracts::topology::{Q_DIRECTORY_COMMANDS, Q_DIRECTORY_CONTACT_EVENTS};
use bridge_contracts::v1::{directory_command, DirectoryCommand};
use bridge_feishu::api::FeishuError;
use bridge_runtime::Shutdown;
use bridge_store::entity::{department, processed_event};
use chrono::Utc;
use prost::Message as _;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait};

use crate::apply::{Applier, BulkUser, Cause};
use crate::events::{self, ContactEvent, Op};
use crate::model;
use crate::sync::{self, SyncOptions};
use crate::{Inner, CONSUMER};

async fn subscribe(inner: &Inner, queue: &str, prefetch: u16, stop: &Shutdown) -> Option<Consumer> {
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

/// How long a batch waits for more deliveries once it has one.
const LINGER: Duration = Duration::from_millis(5);

pub async fn run_events(inner: Arc<Inner>, stop: Shutdown) {
    let max = inner.settings.batch_size;
    let prefetch = (max * 2).clamp(1, u16::MAX as usize) as u16;
    let Some(mut consumer) = subscribe(&inner, Q_DIRECTORY_CONTACT_EVENTS, prefetch, &stop).await
    else {
        return;
    };
    loop {
        let first = tokio::select! {
            d = consumer.next() => d,
            _ = stop.wait() => return,
        };
        let Some(first) = first else { return };
        // Gather what is waiting, and linger a moment for more: under load a commit then
        // carries many events instead of one (the commit is the cost).
        let mut batch = vec![first];
        let linger = tokio::time::Instant::now() + LINGER;
        while batch.len() < max {
            match consumer.try_next() {
                Some(d) => batch.push(d),
                None => match tokio::time::timeout_at(linger, consumer.next()).await {
                    Ok(Some(d)) => batch.push(d),
                    _ => break,
                },
            }
        }
        metrics::histogram!("directory_batch_size").record(batch.len() as f64);
        handle_batch(&inner, batch).await;
    }
}

/// A delivery with its decoded event and whatever the contact API had to add.
struct Item {
    delivery: Delivery,
    event: ContactEvent,
}

async fn handle_batch(inner: &Arc<Inner>, batch: Vec<Delivery>) {
    let mut items = Vec::with_capacity(batch.len());
    for d in batch {
        match events::decode(&d.body) {
            // Another deployment's app (several can share a broker): not ours to apply.
            Ok(event) if inner.apps.get(&event.app_id).is_none() => {
                tracing::debug!(app_id = %event.app_id, "contact event for an app not bound here; skipped");
                let _ = d.ack().await;
            }
            Ok(event) => items.push(Item { delivery: d, event }),
            Err(reason) => {
                tracing::warn!(message_id = %d.props.message_id, reason, "undecodable contact event dead-lettered");
                metrics::counter!("directory_events_total", "outcome" => "dead_lettered")
                    .increment(1);
                if let Err(e) = d.dead_letter(&reason).await {
                    tracing::warn!(error = %e, "dead-lettering failed");
                }
            }
        }
    }
    let mut ready = Vec::with_capacity(items.len());
    for mut item in items {
        match enrich(inner, &mut item.event).await {
            Ok(()) => ready.push(item),
            Err(e) => {
                tracing::warn!(event_id = %item.event.event_id, error = %e, "contact API lookup failed; retrying later");
                retry(item.delivery, &e.to_string()).await;
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    let n = ready.len();
    match apply_all(inner, &ready).await {
        Ok(reconcile) => committed(inner, ready, reconcile).await,
        Err(e) if n > 1 => {
            tracing::warn!(error = %e, events = n, "batch failed; applying its events one by one");
            for item in ready {
                Box::pin(handle_one(inner, item)).await;
            }
        }
        Err(e) => {
            for item in ready {
                retry(item.delivery, &e.to_string()).await;
            }
        }
    }
}

async fn handle_one(inner: &Arc<Inner>, item: Item) {
    let one = vec![item];
    match apply_all(inner, &one).await {
        Ok(reconcile) => committed(inner, one, reconcile).await,
        Err(e) => {
            for item in one {
                retry(item.delivery, &e.to_string()).await;
            }
        }
    }
}

/// After a commit: ack the deliveries (together), wake the outbox relay, and start the
/// reconciles that scope changes asked for.
async fn committed(inner: &Arc<Inner>, items: Vec<Item>, reconcile: Vec<String>) {
    let n = items.len();
    if let Err(e) = bridge_bus::ack_all(items.into_iter().map(|i| i.delivery).collect()).await {
        tracing::warn!(error = %e, "ack failed; the events will be redelivered and skipped");
    }
    metrics::counter!("directory_events_total", "outcome" => "applied").increment(n as u64);
    inner.outbox_wake.notify_one();
    inner.stats.note(&inner.db, n as u64);
    for app_id in reconcile {
        // The scope shrank or grew by Feishu's own word: the deletion guard, which protects
        // against partial answers, does not apply.
        let opts = SyncOptions {
            trigger: "scope_change".into(),
            force: true,
            run_id: None,
        };
        sync::spawn(inner.clone(), app_id, opts);
    }
}

async fn retry(d: Delivery, reason: &str) {
    match d.retry_later(reason).await {
        Ok(true) => {
            metrics::counter!("directory_events_total", "outcome" => "dead_lettered").increment(1);
            tracing::error!(reason, "contact event dead-lettered after its retries")
        }
        Ok(false) => {
            metrics::counter!("directory_events_total", "outcome" => "retried").increment(1)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not schedule a retry; the event will be redelivered")
        }
    }
}

/// Fills what events leave out: a user's departments, a department's i18n names.
async fn enrich(inner: &Inner, ev: &mut ContactEvent) -> Result<(), FeishuError> {
    let needs = matches!(
        &ev.op,
        Op::UpsertUser {
            needs_fetch: true,
            ..
        } | Op::UpsertDepartment {
            needs_fetch: true,
            ..
        }
    );
    if !needs {
        return Ok(());
    }
    let Some(creds) = inner.credentials(&ev.app_id) else {
        // Unbound or disabled app: apply what the event says.
        return Ok(());
    };
    match &mut ev.op {
        Op::UpsertUser {
            user,
            places,
            needs_fetch,
        } => {
            let open_id = user.open_id.clone().unwrap_or_default();
            match inner.client.user(&creds, &open_id).await {
                Ok(fetched) => *places = model::places(&fetched),
                Err(e) if e.is_transient() => return Err(e),
                // Out of scope or gone since: the next event or reconcile settles it.
                Err(e) => tracing::debug!(error = %e, "user lookup refused"),
            }
            *needs_fetch = false;
        }
        Op::UpsertDepartment {
            department,
            needs_fetch,
        } => {
            let id = department.open_department_id.clone().unwrap_or_default();
            match inner.client.departments_batch(&creds, &[id]).await {
                Ok(found) => {
                    if let Some(f) = found.into_iter().next() {
                        if department.i18n_name.is_none() {
                            department.i18n_name = f.i18n_name;
                        }
                        if department.member_count.is_none() {
                            department.member_count = f.member_count;
                        }
                    }
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => tracing::debug!(error = %e, "department lookup refused"),
            }
            *needs_fetch = false;
        }
        _ => {}
    }
    Ok(())
}

/// Applies the events in one transaction, in delivery order; returns the apps whose scope
/// changed. Consecutive user upserts of distinct users go through the bulk path (a few
/// statements for the whole run); everything else is applied one event at a time.
async fn apply_all(inner: &Inner, items: &[Item]) -> Result<Vec<String>, sea_orm::DbErr> {
    let txn = inner.db.begin().await?;
    // Recording the ids first tells which events are new: one statement, led by the primary
    // key whatever the planner's statistics say, instead of a lookup and then an insert.
    let mut fresh = record_processed(&txn, items).await?;
    let mut reconcile: Vec<String> = Vec::new();
    let mut run: Vec<&ContactEvent> = Vec::new();
    for item in items {
        let ev = &item.event;
        // Taken out when first seen, so a second copy in the same batch is a duplicate too.
        if !fresh.remove(&ev.event_id) {
            metrics::counter!("directory_events_total", "outcome" => "duplicate").increment(1);
            continue;
        }
        if let Op::UpsertUser { user, .. } = &ev.op {
            let joins = run.first().is_none_or(|first| first.app_id == ev.app_id)
                && !run.iter().any(|r| matches!(&r.op, Op::UpsertUser { user: u, .. } if u.open_id == user.open_id));
            if !joins {
                apply_run(&txn, &run).await?;
                run.clear();
            }
            run.push(ev);
            continue;
        }
        apply_run(&txn, &run).await?;
        run.clear();
        let mut a = Applier::new(
            &txn,
            &ev.app_id,
            ev.version,
            Cause::Event(ev.event_id.clone()),
        );
        match &ev.op {
            Op::UpsertUser { .. } => {}
            Op::DeleteUser(open_id) => a.delete_user(open_id).await?,
            Op::UpsertDepartment { department, .. } => a.upsert_department(department).await?,
            Op::DeleteDepartment(id) => a.delete_department(id).await?,
            Op::Scope(s) => {
                for d in &s.added.departments {
                    a.upsert_department(d).await?;
                }
                let added = s
                    .added
                    .users
                    .iter()
                    .map(|u| BulkUser {
                        user: u,
                        places: model::places(u),
                        version: ev.version,
                        cause: Cause::Event(ev.event_id.clone()),
                    })
                    .collect();
                a.upsert_users_bulk(added, &HashSet::new()).await?;
                for u in &s.removed.users {
                    if let Some(id) = u.open_id.as_deref() {
                        a.delete_user(id).await?;
                    }
                }
                for d in &s.removed.departments {
                    if let Some(id) = d.open_department_id.as_deref() {
                        a.delete_department(id).await?;
                    }
                }
                reconcile.push(ev.app_id.clone());
            }
            Op::Reconcile => reconcile.push(ev.app_id.clone()),
            Op::Ignore => {}
        }
    }
    apply_run(&txn, &run).await?;
    txn.commit().await?;
    reconcile.sort();
    reconcile.dedup();
    Ok(reconcile)
}

/// Records the batch's event ids as processed by this consumer (in the batch's transaction)
/// and returns those that were not recorded before: the events to apply.
async fn record_processed(
    txn: &sea_orm::DatabaseTransaction,
    items: &[Item],
) -> Result<HashSet<String>, sea_orm::DbErr> {
    use sea_orm::sea_query::Query;
    use sea_orm::ConnectionTrait as _;
    // In sorted order: two replicas recording overlapping batches (Feishu's duplicates, a
    // redelivery) then take the rows' locks in the same order and never deadlock.
    let ids: std::collections::BTreeSet<&str> =
        items.iter().map(|i| i.event.event_id.as_str()).collect();
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let now = Utc::now();
    let mut insert = Query::insert();
    insert.into_table(processed_event::Entity).columns([
        processed_event::Column::Consumer,
        processed_event::Column::EventId,
        processed_event::Column::ProcessedAt,
    ]);
    for id in ids {
        insert
            .values([CONSUMER.into(), id.into(), now.into()])
            .map_err(|e| sea_orm::DbErr::Custom(format!("processed ids insert: {e}")))?;
    }
    insert
        .on_conflict(processed_event::already_recorded())
        .returning_col(processed_event::Column::EventId);
    let rows = txn
        .query_all(txn.get_database_backend().build(&insert))
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "event_id"))
        .collect()
}

/// Applies a run of user upserts (one app, distinct users) in bulk.
async fn apply_run(
    txn: &sea_orm::DatabaseTransaction,
    run: &[&ContactEvent],
) -> Result<(), sea_orm::DbErr> {
    let Some(first) = run.first() else {
        return Ok(());
    };
    let app_id = first.app_id.as_str();
    let mut wanted: Vec<String> = Vec::new();
    let mut bulk = Vec::with_capacity(run.len());
    for ev in run {
        if let Op::UpsertUser { user, places, .. } = &ev.op {
            if let Some(p) = places {
                wanted.extend(p.iter().map(|p| p.department.clone()).filter(|d| d != "0"));
            }
            bulk.push(BulkUser {
                user,
                places: places.clone(),
                version: ev.version,
                cause: Cause::Event(ev.event_id.clone()),
            });
        }
    }
    wanted.sort();
    wanted.dedup();
    let known: HashSet<String> = if wanted.is_empty() {
        HashSet::new()
    } else {
        department::Entity::find()
            .select_only()
            .column(department::Column::OpenDepartmentId)
            .filter(department::Column::AppId.eq(app_id))
            .filter(department::Column::OpenDepartmentId.is_in(wanted))
            .into_tuple::<String>()
            .all(txn)
            .await?
            .into_iter()
            .collect()
    };
    let mut a = Applier::new(
        txn,
        app_id,
        first.version,
        Cause::Event(first.event_id.clone()),
    );
    a.upsert_users_bulk(bulk, &known).await?;
    for ev in run {
        tracing::debug!(event_id = %ev.event_id, event_type = %ev.event_type, "contact event applied");
    }
    Ok(())
}

/// Directory commands (full sync from "install / initialise").
pub async fn run_commands(inner: Arc<Inner>, stop: Shutdown) {
    let Some(mut consumer) = subscribe(&inner, Q_DIRECTORY_COMMANDS, 1, &stop).await else {
        return;
    };
    loop {
        let d = tokio::select! {
            d = consumer.next() => d,
            _ = stop.wait() => return,
        };
        let Some(d) = d else { return };
        let cmd = match DirectoryCommand::decode(d.body.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                let _ = d.dead_letter(&format!("not a DirectoryCommand: {e}")).await;
                continue;
            }
        };
        match cmd.command {
            Some(directory_command::Command::FullSync(f)) => {
                let opts = SyncOptions {
                    trigger: if f.trigger.is_empty() {
                        "command".into()
                    } else {
                        f.trigger
                    },
                    force: f.force,
                    run_id: (!f.run_id.is_empty()).then_some(f.run_id),
                };
                match sync::run(&inner, &cmd.app_id, opts).await {
                    Ok(run_id) => {
                        tracing::info!(app_id = %cmd.app_id, run_id, "commanded sync finished")
                    }
                    Err(e) => {
                        tracing::warn!(app_id = %cmd.app_id, error = %e, "commanded sync did not succeed")
                    }
                }
                let _ = d.ack().await;
            }
            None => {
                let _ = d.dead_letter("empty DirectoryCommand").await;
            }
        }
    }
}
