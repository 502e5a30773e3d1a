//! The ingress: Feishu's event and callback webhooks. Each request is verified (signature,
//! Verification Token), decrypted, published to `feishu.events` as a `FeishuEvent`, and answered
//! 200 only after the broker confirmed the persistent publish; otherwise 5xx so Feishu retries.

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
            }),
        }
    }

    /// Mounts `POST /feishu/{app_id}/events` and `POST /feishu/{app_id}/callbacks`.
    pub fn mount(&self) -> Mount {
        let state = self.state.clone();
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(state.clone())
                .service(
                    web::resource("/feishu/{app_id}/events")
                        .route(web::post().to(handler::events))
                        .default_service(web::to(bridge_runtime::error::method_not_allowed)),
                )
                .service(
                    web::resource("/feishu/{app_id}/callbacks")
                        .route(web::post().to(handler::callbacks))
                        .default_service(web::to(bridge_runtime::error::method_not_allowed)),
                );
        })
    }
}
