//! `/healthz` (the process is up), `/readyz` (its dependencies are reachable) and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};

type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<Option<Value>, String>> + Send + Sync>;

/// One readiness check: a name and an async probe that says what is wrong.
#[derive(Clone)]
pub struct ReadinessCheck {
    pub name: &'static str,
    probe: Probe,
}

impl ReadinessCheck {
    pub fn new<F>(name: &'static str, probe: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
    {
        let probe = Arc::new(probe);
        Self {
            name,
            probe: Arc::new(move || {
                let p = probe.clone();
                Box::pin(async move { p().await.map(|()| None) })
            }),
        }
    }

    /// A check that never fails readiness but reports what it sees: `details` is shown as
    /// the check's entry in `/readyz` (it should carry its own `status`).
    pub fn report<F>(name: &'static str, details: F) -> Self
    where
        F: Fn() -> Value + Send + Sync + 'static,
    {
        let details = Arc::new(details);
        Self {
            name,
            probe: Arc::new(move || {
                let v = details();
                Box::pin(async move { Ok(Some(v)) })
            }),
        }
    }
}

/// The checks `/readyz` runs; ready only when all pass.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<ReadinessCheck>,
}

impl Readiness {
    pub fn add(&mut self, check: ReadinessCheck) {
        self.checks.push(check);
    }

    /// Runs every check (each bounded by a timeout); returns overall readiness and details.
    pub async fn evaluate(&self) -> (bool, Value) {
        let mut details = Map::new();
        let mut ready = true;
        let results = futures_util::future::join_all(self.checks.iter().map(|c| async move {
            let r = tokio::time::timeout(Duration::from_secs(2), (c.probe)()).await;
            (c.name, r.unwrap_or_else(|_| Err("check timed out".into())))
        }))
        .await;
        for (name, r) in results {
            match r {
                Ok(None) => {
                    details.insert(name.into(), json!({"status": "ok"}));
                }
                Ok(Some(v)) => {
                    details.insert(name.into(), v);
                }
                Err(e) => {
                    ready = false;
                    details.insert(name.into(), json!({"status": "down", "error": e}));
                }
            }
        }
        (ready, Value::Object(details))
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let (ready, checks) = readiness.evaluate().await;
    let body = json!({"status": if ready { "ready" } else { "not ready" }, "checks": checks});
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics_text() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::render_metrics())
}

/// Mounts `/healthz`, `/readyz` and `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig, readiness: Readiness) {
    cfg.app_data(web::Data::new(readiness))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics_text));
}
