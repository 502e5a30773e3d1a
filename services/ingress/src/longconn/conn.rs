//! One long connection of one binding, kept alive: endpoint discovery, the WebSocket dial,
//! an immediate ping and then one every `PingInterval`, a watchdog, data frames reassembled,
//! published and acknowledged, and Feishu's reconnect schedule (events.md §7.2-§7.9).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use bridge_contracts::pbbp2::Frame;
use bridge_contracts::v1::Delivery;
use bridge_feishu::api::ws::ClientConfig;
use bridge_feishu::api::{AppCredentials, FeishuClient, FeishuError};
use bridge_feishu::envelope::{self, Inbound};
use bridge_runtime::settings::LongConnectionSettings;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use rand::Rng;
use secrecy::ExposeSecret;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::{self, Message};

use super::frame::{self, Kind};
use super::reassemble::{Outcome, Reassembler};
use super::status::AppStatus;
use crate::error::IngressError;
use crate::handler::{self, Answer, State};

/// Event types that are interactive callbacks: answered with `{}` in the ack's `data`.
const CALLBACK_TYPES: &[&str] = &["card.action.trigger", "url.preview.get"];

/// What one connection needs.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub state: web::Data<State>,
    pub client: FeishuClient,
    pub creds: AppCredentials,
    pub settings: LongConnectionSettings,
    pub status: Arc<AppStatus>,
    /// Becomes true when the binding changed or the process stops.
    pub stop: watch::Receiver<bool>,
}

enum Failure {
    /// Wrong credentials, not allowed, connection limit: retried only after the binding changes.
    Terminal(String),
    Transient(String),
}

enum End {
    Stopped,
    Lost(String),
}

/// Connects and reconnects until stopped or a terminal error.
pub(crate) async fn run(mut ctx: Ctx) {
    let app_id = ctx.creds.app_id.clone();
    let mut config = ClientConfig::default();
    let mut attempts: u64 = 0;
    loop {
        if *ctx.stop.borrow() {
            return;
        }
        let failure = match session(&mut ctx, &mut config).await {
            Ok(End::Stopped) => return,
            Ok(End::Lost(reason)) => {
                tracing::warn!(app_id = %app_id, reason = %reason, "long connection lost; reconnecting");
                attempts = 0;
                None
            }
            Err(Failure::Transient(reason)) => {
                tracing::warn!(app_id = %app_id, reason = %reason, "long connection attempt failed; retrying");
                Some(reason)
            }
            Err(Failure::Terminal(reason)) => {
                ctx.status.fail(&reason);
                metrics::gauge!("ingress_long_connection_failed", "app_id" => app_id.clone())
                    .set(1.0);
                tracing::error!(app_id = %app_id, reason = %reason, "long connection stopped for good: fix the app binding to retry");
                return;
            }
        };
        attempts += 1;
        if config.reconnect_count >= 0 && attempts > config.reconnect_count as u64 {
            let reason = format!(
                "gave up after {} reconnect attempts (Feishu's ReconnectCount){}",
                config.reconnect_count,
                failure.map(|f| format!(": {f}")).unwrap_or_default()
            );
            ctx.status.fail(&reason);
            metrics::gauge!("ingress_long_connection_failed", "app_id" => app_id.clone()).set(1.0);
            tracing::error!(app_id = %app_id, reason = %reason, "long connection stopped for good: fix the app binding to retry");
            return;
        }
        // Feishu's schedule: a random delay in [0, ReconnectNonce) before the first attempt,
        // then ReconnectInterval between attempts.
        let delay = if attempts == 1 {
            let nonce = config.reconnect_nonce().as_millis() as u64;
            Duration::from_millis(if nonce == 0 {
                0
            } else {
                rand::thread_rng().gen_range(0..nonce)
            })
        } else {
            config.reconnect_interval()
        }
        .min(ctx.settings.max_reconnect_interval);
        ctx.status.reconnecting();
        metrics::counter!("ingress_long_connection_reconnects_total", "app_id" => app_id.clone())
            .increment(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut ctx.stop) => return,
        }
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn discovery_failure(e: FeishuError) -> Failure {
    match e {
        FeishuError::Credentials { code, msg, .. } => Failure::Terminal(format!(
            "endpoint discovery refused the app (code {code}: {msg}); check App ID and App Secret"
        )),
        other => Failure::Transient(format!("endpoint discovery: {other}")),
    }
}

fn handshake_failure(e: tungstenite::Error) -> Failure {
    let tungstenite::Error::Http(resp) = e else {
        return Failure::Transient(format!("dial failed: {e}"));
    };
    let header = |k: &str| {
        resp.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let http = resp.status().as_u16();
    let status = match header("handshake-status") {
        s if s.is_empty() => http.to_string(),
        s => s,
    };
    let code = header("handshake-autherrcode");
    let msg = header("handshake-msg");
    match (status.as_str(), code.as_str()) {
        ("514", "1000040350") => Failure::Terminal(format!(
            "connection limit exceeded: Feishu allows 50 long connections per app across all replicas (handshake 514/1000040350 {msg})"
        )),
        ("403", _) => Failure::Terminal(format!("handshake forbidden (403 {msg})")),
        _ => Failure::Transient(format!(
            "handshake refused (http {http}, status {status}, code {code}, {msg})"
        )),
    }
}

/// Takes a free one of the app's connection slots (a lease shared by every replica), waiting
/// while all are held, so the replicas together never open more than
/// `max_connections_per_app` connections. `None` when stopped meanwhile.
async fn slot(ctx: &mut Ctx) -> Option<bridge_store::lease::Lease> {
    use bridge_store::lease;
    let mut warned = false;
    loop {
        for i in 0..ctx.settings.max_connections_per_app {
            let key = lease::key(&format!("{}#{i}", ctx.creds.app_id));
            match lease::try_lease(ctx.state.apps.db(), lease::LONG_CONNECTION, key).await {
                Ok(Some(l)) => return Some(l),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(app_id = %ctx.creds.app_id, error = %e, "cannot take a connection slot");
                    break;
                }
            }
        }
        if !warned {
            warned = true;
            tracing::warn!(
                app_id = %ctx.creds.app_id,
                max = ctx.settings.max_connections_per_app,
                "every long-connection slot of the app is held by other connections; waiting for one"
            );
        }
        ctx.status.waiting_for_slot();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stopped(&mut ctx.stop) => return None,
        }
    }
}

async fn session(ctx: &mut Ctx, config: &mut ClientConfig) -> Result<End, Failure> {
    let timeout = ctx.settings.connect_timeout;
    let Some(_slot) = slot(ctx).await else {
        return Ok(End::Stopped);
    };
    ctx.status.connecting();
    let ep = tokio::select! {
        r = ctx.client.ws_endpoint(&ctx.creds, timeout) => r.map_err(discovery_failure)?,
        _ = stopped(&mut ctx.stop) => return Ok(End::Stopped),
    };
    *config = ep.config;
    let dial = tokio_tungstenite::connect_async(ep.url.expose_secret());
    let (ws, _) = tokio::time::timeout(timeout, dial)
        .await
        .map_err(|_| Failure::Transient("dial timed out".into()))?
        .map_err(handshake_failure)?;
    let app_id = ctx.creds.app_id.clone();
    tracing::info!(app_id = %app_id, connection = %ep.device_id, "long connection open");
    ctx.status.opened();
    let gauge = metrics::gauge!("ingress_long_connection_connected", "app_id" => app_id.clone());
    gauge.increment(1.0);
    let end = serve(ctx, ws, ep.service_id, config).await;
    gauge.decrement(1.0);
    ctx.status.closed();
    Ok(end)
}

fn ping_every(config: &ClientConfig, settings: &LongConnectionSettings) -> Duration {
    let p = config.ping_interval();
    if p.is_zero() {
        settings.max_ping_interval
    } else {
        p.min(settings.max_ping_interval)
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn serve(ctx: &mut Ctx, ws: Ws, service: i32, config: &mut ClientConfig) -> End {
    let app_id = ctx.creds.app_id.clone();
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(256);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let s = &ctx.settings;
    let mut reassembler = Reassembler::new(
        s.fragment_ttl,
        s.max_pending_messages,
        ctx.state.settings.max_body_bytes,
    );
    let mut inflight = JoinSet::new();
    let mut every = ping_every(config, s);
    let mut next_ping = tokio::time::Instant::now();
    let mut awaiting_since: Option<Instant> = None;
    let mut last_frame = Instant::now();
    let mut watchdog = tokio::time::interval(
        (s.pong_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
    );
    let age = metrics::gauge!("ingress_long_connection_last_frame_age_seconds", "app_id" => app_id.clone());
    let end = loop {
        tokio::select! {
            _ = stopped(&mut ctx.stop) => break End::Stopped,
            _ = tokio::time::sleep_until(next_ping) => {
                let ping = frame::ping(service).encode_to_vec();
                if tx.send(Message::Binary(ping.into())).await.is_err() {
                    break End::Lost("writer closed".into());
                }
                awaiting_since.get_or_insert_with(Instant::now);
                next_ping = tokio::time::Instant::now() + every;
            }
            _ = watchdog.tick() => {
                age.set(last_frame.elapsed().as_secs_f64());
                if awaiting_since.is_some_and(|t| t.elapsed() > s.pong_timeout) {
                    break End::Lost(format!("watchdog: nothing received within {:?} of a ping", s.pong_timeout));
                }
            }
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            msg = stream.next() => {
                let bytes = match msg {
                    None | Some(Ok(Message::Close(_))) => break End::Lost("closed by the server".into()),
                    Some(Err(e)) => break End::Lost(format!("read failed: {e}")),
                    Some(Ok(Message::Binary(b))) => b,
                    // Text and WebSocket-level pings: alive, but not ours to handle.
                    Some(Ok(_)) => {
                        awaiting_since = None;
                        last_frame = Instant::now();
                        continue;
                    }
                };
                awaiting_since = None;
                last_frame = Instant::now();
                ctx.status.frame();
                let f = match Frame::decode(bytes.as_ref()) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(app_id = %app_id, error = %e, "undecodable frame ignored");
                        continue;
                    }
                };
                match frame::kind(&f) {
                    Kind::Pong => {
                        // A pong may carry new settings (events.md §7.5).
                        if let Some(c) = f
                            .payload
                            .as_deref()
                            .filter(|p| !p.is_empty())
                            .and_then(|p| serde_json::from_slice::<ClientConfig>(p).ok())
                        {
                            *config = c;
                            every = ping_every(config, s);
                            next_ping = next_ping.min(tokio::time::Instant::now() + every);
                        }
                    }
                    Kind::Ping => {}
                    Kind::Other(what) => tracing::debug!(app_id = %app_id, what, "frame ignored"),
                    Kind::Data => {
                        let num = |k: &str| f.header(k).and_then(|v| v.parse::<usize>().ok());
                        let (sum, seq) = (num("sum").unwrap_or(1), num("seq").unwrap_or(0));
                        let message_id = f.header("message_id").unwrap_or_default().to_string();
                        let payload = f.payload.clone().unwrap_or_default();
                        match reassembler.push(&message_id, sum, seq, payload, Instant::now()) {
                            Outcome::Pending => {}
                            Outcome::Refused(why) => tracing::warn!(app_id = %app_id, message_id, why, "fragment dropped; Feishu will re-push"),
                            Outcome::Complete(payload) => {
                                let state = ctx.state.clone();
                                let tx = tx.clone();
                                let app_id = app_id.clone();
                                inflight.spawn(async move {
                                    handle(&state, &app_id, f, payload, tx).await;
                                });
                            }
                        }
                    }
                }
            }
        }
    };
    // Graceful: stop reading, let in-flight frames finish (their acks still go out), close.
    let grace = ctx.state.settings.publish_timeout + Duration::from_secs(1);
    if tokio::time::timeout(grace, async {
        while inflight.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        inflight.abort_all();
    }
    let _ = tx.send(Message::Close(None)).await;
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    end
}

/// Publishes one complete message and acknowledges it: 200 only after the broker confirmed,
/// 500 (Feishu re-pushes) otherwise, 400 for what no retry can fix.
async fn handle(
    state: &State,
    app_id: &str,
    received: Frame,
    payload: Vec<u8>,
    tx: mpsc::Sender<Message>,
) {
    let started = Instant::now();
    let result = process(state, app_id, payload).await;
    let outcome = match &result {
        Ok((Answer::Duplicate, _)) => "duplicate",
        Ok(_) => "published",
        Err(e) => e.label(),
    };
    metrics::counter!("ingress_requests_total", "kind" => "long_connection", "outcome" => outcome)
        .increment(1);
    let (code, data): (u16, Option<&[u8]>) = match &result {
        Ok((_, true)) => (200, Some(b"{}")),
        Ok((_, false)) => (200, None),
        Err(IngressError::Unavailable(cause)) => {
            tracing::warn!(app_id, error = %cause, "event not persisted; acking 500 so Feishu re-pushes");
            (500, None)
        }
        Err(other) => {
            tracing::info!(app_id, error = %other, "long-connection message refused");
            (400, None)
        }
    };
    let ack = frame::ack(&received, code, data, started.elapsed().as_millis());
    // A closed socket loses only the ack: Feishu re-pushes, and the dedupe answers it.
    let _ = tx.send(Message::Binary(ack.encode_to_vec().into())).await;
}

/// Returns the answer and whether the message was a callback.
async fn process(
    state: &State,
    app_id: &str,
    payload: Vec<u8>,
) -> Result<(Answer, bool), IngressError> {
    // Plaintext after the authenticated handshake: no decryption, no token check (§7.1).
    let env = match envelope::parse(&payload)? {
        Inbound::Event(env) => env,
        Inbound::Challenge { .. } | Inbound::Encrypted(_) => {
            return Err(IngressError::Malformed(
                bridge_feishu::EnvelopeError::Unrecognised,
            ))
        }
    };
    if let Some(other) = env
        .app_id
        .as_deref()
        .filter(|a| !a.is_empty() && *a != app_id)
    {
        return Err(IngressError::AppMismatch(other.to_string()));
    }
    let callback = CALLBACK_TYPES.contains(&env.event_type.as_str());
    let kind = if callback {
        handler::Kind::Callback
    } else {
        handler::Kind::Event
    };
    let answer =
        handler::publish_once(state, app_id, &env, payload, kind, Delivery::LongConnection).await?;
    Ok((answer, callback))
}
