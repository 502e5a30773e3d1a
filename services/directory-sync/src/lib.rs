//! directory-sync: keeps each app's departments, users and memberships equal to what Feishu
//! shows the app, from contact events (in order of their versions, whatever order they
//! arrive in), full syncs and periodic reconciles, and publishes every committed change to
//! `org.changes` through a transactional outbox.

mod api;
pub mod apply;
mod consumer;
mod events;
pub mod export;
pub mod model;
mod outbox;
mod stats;
mod sync;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bridge_bus::Bus;
use bridge_feishu::api::{AppCredentials, FeishuClient, FEISHU_BASE, LARK_BASE};
use bridge_runtime::settings::DirectorySettings;
use bridge_runtime::{Mount, Shutdown};
use bridge_session::Gate;
use bridge_store::{AppRegistry, Domain};
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;
use url::Url;

pub use sync::{SyncError, SyncOptions};

/// The consumer name under which processed event ids are recorded.
pub const CONSUMER: &str = "directory-sync";

pub(crate) struct Inner {
    pub db: DatabaseConnection,
    pub bus: Bus,
    pub apps: AppRegistry,
    pub client: FeishuClient,
    pub settings: DirectorySettings,
    pub feishu_base: Option<Url>,
    pub gate: Gate,
    pub outbox_wake: tokio::sync::Notify,
    /// Planner statistics kept current while the tables grow fast.
    pub stats: Arc<stats::Stats>,
    /// Apps with a sync running in this process (PostgreSQL advisory locks cover replicas).
    pub running: Mutex<HashSet<String>>,
    /// Apps whose sync was asked for while one was running: one more follows.
    pub rerun: Mutex<HashSet<String>>,
}

/// What directory-sync needs from the process.
pub struct Deps {
    pub db: DatabaseConnection,
    pub bus: Bus,
    pub apps: AppRegistry,
    pub client: FeishuClient,
    pub settings: DirectorySettings,
    pub feishu_base: Option<Url>,
    /// Who may call the read API: service tokens and sessions.
    pub gate: Gate,
}

#[derive(Clone)]
pub struct DirectorySync {
    inner: Arc<Inner>,
}

/// How to call Feishu as `app_id`, if the app is bound and enabled: on its platform's host,
/// or on `feishu_base` (the emulator) when set.
pub fn credentials(
    apps: &AppRegistry,
    feishu_base: Option<&Url>,
    app_id: &str,
) -> Option<AppCredentials> {
    let b = apps.get(app_id).filter(|b| b.enabled)?;
    let base = match (feishu_base, b.domain) {
        (Some(u), _) => u.clone(),
        (None, Domain::Feishu) => Url::parse(FEISHU_BASE).ok()?,
        (None, Domain::Lark) => Url::parse(LARK_BASE).ok()?,
    };
    Some(AppCredentials {
        app_id: b.app_id.clone(),
        app_secret: b.app_secret.clone(),
        base_url: base,
    })
}

impl Inner {
    /// How to call Feishu as `app_id`, if the app is bound and enabled.
    pub fn credentials(&self, app_id: &str) -> Option<AppCredentials> {
        credentials(&self.apps, self.feishu_base.as_ref(), app_id)
    }
}

impl DirectorySync {
    pub fn new(d: Deps) -> Self {
        Self {
            inner: Arc::new(Inner {
                db: d.db,
                bus: d.bus,
                apps: d.apps,
                client: d.client,
                settings: d.settings,
                feishu_base: d.feishu_base,
                gate: d.gate,
                outbox_wake: tokio::sync::Notify::new(),
                stats: Arc::default(),
                running: Mutex::new(HashSet::new()),
                rerun: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Mounts the read API and the sync endpoints under `/api/v1/apps/{app_id}/...`.
    pub fn mount(&self) -> Mount {
        api::mount(self.inner.clone())
    }

    /// Starts the consumers, the outbox relay and the reconcile schedule.
    pub fn start(&self, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(consumer::run_events(self.inner.clone(), shutdown.clone())),
            tokio::spawn(consumer::run_commands(self.inner.clone(), shutdown.clone())),
            tokio::spawn(outbox::run(self.inner.clone(), shutdown.clone())),
            tokio::spawn(sync::run_schedule(self.inner.clone(), shutdown)),
        ]
    }

    /// Runs a full sync now and waits for it (tests, the API's synchronous mode).
    pub async fn sync(&self, app_id: &str, opts: SyncOptions) -> Result<String, SyncError> {
        sync::run(&self.inner, app_id, opts).await
    }

    /// The canonical export of an app's directory.
    pub async fn export(&self, app_id: &str) -> Result<export::Export, sea_orm::DbErr> {
        export::export(&self.inner.db, app_id).await
    }
}
