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

/// The first path segment for the request metrics (bounded cardinality).
fn area(path: &str) -> &'static str {
    match path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
    {
        "feishu" => "feishu",
        "api" => "api",
        "auth" => "auth",
        "console" => "console",
        "healthz" | "readyz" | "metrics" => "ops",
        ".well-known" => "well-known",
        _ => "other",
    }
}

fn method_label(m: &actix_web::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => "other",
    }
}

/// Status codes as static labels (no allocation per request).
fn status_label(s: u16) -> &'static str {
    match s {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        302 => "302",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

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
                    // Labelled by the path's first segment (the service's prefix): resolving
                    // the full route pattern again would run the router's regexes twice.
                    let route = area(req.path());
                    let method = method_label(req.method());
                    let fut = srv.call(req);
                    async move {
                        let res = fut.await;
                        let status = match &res {
                            Ok(r) => r.status().as_u16(),
                            Err(e) => e.as_response_error().status_code().as_u16(),
                        };
                        let labels = [
                            ("area", route),
                            ("method", method),
                            ("status", status_label(status)),
                        ];
                        crate::meter::count("http_requests_total", &labels, 1);
                        crate::meter::record(
                            "http_request_duration_seconds",
                            &labels[..2],
                            started.elapsed().as_secs_f64(),
                        );
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

/// This system's base URL as browsers and Feishu reach it: `public_base_url` when configured
/// (`true`), else the scheme and host of `req` (`false`: a guess the caller may want to flag).
pub fn public_base(
    public_base_url: Option<&url::Url>,
    req: &actix_web::HttpRequest,
) -> (String, bool) {
    match public_base_url {
        Some(u) => (u.as_str().trim_end_matches('/').to_string(), true),
        None => {
            let info = req.connection_info();
            (format!("{}://{}", info.scheme(), info.host()), false)
        }
    }
}
