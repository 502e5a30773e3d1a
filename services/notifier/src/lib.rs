//! notifier: delivers bot messages that other platform services ask for (over the bus or
//! HTTP) to users, departments and chats, through Feishu's send, reply and batch_send APIs,
//! within Feishu's limits across all replicas; records every recipient's outcome and publishes
//! a delivery report per notification. It also answers the bot's own conversation: `help`,
//! a greeting for a group it joins, and updates of its cards after a click.

mod api;
mod bot;
pub mod budget;
mod consumer;
mod deliver;
mod finish;
pub mod message;
mod plan;
mod records;
pub mod templates;

use std::sync::Arc;

use bridge_bus::Bus;
use bridge_feishu::api::{AppCredentials, FeishuClient, FEISHU_BASE, LARK_BASE};
use bridge_runtime::settings::NotifierSettings;
use bridge_runtime::{Mount, Shutdown};
use bridge_store::{AppRegistry, Domain};
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;
use url::Url;

pub use message::{Accepted, Rejection};
pub use templates::{TemplateError, Templates};

/// What the notifier needs from the process.
pub struct Deps {
    pub db: DatabaseConnection,
    pub bus: Bus,
    pub apps: AppRegistry,
    pub client: FeishuClient,
    pub settings: NotifierSettings,
    pub feishu_base: Option<Url>,
    /// The client's rate scale (1.0 against Feishu; an emulator's factor in tests).
    pub rate_scale: f64,
    pub gate: bridge_session::Gate,
}

pub(crate) struct Inner {
    pub db: DatabaseConnection,
    pub bus: Bus,
    pub apps: AppRegistry,
    pub client: FeishuClient,
    pub settings: NotifierSettings,
    pub feishu_base: Option<Url>,
    pub rate_scale: f64,
    pub gate: bridge_session::Gate,
    pub templates: Templates,
    pub budget: budget::Budget,
    /// Wakes the follow-up loop (a batch was sent).
    pub wake: tokio::sync::Notify,
}

impl Inner {
    /// How to call Feishu as `app_id`, if the app is bound and enabled.
    pub fn credentials(&self, app_id: &str) -> Option<AppCredentials> {
        let b = self.apps.get(app_id).filter(|b| b.enabled)?;
        let base = match (&self.feishu_base, b.domain) {
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

    pub fn known_app(&self, app_id: &str) -> bool {
        self.apps.get(app_id).is_some_and(|b| b.enabled)
    }
}

#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    /// Loads the templates (a broken one fails the start, naming it).
    pub fn new(d: Deps) -> Result<Self, TemplateError> {
        let templates = match &d.settings.templates_dir {
            Some(dir) => Templates::load(dir)?,
            None => Templates::empty(),
        };
        tracing::info!(templates = ?templates.names(), "notifier templates loaded");
        let budget = budget::Budget::new(&d.db);
        Ok(Self {
            inner: Arc::new(Inner {
                db: d.db,
                bus: d.bus,
                apps: d.apps,
                client: d.client,
                settings: d.settings,
                feishu_base: d.feishu_base,
                rate_scale: d.rate_scale,
                gate: d.gate,
                templates,
                budget,
                wake: tokio::sync::Notify::new(),
            }),
        })
    }

    /// `POST /api/v1/apps/{app_id}/messages`, `GET /api/v1/messages/{id}`.
    pub fn mount(&self) -> Mount {
        api::mount(self.inner.clone())
    }

    /// Starts the request consumer, the bot-event consumer and the follow-up loop.
    pub fn start(&self, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(consumer::run(self.inner.clone(), shutdown.clone())),
            tokio::spawn(bot::run(self.inner.clone(), shutdown.clone())),
            tokio::spawn(finish::run(self.inner.clone(), shutdown)),
        ]
    }
}
