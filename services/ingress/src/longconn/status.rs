//! What `/readyz` shows about each binding's long connections.

use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

#[derive(Default)]
struct Inner {
    state: &'static str,
    connections: u32,
    reconnects: u64,
    last_frame: Option<Instant>,
    error: Option<String>,
}

/// One binding's connections, shared by its connection tasks.
#[derive(Default)]
pub struct AppStatus {
    inner: Mutex<Inner>,
}

impl AppStatus {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut g)
    }

    pub fn connecting(&self) {
        self.with(|i| {
            if i.connections == 0 {
                i.state = "connecting";
            }
        })
    }

    /// Every connection slot of the app is held by other replicas' connections.
    pub fn waiting_for_slot(&self) {
        self.with(|i| {
            if i.connections == 0 {
                i.state = "waiting_for_slot";
            }
        })
    }

    pub fn opened(&self) {
        self.with(|i| {
            i.connections += 1;
            i.state = "connected";
            i.last_frame = Some(Instant::now());
        })
    }

    pub fn closed(&self) {
        self.with(|i| {
            i.connections = i.connections.saturating_sub(1);
            if i.connections == 0 {
                i.state = "disconnected";
            }
        })
    }

    pub fn reconnecting(&self) {
        self.with(|i| i.reconnects += 1)
    }

    pub fn frame(&self) {
        self.with(|i| i.last_frame = Some(Instant::now()))
    }

    pub fn fail(&self, reason: &str) {
        self.with(|i| {
            i.state = "failed";
            i.error = Some(reason.to_string());
        })
    }

    pub fn failed(&self) -> bool {
        self.with(|i| i.error.is_some())
    }

    pub fn report(&self) -> Value {
        self.with(|i| {
            let mut v = json!({
                "state": if i.state.is_empty() { "connecting" } else { i.state },
                "connections": i.connections,
                "reconnects": i.reconnects,
                "last_frame_age_ms": i.last_frame.map(|t| t.elapsed().as_millis() as u64),
            });
            if let (Some(e), Some(o)) = (&i.error, v.as_object_mut()) {
                o.insert("error".into(), json!(e));
            }
            v
        })
    }
}
