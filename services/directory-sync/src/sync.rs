//! Full sync and reconciliation: walk everything the app can see (scopes, departments from the
//! seeds down, users department by department) within the rate limits, apply it at the
//! snapshot's start time as version (so events newer than the snapshot are never overwritten),
//! and only after the whole walk succeeded mark deleted what was not seen, behind a guard
//! against mass deletion. One sync per app at a time across replicas.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bridge_feishu::api::contact::{Department as FDept, User as FUser};
use bridge_feishu::api::{AppCredentials, FeishuError};
use bridge_runtime::Shutdown;
use bridge_store::entity::{department, sync_run, user};
use chrono::Utc;
use futures_util::{StreamExt, TryStreamExt};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set, TransactionTrait,
};
use serde::Serialize;

use crate::apply::{Applier, Cause, Tally};
use crate::Inner;
use bridge_store::lease as lock;

#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// `install`, `command`, `api`, `schedule`, `scope_change`.
    pub trigger: String,
    /// Skip the mass-deletion guard.
    pub force: bool,
    /// Record the run under this id (so a caller can follow it).
    pub run_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("app {0} is not bound or its binding is disabled")]
    UnknownApp(String),
    #[error("a sync of {0} is already running")]
    AlreadyRunning(String),
    #[error("walking the organisation failed, nothing was deleted: {0}")]
    Walk(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("database: {0}")]
    Db(String),
}

impl From<sea_orm::DbErr> for SyncError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Db(e.to_string())
    }
}

impl From<FeishuError> for SyncError {
    fn from(e: FeishuError) -> Self {
        Self::Walk(e.to_string())
    }
}

/// What a run saw and did (stored as the run's counts).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub departments_seen: u64,
    pub users_seen: u64,
    pub departments: TallyOut,
    pub users: TallyOut,
    pub memberships: TallyOut,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct TallyOut {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
}

impl TallyOut {
    fn add(&mut self, t: Tally) {
        self.created += t.created;
        self.updated += t.updated;
        self.deleted += t.deleted;
        self.unchanged += t.unchanged;
    }
}

/// Runs `run` in the background, logging how it ended.
/// A request that arrives while a sync of the app runs is not dropped: the running sync is
/// followed by one more (the organisation may have changed after its walk began).
pub fn spawn(inner: Arc<Inner>, app_id: String, opts: SyncOptions) {
    tokio::spawn(async move {
        match run(&inner, &app_id, opts).await {
            Ok(run_id) => tracing::info!(app_id, run_id, "sync finished"),
            Err(SyncError::AlreadyRunning(_)) => {
                if let Ok(mut r) = inner.rerun.lock() {
                    r.insert(app_id.clone());
                }
                tracing::info!(app_id, "sync already running; another follows it")
            }
            Err(e) => tracing::warn!(app_id, error = %e, "sync did not succeed"),
        }
    });
}

/// Runs the follow-up sync asked for while `app_id`'s sync was running, if any.
fn follow_up(inner: &Arc<Inner>, app_id: &str) {
    let asked = inner
        .rerun
        .lock()
        .map(|mut r| r.remove(app_id))
        .unwrap_or(false);
    if asked {
        // The request came from a scope change or a schedule: Feishu's own word, so forced.
        spawn(
            inner.clone(),
            app_id.to_string(),
            SyncOptions {
                trigger: "scope_change".into(),
                force: true,
                run_id: None,
            },
        );
    }
}

struct Running<'a> {
    inner: &'a Inner,
    app_id: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut r) = self.inner.running.lock() {
            r.remove(&self.app_id);
        }
    }
}

/// Runs a sync of `app_id` to the end; returns its run id.
pub async fn run(inner: &Arc<Inner>, app_id: &str, opts: SyncOptions) -> Result<String, SyncError> {
    let result = run_once(inner, app_id, opts).await;
    if !matches!(result, Err(SyncError::AlreadyRunning(_))) {
        follow_up(inner, app_id);
    }
    result
}

async fn run_once(inner: &Inner, app_id: &str, opts: SyncOptions) -> Result<String, SyncError> {
    let creds = inner
        .credentials(app_id)
        .ok_or_else(|| SyncError::UnknownApp(app_id.to_string()))?;
    {
        let mut r = inner
            .running
            .lock()
            .map_err(|_| SyncError::Db("lock poisoned".into()))?;
        if !r.insert(app_id.to_string()) {
            return Err(SyncError::AlreadyRunning(app_id.to_string()));
        }
    }
    let _running = Running {
        inner,
        app_id: app_id.to_string(),
    };
    let _lease = lock::try_lease(&inner.db, lock::SYNC, lock::key(app_id))
        .await
        .map_err(SyncError::Db)?
        .ok_or_else(|| SyncError::AlreadyRunning(app_id.to_string()))?;
    let run_id = opts
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let kind = match opts.trigger.as_str() {
        "schedule" | "scope_change" => "reconcile",
        _ => "full",
    };
    sync_run::ActiveModel {
        id: Set(run_id.clone()),
        app_id: Set(app_id.to_string()),
        kind: Set(kind.to_string()),
        trigger: Set(if opts.trigger.is_empty() {
            "api".into()
        } else {
            opts.trigger.clone()
        }),
        status: Set("running".into()),
        started_at: Set(Utc::now()),
        finished_at: Set(None),
        counts: Set(None),
        error: Set(None),
    }
    .insert(&inner.db)
    .await?;
    tracing::info!(app_id, run_id, kind, trigger = %opts.trigger, "sync started");
    let started = std::time::Instant::now();
    let counts = Arc::new(Mutex::new(Counts::default()));
    let result = walk_and_apply(inner, &creds, &run_id, opts.force, &counts).await;
    // A sync may have filled the tables: fresh statistics before the events that follow.
    inner.stats.start(&inner.db);
    let counts = counts.lock().map(|c| c.clone()).unwrap_or_default();
    let (status, error) = match &result {
        Ok(()) => ("succeeded", None),
        Err(SyncError::Refused(m)) => ("refused", Some(m.clone())),
        Err(e) => ("failed", Some(e.to_string())),
    };
    metrics::counter!("directory_sync_runs_total", "status" => status).increment(1);
    metrics::histogram!("directory_sync_duration_seconds").record(started.elapsed().as_secs_f64());
    let update = sync_run::ActiveModel {
        id: Set(run_id.clone()),
        status: Set(status.into()),
        finished_at: Set(Some(Utc::now())),
        counts: Set(serde_json::to_string(&counts).ok()),
        error: Set(error),
        ..Default::default()
    };
    update.update(&inner.db).await?;
    inner.outbox_wake.notify_one();
    result.map(|_| run_id)
}

fn big_department(e: &FeishuError) -> bool {
    matches!(e.code(), Some(40162) | Some(43010))
}

/// Every department under `root` (not `root` itself), by recursive listing, or level by level
/// when Feishu refuses recursion for a department with more than 500 sub-departments.
async fn descendants(
    inner: &Inner,
    creds: &AppCredentials,
    root: &str,
) -> Result<Vec<FDept>, FeishuError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        match inner
            .client
            .department_children(creds, root, true, token.as_deref())
            .await
        {
            Ok(page) => {
                out.extend(page.items);
                if !page.has_more {
                    return Ok(out);
                }
                token = page.page_token;
            }
            Err(e) if big_department(&e) => {
                tracing::info!(root, "recursive listing refused; walking level by level");
                return level_by_level(inner, creds, root).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Feishu refused to list `root`'s subtree at once: list its direct children, then each
/// child's subtree the same way (recursively when Feishu allows, level by level below the
/// children that are big themselves), several at a time.
fn level_by_level<'a>(
    inner: &'a Inner,
    creds: &'a AppCredentials,
    root: &'a str,
) -> futures_util::future::BoxFuture<'a, Result<Vec<FDept>, FeishuError>> {
    Box::pin(async move {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = inner
                .client
                .department_children(creds, root, false, token.as_deref())
                .await?;
            out.extend(page.items);
            if !page.has_more {
                break;
            }
            token = page.page_token;
        }
        let children: Vec<String> = out
            .iter()
            .filter_map(|d| d.open_department_id.clone())
            .collect();
        let below: Vec<Vec<FDept>> = futures_util::stream::iter(children)
            .map(|c| async move { descendants(inner, creds, &c).await })
            .buffer_unordered(inner.settings.sync_concurrency)
            .try_collect()
            .await?;
        out.extend(below.into_iter().flatten());
        Ok(out)
    })
}

/// Runs `$body` with an applier `$a` in a transaction of the sync, again from the start when
/// it meets a concurrent change (up to [`CONFLICT_RETRIES`] times); evaluates to the body's
/// value. (A macro: an async closure borrowing the applier makes the spawned sync future
/// lose `Send`.)
macro_rules! in_txn {
    ($inner:expr, $app_id:expr, $run_id:expr, $version:expr, |$a:ident| $body:block) => {{
        let mut attempt = 0;
        loop {
            let result: Result<_, sea_orm::DbErr> = async {
                let txn = $inner.db.begin().await?;
                let mut $a =
                    Applier::new(&txn, $app_id, $version, Cause::Sync($run_id.to_string()));
                let value = $body;
                drop($a);
                txn.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Ok(value) => break Ok::<_, sea_orm::DbErr>(value),
                Err(e) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    conflict_pause(attempt, &e).await;
                }
                Err(e) => break Err(e),
            }
        }
    }};
}

async fn apply_users(
    inner: &Inner,
    app_id: &str,
    run_id: &str,
    version: i64,
    users: &[FUser],
    counts: &Mutex<Counts>,
    known: &HashSet<String>,
) -> Result<(), SyncError> {
    let (ut, mt) = in_txn!(inner, app_id, run_id, version, |a| {
        a.sync_users(users, known).await?;
        (a.users, a.memberships)
    })?;
    if let Ok(mut c) = counts.lock() {
        c.users.add(ut);
        c.memberships.add(mt);
    }
    Ok(())
}

/// A page transaction can meet a concurrent event's transaction on the same rows (a unique
/// violation on a row both insert, a deadlock): it is rolled back and applied again, reading
/// the state afresh; versions keep the outcome right whichever commits first.
const CONFLICT_RETRIES: u32 = 4;

async fn conflict_pause(attempt: u32, e: &sea_orm::DbErr) {
    tracing::info!(attempt, error = %e, "sync page met a concurrent change; applying it again");
    tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(attempt))).await;
}

async fn walk_and_apply(
    inner: &Inner,
    creds: &AppCredentials,
    run_id: &str,
    force: bool,
    counts: &Arc<Mutex<Counts>>,
) -> Result<(), SyncError> {
    let app_id = creds.app_id.as_str();
    let version = Utc::now().timestamp_millis();

    // 1. The contact scope: seed departments and directly listed users.
    let mut seeds: Vec<String> = Vec::new();
    let mut scope_users: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = inner.client.contact_scopes(creds, token.as_deref()).await?;
        seeds.extend(page.department_ids);
        scope_users.extend(page.user_ids);
        if !page.has_more {
            break;
        }
        token = page.page_token;
    }
    let root_in_scope = seeds.iter().any(|s| s == "0");

    // 2. Departments: the seeds themselves, then everything under them.
    let mut depts: HashMap<String, FDept> = HashMap::new();
    if root_in_scope {
        for d in descendants(inner, creds, "0").await? {
            if let Some(id) = d.open_department_id.clone() {
                depts.insert(id, d);
            }
        }
    } else {
        for chunk in seeds.chunks(bridge_feishu::api::contact::MAX_BATCH) {
            for d in inner.client.departments_batch(creds, chunk).await? {
                if let Some(id) = d.open_department_id.clone() {
                    depts.insert(id, d);
                }
            }
        }
        let walked: Vec<Vec<FDept>> = futures_util::stream::iter(seeds.iter().cloned())
            .map(|s| descendants_owned(inner, creds, s))
            .buffer_unordered(inner.settings.sync_concurrency)
            .try_collect()
            .await?;
        for d in walked.into_iter().flatten() {
            if let Some(id) = d.open_department_id.clone() {
                depts.insert(id, d);
            }
        }
    }
    // Parents first, so fewer placeholders are made.
    let mut ordered: Vec<FDept> = depts.values().cloned().collect();
    ordered.sort_by_key(|d| depth(&depts, d));
    for chunk in ordered.chunks(200) {
        let t = in_txn!(inner, app_id, run_id, version, |a| {
            for d in chunk {
                a.upsert_department(d).await?;
            }
            a.departments
        })?;
        if let Ok(mut c) = counts.lock() {
            c.departments.add(t);
        }
    }
    if let Ok(mut c) = counts.lock() {
        c.departments_seen = depts.len() as u64;
    }

    // 3. Users, department by department (the root's direct members when it is in scope).
    let mut lists: Vec<String> = depts.keys().cloned().collect();
    if root_in_scope {
        lists.push("0".into());
    }
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let known: HashSet<String> = depts.keys().cloned().collect();
    let ctx = WalkCtx {
        inner,
        creds,
        run_id,
        version,
        counts,
        seen: &seen,
        known: &known,
    };
    futures_util::stream::iter(lists)
        .map(|dept| department_users(&ctx, dept))
        .buffer_unordered(inner.settings.sync_concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    // Users the scope lists directly and no department walk reached.
    let missing: Vec<String> = {
        let s = seen.lock().map_err(|_| SyncError::Db("poisoned".into()))?;
        scope_users.into_iter().filter(|u| !s.contains(u)).collect()
    };
    for chunk in missing.chunks(bridge_feishu::api::contact::MAX_BATCH) {
        let users = inner.client.users_batch(creds, chunk).await?;
        if let Ok(mut s) = seen.lock() {
            for u in &users {
                if let Some(id) = &u.open_id {
                    s.insert(id.clone());
                }
            }
        }
        apply_users(inner, app_id, run_id, version, &users, counts, &known).await?;
    }
    let seen: HashSet<String> = seen.lock().map(|s| s.clone()).unwrap_or_default();
    if let Ok(mut c) = counts.lock() {
        c.users_seen = seen.len() as u64;
    }

    // 4. The walk is complete: what was not seen (and not changed by a newer event) is gone.
    let live_users: Vec<(String, i64)> = user::Entity::find()
        .select_only()
        .column(user::Column::OpenId)
        .column(user::Column::Version)
        .filter(user::Column::AppId.eq(app_id))
        .filter(user::Column::Deleted.eq(false))
        .into_tuple()
        .all(&inner.db)
        .await?;
    let gone_users: Vec<String> = live_users
        .iter()
        .filter(|(id, v)| *v < version && !seen.contains(id))
        .map(|(id, _)| id.clone())
        .collect();
    let limit = (live_users.len() as f64 * inner.settings.max_delete_share).floor() as usize;
    if !force && !gone_users.is_empty() && gone_users.len() > limit {
        return Err(SyncError::Refused(format!(
            "would delete {} of {} users, more than directory.max_delete_share ({}); run with force to accept",
            gone_users.len(),
            live_users.len(),
            inner.settings.max_delete_share
        )));
    }
    let gone_departments: Vec<String> = department::Entity::find()
        .select_only()
        .column(department::Column::OpenDepartmentId)
        .filter(department::Column::AppId.eq(app_id))
        .filter(department::Column::Deleted.eq(false))
        .filter(department::Column::Version.lt(version))
        .into_tuple::<String>()
        .all(&inner.db)
        .await?
        .into_iter()
        .filter(|id| !depts.contains_key(id))
        .collect();
    for chunk in gone_users.chunks(200) {
        let (ut, mt) = in_txn!(inner, app_id, run_id, version, |a| {
            for id in chunk {
                a.delete_user(id).await?;
            }
            (a.users, a.memberships)
        })?;
        if let Ok(mut c) = counts.lock() {
            c.users.add(ut);
            c.memberships.add(mt);
        }
    }
    for chunk in gone_departments.chunks(200) {
        let (dt, mt) = in_txn!(inner, app_id, run_id, version, |a| {
            for id in chunk {
                a.delete_department(id).await?;
            }
            (a.departments, a.memberships)
        })?;
        if let Ok(mut c) = counts.lock() {
            c.departments.add(dt);
            c.memberships.add(mt);
        }
    }
    Ok(())
}

async fn descendants_owned(
    inner: &Inner,
    creds: &AppCredentials,
    root: String,
) -> Result<Vec<FDept>, FeishuError> {
    descendants(inner, creds, &root).await
}

struct WalkCtx<'a> {
    inner: &'a Inner,
    creds: &'a AppCredentials,
    run_id: &'a str,
    version: i64,
    counts: &'a Mutex<Counts>,
    seen: &'a Mutex<HashSet<String>>,
    known: &'a HashSet<String>,
}

/// Lists one department's direct members page by page and applies the users not seen yet.
async fn department_users(ctx: &WalkCtx<'_>, dept: String) -> Result<(), SyncError> {
    let mut token: Option<String> = None;
    loop {
        let page = ctx
            .inner
            .client
            .users_by_department(ctx.creds, &dept, token.as_deref())
            .await?;
        let fresh: Vec<FUser> = {
            let mut s = ctx
                .seen
                .lock()
                .map_err(|_| SyncError::Db("poisoned".into()))?;
            page.items
                .into_iter()
                .filter(|u| u.open_id.as_ref().is_some_and(|id| s.insert(id.clone())))
                .collect()
        };
        if !fresh.is_empty() {
            apply_users(
                ctx.inner,
                &ctx.creds.app_id,
                ctx.run_id,
                ctx.version,
                &fresh,
                ctx.counts,
                ctx.known,
            )
            .await?;
        }
        if !page.has_more {
            return Ok(());
        }
        token = page.page_token;
    }
}

fn depth(all: &HashMap<String, FDept>, d: &FDept) -> usize {
    let mut n = 0;
    let mut cur = d.parent_department_id.clone();
    while let Some(p) = cur {
        if n > 64 {
            break;
        }
        n += 1;
        cur = all.get(&p).and_then(|x| x.parent_department_id.clone());
    }
    n
}

/// Reconciles every enabled app every `directory.reconcile_interval`.
pub async fn run_schedule(inner: Arc<Inner>, stop: Shutdown) {
    let every = inner.settings.reconcile_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait() => return,
        }
        for app in inner.apps.all().into_iter().filter(|a| a.enabled) {
            let opts = SyncOptions {
                trigger: "schedule".into(),
                ..Default::default()
            };
            match run(&inner, &app.app_id, opts).await {
                Ok(run_id) => {
                    tracing::info!(app_id = %app.app_id, run_id, "scheduled reconcile finished")
                }
                Err(e) => {
                    tracing::warn!(app_id = %app.app_id, error = %e, "scheduled reconcile did not succeed")
                }
            }
            if stop.is_triggered() {
                return;
            }
        }
    }
}
