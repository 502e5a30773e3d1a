//! Event pushes to apps' request URLs (events.md §2): schema 2.0 envelopes, encrypted and
//! signed with the app's Encrypt Key (plain with `header.token` otherwise), a 3 s timeout,
//! the retry ladder 15 s / 5 min / 1 h / 6 h scaled by `event_time_factor`, optional
//! duplicates and reordering, url_verification, card callbacks, and a log of every attempt.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bridge_feishu::EventCipher;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::emulator::{lock, Emulator};
use crate::error::EmulatorError;
use crate::ids;
use crate::ws::Subscription;

/// What the push log shows as the `url` of a delivery over the long connection.
pub const LONG_CONNECTION: &str = "long-connection";

/// Feishu's re-push intervals after a failed delivery (events.md §2.8).
pub const RETRY_LADDER: [Duration; 4] = [
    Duration::from_secs(15),
    Duration::from_secs(5 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(6 * 60 * 60),
];

/// One delivery attempt and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushAttempt {
    pub seq: u64,
    pub app_id: String,
    pub event_id: String,
    pub event_type: String,
    pub url: Option<String>,
    /// 0 for the first attempt, 1..=4 for the retries.
    pub attempt: u32,
    /// A deliberate duplicate delivery (see `duplicate_share`).
    pub duplicate: bool,
    pub at_ms: i64,
    pub status: Option<u16>,
    pub ok: bool,
    pub error: Option<String>,
}

/// An event waiting to be pushed.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub app_id: String,
    pub event_id: String,
    pub event_type: String,
    /// The plaintext envelope.
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub struct Hub {
    queue: Mutex<VecDeque<Outgoing>>,
    notify: tokio::sync::Notify,
    log: Mutex<Vec<PushAttempt>>,
    events: Mutex<Vec<Value>>,
    rng: Mutex<ChaCha8Rng>,
    seq: AtomicU64,
    client: reqwest::Client,
}

impl Hub {
    pub fn new(seed: u64) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_secs(2))
            .user_agent("feishu-emulator")
            .build()
            .unwrap_or_default();
        Self {
            queue: Mutex::new(VecDeque::new()),
            notify: tokio::sync::Notify::new(),
            log: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x9e37)),
            seq: AtomicU64::new(0),
            client,
        }
    }

    pub fn enqueue(&self, o: Outgoing) {
        lock(&self.queue).push_back(o);
        self.notify.notify_one();
    }

    fn record(&self, mut a: PushAttempt) {
        a.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.log).push(a);
    }

    fn chance(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).gen_bool(p.clamp(0.0, 1.0))
    }

    fn jitter_ms(&self, lo: u64, hi: u64) -> u64 {
        lock(&self.rng).gen_range(lo..hi)
    }
}

impl Emulator {
    /// Builds the schema 2.0 envelope and queues it for `app_id` if it has a request URL.
    pub(crate) fn emit(&self, app_id: &str, event_type: &str, event: Value) {
        let (token, tenant_key, has_url) = {
            let w = self.read();
            let Some(t) = w.state.tenants.iter().find(|t| t.app(app_id).is_some()) else {
                return;
            };
            let Some(app) = t.app(app_id) else { return };
            (
                app.verification_token.clone(),
                t.tenant_key.clone(),
                app.event_request_url.is_some(),
            )
        };
        if !has_url && self.subscription(app_id) != Subscription::LongConnection {
            return;
        }
        let event_id = ids::event_id(&mut rand::thread_rng());
        let envelope = json!({
            "schema": "2.0",
            "header": {
                "event_id": event_id,
                "event_type": event_type,
                "create_time": self.clock().now_ms().to_string(),
                "token": token,
                "app_id": app_id,
                "tenant_key": tenant_key,
            },
            "event": event,
        });
        lock(&self.inner.hub.events).push(envelope.clone());
        self.inner.hub.enqueue(Outgoing {
            app_id: app_id.to_string(),
            event_id,
            event_type: event_type.to_string(),
            body: envelope.to_string().into_bytes(),
        });
    }

    /// Every push attempt so far, in order.
    pub fn push_log(&self) -> Vec<PushAttempt> {
        lock(&self.inner.hub.log).clone()
    }

    /// Every event envelope emitted so far (plaintext), in order.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.inner.hub.events).clone()
    }

    /// Events still waiting for their first delivery attempt.
    pub fn pending_events(&self) -> usize {
        lock(&self.inner.hub.queue).len()
    }

    pub(crate) fn spawn_push_dispatcher(&self) -> tokio::task::JoinHandle<()> {
        let emu = self.clone();
        tokio::spawn(async move {
            loop {
                let next = lock(&emu.inner.hub.queue).pop_front();
                match next {
                    Some(o) => emu.first_delivery(o).await,
                    None => emu.inner.hub.notify.notified().await,
                }
            }
        })
    }

    async fn first_delivery(&self, o: Outgoing) {
        let s = self.settings();
        let hub = &self.inner.hub;
        if hub.chance(s.reorder_share) {
            // Held back so that later events overtake it.
            let delay = Duration::from_millis(hub.jitter_ms(20, 200));
            let emu = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                emu.deliver_with_retries(o).await;
            });
            return;
        }
        if self.deliver(&o, 0, false).await {
            self.maybe_duplicate(&o);
        } else {
            let emu = self.clone();
            tokio::spawn(async move { emu.retries(o).await });
        }
    }

    async fn deliver_with_retries(&self, o: Outgoing) {
        if self.deliver(&o, 0, false).await {
            self.maybe_duplicate(&o);
        } else {
            self.retries(o).await;
        }
    }

    async fn retries(&self, o: Outgoing) {
        for (i, step) in RETRY_LADDER.iter().enumerate() {
            let factor = self.settings().event_time_factor;
            tokio::time::sleep(step.mul_f64(factor)).await;
            if self.deliver(&o, i as u32 + 1, false).await {
                self.maybe_duplicate(&o);
                return;
            }
        }
        tracing::warn!(
            app_id = o.app_id,
            event_id = o.event_id,
            "event dropped after 4 retries"
        );
    }

    fn maybe_duplicate(&self, o: &Outgoing) {
        let hub = &self.inner.hub;
        if hub.chance(self.settings().duplicate_share) {
            let delay = Duration::from_millis(hub.jitter_ms(10, 100));
            let emu = self.clone();
            let o = o.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                emu.deliver(&o, 0, true).await;
            });
        }
    }

    /// The app's current request URL and Encrypt Key.
    fn target(&self, app_id: &str) -> Option<(Option<String>, Option<String>)> {
        let w = self.read();
        let app = w.state.tenants.iter().find_map(|t| t.app(app_id))?;
        Some((app.event_request_url.clone(), app.encrypt_key.clone()))
    }

    /// One POST of an event; true when the receiver answered 200.
    async fn deliver(&self, o: &Outgoing, attempt: u32, duplicate: bool) -> bool {
        if self.subscription(&o.app_id) == Subscription::LongConnection {
            return self.deliver_long_connection(o, attempt, duplicate).await;
        }
        let (url, key) = self.target(&o.app_id).unwrap_or((None, None));
        let mut rec = PushAttempt {
            seq: 0,
            app_id: o.app_id.clone(),
            event_id: o.event_id.clone(),
            event_type: o.event_type.clone(),
            url: url.clone(),
            attempt,
            duplicate,
            at_ms: self.clock().now_ms(),
            status: None,
            ok: false,
            error: None,
        };
        let Some(url) = url else {
            rec.error = Some("no request url".into());
            self.inner.hub.record(rec);
            return false;
        };
        let result = self.post_signed(&url, key.as_deref(), &o.body, true).await;
        match result {
            Ok((status, _)) => {
                rec.status = Some(status);
                rec.ok = status == 200;
            }
            Err(e) => rec.error = Some(e),
        }
        let ok = rec.ok;
        self.inner.hub.record(rec);
        ok
    }

    /// One attempt over the app's long connection: plaintext, to one live connection; a
    /// success only for an ack with code 200 within 3 s.
    async fn deliver_long_connection(&self, o: &Outgoing, attempt: u32, duplicate: bool) -> bool {
        let mut rec = PushAttempt {
            seq: 0,
            app_id: o.app_id.clone(),
            event_id: o.event_id.clone(),
            event_type: o.event_type.clone(),
            url: Some(LONG_CONNECTION.into()),
            attempt,
            duplicate,
            at_ms: self.clock().now_ms(),
            status: None,
            ok: false,
            error: None,
        };
        let (conn, result) = self.deliver_ws_status(&o.app_id, &o.body).await;
        if let Some(id) = conn {
            rec.url = Some(format!("{LONG_CONNECTION}/{id}"));
        }
        match result {
            Ok(code) => {
                rec.status = Some(code);
                rec.ok = code == 200;
            }
            Err(e) => rec.error = Some(e),
        }
        let ok = rec.ok;
        self.inner.hub.record(rec);
        ok
    }

    /// POSTs `plain` (encrypted when `key` is set; signed when `sign`), returning status and body.
    async fn post_signed(
        &self,
        url: &str,
        key: Option<&str>,
        plain: &[u8],
        sign: bool,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut req = self
            .inner
            .hub
            .client
            .post(url)
            .header("Content-Type", "application/json; charset=utf-8");
        let body = match key {
            Some(k) => {
                let cipher = EventCipher::new(k);
                let body = json!({"encrypt": cipher.encrypt(plain)})
                    .to_string()
                    .into_bytes();
                if sign {
                    let ts = self.clock().now_secs().to_string();
                    let nonce = ids::random_alnum(&mut rand::thread_rng(), 16);
                    let sig = cipher.signature(&ts, &nonce, &body);
                    req = req
                        .header("X-Lark-Request-Timestamp", ts)
                        .header("X-Lark-Request-Nonce", nonce)
                        .header("X-Lark-Signature", sig);
                }
                body
            }
            None => plain.to_vec(),
        };
        let resp = req.body(body).send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        Ok((status, bytes.to_vec()))
    }

    /// Sets an app's event request URL after a url_verification challenge was echoed, as
    /// the developer console does when the URL is saved.
    pub async fn set_request_url(&self, app_id: &str, url: &str) -> Result<(), EmulatorError> {
        self.verify_url(app_id, url).await?;
        self.edit_app(app_id, |a| a.event_request_url = Some(url.to_string()))
    }

    /// Sets an app's callback (card) request URL, verified the same way.
    pub async fn set_callback_url(&self, app_id: &str, url: &str) -> Result<(), EmulatorError> {
        self.verify_url(app_id, url).await?;
        self.edit_app(app_id, |a| a.callback_url = Some(url.to_string()))
    }

    /// Sends url_verification (encrypted with the app's Encrypt Key if any, unsigned) and
    /// checks that the challenge comes back.
    async fn verify_url(&self, app_id: &str, url: &str) -> Result<(), EmulatorError> {
        let app = self
            .app(app_id)
            .ok_or_else(|| EmulatorError::NotFound(format!("app {app_id}")))?;
        let challenge = uuid::Uuid::new_v4().to_string();
        let plain = json!({
            "challenge": challenge,
            "token": app.verification_token,
            "type": "url_verification",
        })
        .to_string();
        let result = self
            .post_signed(url, app.encrypt_key.as_deref(), plain.as_bytes(), false)
            .await;
        let mut rec = PushAttempt {
            seq: 0,
            app_id: app_id.to_string(),
            event_id: challenge.clone(),
            event_type: "url_verification".into(),
            url: Some(url.to_string()),
            attempt: 0,
            duplicate: false,
            at_ms: self.clock().now_ms(),
            status: None,
            ok: false,
            error: None,
        };
        let verdict = match result {
            Ok((status, body)) => {
                rec.status = Some(status);
                let echoed = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("challenge").and_then(Value::as_str).map(String::from));
                if status == 200 && echoed.as_deref() == Some(challenge.as_str()) {
                    Ok(())
                } else {
                    Err(format!("Challenge code 没有返回 (status {status})"))
                }
            }
            Err(e) => Err(e),
        };
        rec.ok = verdict.is_ok();
        rec.error = verdict.as_ref().err().cloned();
        self.inner.hub.record(rec);
        verdict.map_err(EmulatorError::UrlVerification)
    }

    /// Sends a schema 2.0 callback (`card.action.trigger`) synchronously: 3 s, no re-push.
    /// Returns the receiver's JSON answer.
    pub(crate) async fn send_callback(
        &self,
        app_id: &str,
        event_type: &str,
        event: Value,
    ) -> Result<Value, EmulatorError> {
        let app = self
            .app(app_id)
            .ok_or_else(|| EmulatorError::NotFound(format!("app {app_id}")))?;
        let tenant_key = {
            let w = self.read();
            w.state
                .tenants
                .iter()
                .find(|t| t.app(app_id).is_some())
                .map(|t| t.tenant_key.clone())
                .unwrap_or_default()
        };
        let long_connection = self.subscription(app_id) == Subscription::LongConnection;
        let url = match long_connection {
            true => Some(LONG_CONNECTION.to_string()),
            false => app.callback_url.clone().or(app.event_request_url.clone()),
        }
        .ok_or_else(|| EmulatorError::Invalid("app has no callback url (200340)".into()))?;
        let event_id = ids::event_id(&mut rand::thread_rng());
        let envelope = json!({
            "schema": "2.0",
            "header": {
                "event_id": event_id,
                "token": app.verification_token,
                "create_time": (self.clock().now_ms() * 1000).to_string(),
                "event_type": event_type,
                "tenant_key": tenant_key,
                "app_id": app_id,
            },
            "event": event,
        });
        lock(&self.inner.hub.events).push(envelope.clone());
        let result = if long_connection {
            // The callback's answer travels base64-encoded in the ack's `data`.
            self.deliver_ws(app_id, envelope.to_string().as_bytes())
                .await
                .map(|ack| {
                    let code = ack.get("code").and_then(Value::as_u64).unwrap_or(0) as u16;
                    (code, Self::ack_data(&ack).to_string().into_bytes())
                })
        } else {
            self.post_signed(
                &url,
                app.encrypt_key.as_deref(),
                envelope.to_string().as_bytes(),
                true,
            )
            .await
        };
        let mut rec = PushAttempt {
            seq: 0,
            app_id: app_id.to_string(),
            event_id,
            event_type: event_type.to_string(),
            url: Some(url),
            attempt: 0,
            duplicate: false,
            at_ms: self.clock().now_ms(),
            status: None,
            ok: false,
            error: None,
        };
        let out = match result {
            Ok((200, body)) => {
                rec.status = Some(200);
                rec.ok = true;
                Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
            }
            Ok((s, _)) => {
                rec.status = Some(s);
                Err(EmulatorError::Invalid(format!(
                    "callback answered {s} (200671)"
                )))
            }
            Err(e) => {
                rec.error = Some(e.clone());
                Err(EmulatorError::Invalid(format!(
                    "callback failed: {e} (200341)"
                )))
            }
        };
        self.inner.hub.record(rec);
        out
    }
}
