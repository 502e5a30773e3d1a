//! console: the admin API and web page an operator sets the Feishu app up with — bindings
//! (secrets write-only, every change audited), the checklist of values to paste into Feishu's
//! developer console, "install / initialise" (credentials, scopes, contact range, bot, then
//! the full sync, step by step), sync history, whether events are arriving, and a read-only
//! view of the synced organisation.

mod access;
mod bindings;
mod install;
mod page;
mod setup;

use std::sync::Arc;

use bridge_bus::Bus;
use bridge_feishu::api::{AppCredentials, FeishuClient};
use bridge_runtime::settings::ConsoleSettings;
use bridge_runtime::Mount;
use bridge_session::Gate;
use bridge_store::AppRegistry;
use sea_orm::DatabaseConnection;
use url::Url;

/// What the console needs from the process.
pub struct Deps {
    pub db: DatabaseConnection,
    pub bus: Bus,
    pub apps: AppRegistry,
    pub client: FeishuClient,
    pub gate: Gate,
    pub settings: ConsoleSettings,
    pub public_base_url: Option<Url>,
    pub feishu_base: Option<Url>,
}

pub(crate) struct Inner {
    pub db: DatabaseConnection,
    pub bus: Bus,
    pub apps: AppRegistry,
    pub client: FeishuClient,
    pub gate: Gate,
    pub settings: ConsoleSettings,
    pub public_base_url: Option<Url>,
    pub feishu_base: Option<Url>,
}

impl Inner {
    pub fn credentials(&self, app_id: &str) -> Option<AppCredentials> {
        bridge_directory_sync::credentials(&self.apps, self.feishu_base.as_ref(), app_id)
    }
}

/// The console service. Cheap to clone.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

impl Console {
    pub fn new(d: Deps) -> Self {
        Self {
            inner: Arc::new(Inner {
                db: d.db,
                bus: d.bus,
                apps: d.apps,
                client: d.client,
                gate: d.gate,
                settings: d.settings,
                public_base_url: d.public_base_url,
                feishu_base: d.feishu_base,
            }),
        }
    }

    /// Mounts `/console` (the page) and the admin API under `/api/v1/apps`.
    pub fn mount(&self) -> Mount {
        let inner = self.inner.clone();
        Arc::new(move |cfg: &mut actix_web::web::ServiceConfig| {
            page::routes(cfg, inner.clone());
            bindings::routes(cfg, inner.clone());
        })
    }
}
