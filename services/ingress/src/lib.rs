//! The ingress: Feishu's event and callback webhooks. Each request is verified (signature,
//! Verification Token), decrypted, published to `feishu.events` as a `FeishuEvent`, and answered
//! 200 only after the broker confirmed the persistent publish; otherwise 5xx so Feishu retries.

mod activity;
mod dedupe;
mod error;
mod handler;
mod longconn;
mod publish;

use std::sync::Arc;

use actix_web::web;
use bridge_bus::Bus;
use bridge_runtime::settings::IngressSettings;
use bridge_runtime::Mount;
use bridge_store::AppRegistry;

pub use error::IngressError;
pub use longconn::LongConnectionStatus;

/// What the ingress needs from the process.
pub struct Ingress {
    state: web::Data<handler::State>,
}

impl Ingress {
    pub fn new(settings: IngressSettings, apps: AppRegistry, bus: Bus) -> Self {
        let dedupe = dedupe::Dedupe::new(settings.dedupe_capacity, settings.dedupe_ttl);
        Self {
            state: web::Data::new(handler::State {
                settings,
                apps,
                bus,
                dedupe,
                activity: Arc::new(activity::Activity::default()),
            }),
        }
    }

    /// Starts the long connections of the bindings that ask for them, following binding
    /// changes until `shutdown`; then stops reading, finishes in-flight frames and closes.
    pub fn start_long_connections(
        &self,
        client: bridge_feishu::api::FeishuClient,
        feishu_base: Option<url::Url>,
        shutdown: bridge_runtime::Shutdown,
    ) -> (tokio::task::JoinHandle<()>, LongConnectionStatus) {
        let status = LongConnectionStatus::default();
        let supervisor = longconn::Supervisor {
            state: self.state.clone(),
            client,
            feishu_base,
            settings: self.state.settings.long_connection.clone(),
            status: status.clone(),
        };
        (tokio::spawn(supervisor.run(shutdown)), status)
    }

    /// Records, every 2 s, the last event accepted per app (the console's "events are
    /// arriving").
    pub fn start(&self, shutdown: bridge_runtime::Shutdown) -> tokio::task::JoinHandle<()> {
        let activity = self.state.activity.clone();
        let db = self.state.apps.db().clone();
        tokio::spawn(activity.run(db, std::time::Duration::from_secs(2), shutdown))
    }

    /// Mounts `POST /feishu/{app_id}/events` and `POST /feishu/{app_id}/callbacks`. The
    /// scope's static prefix is matched without a regex and the rest is split by hand: the
    /// router's regex engine was a visible share of the request path's CPU.
    pub fn mount(&self) -> Mount {
        let state = self.state.clone();
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.service(
                web::scope("/feishu")
                    .app_data(state.clone())
                    .default_service(web::to(handler::dispatch)),
            );
        })
    }
}
