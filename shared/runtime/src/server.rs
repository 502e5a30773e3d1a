//! The HTTP listener every process runs: the services' routes (each under its own prefix),
//! health, readiness and metrics, request metrics, and a graceful stop.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{ServerHandle, Service as _};
use actix_web::{web, App};
use tokio::task::JoinHandle;

use crate::health::{self, Readiness};
use crate::settings::HttpSettings;

/// Something that mounts routes on the app (a service's `configure`).
pub type Mount = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// A running HTTP server.
pub struct HttpServer {
    addr: SocketAddr,
    handle: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// Binds `settings.listen` and starts serving.
    pub fn bind(
        settings: &HttpSettings,
        mounts: Vec<Mount>,
        readiness: Readiness,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen).map_err(|e| {
            anyhow::anyhow!("cannot listen on {} (http.listen): {e}", settings.listen)
        })?;
        Self::start(listener, settings, mounts, readiness)
    }

    /// Starts serving on an already bound listener (tests bind port 0).
    pub fn start(
        listener: TcpListener,
        settings: &HttpSettings,
        mounts: Vec<Mount>,
        readiness: Readiness,
    ) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        // Install the metrics recorder before the first request is counted.
        let _ = crate::telemetry::metrics_handle();
        let workers = if settings.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            settings.workers
        };
        let server = actix_web::HttpServer::new(move || {
            let readiness = readiness.clone();
            let mut app = App::new()
                .wrap_fn(|req, srv| {
                    let started = Instant::now();
                    let route = req
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_string());
                    let method = req.method().to_string();
                    let fut = srv.call(req);
                    async move {
                        let res = fut.await;
                        let status = match &res {
                            Ok(r) => r.status().as_u16(),
                            Err(e) => e.as_response_error().status_code().as_u16(),
                        };
                        let labels = [
                            ("route", route),
                            ("method", method),
                            ("status", status.to_string()),
                        ];
                        metrics::counter!("http_requests_total", &labels).increment(1);
                        metrics::histogram!("http_request_duration_seconds", &labels[..2])
                            .record(started.elapsed().as_secs_f64());
                        res
                    }
                })
                .configure(|cfg| health::configure(cfg, readiness));
            for m in &mounts {
                let m = m.clone();
                app = app.configure(move |cfg| m(cfg));
            }
            app.default_service(web::to(crate::error::not_found))
        })
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(settings.shutdown_grace.as_secs().max(1))
        .listen(listener)?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(%addr, workers, "http listening");
        Ok(Self { addr, handle, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (within `http.shutdown_grace`).
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}
