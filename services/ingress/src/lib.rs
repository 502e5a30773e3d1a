//! The ingress: Feishu's event and callback webhooks. Each request is verified (signature,
//! Verification Token), decrypted, published to `feishu.events` as a `FeishuEvent`, and answered
//! 200 only after the broker confirmed the persistent publish; otherwise 5xx so Feishu retries.

mod activity;
mod dedupe;
mod error;
mod handler;
mod publish;

use std::sync::Arc;

use actix_web::web;
use bridge_bus::Bus;
use bridge_runtime::settings::IngressSettings;
use bridge_runtime::Mount;
use bridge_store::AppRegistry;

pub use error::IngressError;

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
