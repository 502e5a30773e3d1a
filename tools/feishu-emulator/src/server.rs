//! Serving the emulator over HTTP: Open API routes plus the `/_emulator/` control API.

use std::net::SocketAddr;

use actix_web::{web, App, HttpServer};

use crate::emulator::Emulator;

/// A running HTTP server; stops on drop or [`RunningEmulator::stop`].
pub struct RunningEmulator {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEmulator")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RunningEmulator {
    /// `http://IP:PORT`, the base of both `/open-apis/` and `/_emulator/`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server gracefully and ends the push dispatcher.
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        // The stop command is sent when `stop` is called; the returned future only waits.
        drop(self.handle.stop(false));
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Emulator {
    /// Serves the emulator on `listen` (port 0 picks a free port). Must be called inside a
    /// tokio runtime; the server and the push dispatcher run as tasks of that runtime.
    pub async fn start(&self, listen: SocketAddr) -> anyhow::Result<RunningEmulator> {
        let listener = std::net::TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let data = web::Data::new(self.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::JsonConfig::default().limit(4 * 1024 * 1024))
                .app_data(web::PayloadConfig::new(4 * 1024 * 1024))
                .configure(crate::control::routes)
                .configure(crate::api::routes)
                .configure(crate::ws::routes)
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "emulator server failed");
            }
        })];
        tasks.extend(self.spawn_dispatcher());
        tracing::info!(%addr, "feishu emulator listening");
        Ok(RunningEmulator {
            addr,
            handle,
            tasks,
        })
    }

    fn spawn_dispatcher(&self) -> Option<tokio::task::JoinHandle<()>> {
        Some(self.spawn_push_dispatcher())
    }
}
