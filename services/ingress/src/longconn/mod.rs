//! Long-connection mode: for every enabled binding whose delivery includes the long
//! connection, this replica keeps `connections_per_app` connections to Feishu's WebSocket.
//! A changed binding restarts its connections (clearing a terminal error); a removed,
//! disabled or webhook-only binding stops them.

mod conn;
mod frame;
mod reassemble;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web;
use bridge_feishu::api::{AppCredentials, FeishuClient, FEISHU_BASE, LARK_BASE};
use bridge_runtime::settings::LongConnectionSettings;
use bridge_runtime::Shutdown;
use bridge_store::{AppBinding, Domain};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use url::Url;

use crate::handler::State;
use status::AppStatus;

struct Running {
    updated_at: DateTime<Utc>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    status: Arc<AppStatus>,
}

type Table = Arc<Mutex<HashMap<String, Running>>>;

/// The supervisor's view, for `/readyz`.
#[derive(Clone, Default)]
pub struct LongConnectionStatus {
    table: Table,
}

impl LongConnectionStatus {
    /// `{"status": "ok"|"degraded", "apps": {app_id: {state, connections, reconnects,
    /// last_frame_age_ms, error?}}}`: degraded when a binding stopped on a terminal error.
    pub fn report(&self) -> Value {
        let t = lock(&self.table);
        let mut apps = Map::new();
        let mut degraded = false;
        for (app_id, r) in t.iter() {
            degraded |= r.status.failed();
            apps.insert(app_id.clone(), r.status.report());
        }
        json!({"status": if degraded { "degraded" } else { "ok" }, "apps": apps})
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

pub(crate) struct Supervisor {
    pub state: web::Data<State>,
    pub client: FeishuClient,
    pub feishu_base: Option<Url>,
    pub settings: LongConnectionSettings,
    pub status: LongConnectionStatus,
}

fn credentials(b: &AppBinding, base: Option<&Url>) -> Option<AppCredentials> {
    let base_url = match (base, b.domain) {
        (Some(u), _) => u.clone(),
        (None, Domain::Feishu) => Url::parse(FEISHU_BASE).ok()?,
        (None, Domain::Lark) => Url::parse(LARK_BASE).ok()?,
    };
    Some(AppCredentials {
        app_id: b.app_id.clone(),
        app_secret: b.app_secret.clone(),
        base_url,
    })
}

impl Supervisor {
    /// Follows the registry until shutdown, then stops every connection gracefully.
    pub async fn run(self, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => self.reconcile(),
            }
        }
        let running: Vec<Running> = lock(&self.status.table).drain().map(|(_, r)| r).collect();
        for r in &running {
            r.stop.send_replace(true);
        }
        for r in running {
            for t in r.tasks {
                let _ = t.await;
            }
        }
    }

    fn reconcile(&self) {
        let wanted: HashMap<String, Arc<AppBinding>> = self
            .state
            .apps
            .all()
            .into_iter()
            .filter(|b| b.enabled && b.delivery.long_connection())
            .map(|b| (b.app_id.clone(), b))
            .collect();
        let mut table = lock(&self.status.table);
        let stale: Vec<String> = table
            .iter()
            .filter(|(id, r)| wanted.get(*id).is_none_or(|b| b.updated_at != r.updated_at))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(r) = table.remove(&id) {
                tracing::info!(app_id = %id, "binding changed: stopping its long connections");
                r.stop.send_replace(true);
                metrics::gauge!("ingress_long_connection_failed", "app_id" => id.clone()).set(0.0);
                // The tasks finish their in-flight frames on their own.
                drop(r.tasks);
            }
        }
        for (id, b) in wanted {
            if table.contains_key(&id) {
                continue;
            }
            let Some(creds) = credentials(&b, self.feishu_base.as_ref()) else {
                continue;
            };
            let (stop, stop_rx) = watch::channel(false);
            let status = Arc::new(AppStatus::default());
            let tasks = (0..self.settings.connections_per_app)
                .map(|_| {
                    tokio::spawn(conn::run(conn::Ctx {
                        state: self.state.clone(),
                        client: self.client.clone(),
                        creds: creds.clone(),
                        settings: self.settings.clone(),
                        status: status.clone(),
                        stop: stop_rx.clone(),
                    }))
                })
                .collect();
            tracing::info!(app_id = %id, connections = self.settings.connections_per_app, "starting long connections");
            table.insert(
                id,
                Running {
                    updated_at: b.updated_at,
                    stop,
                    tasks,
                    status,
                },
            );
        }
    }
}
