//! Long-connection mode (events.md §7), the server side: endpoint discovery
//! (`POST /callback/ws/endpoint`), a WebSocket speaking `pbbp2` frames, pongs carrying the
//! client settings, each event sent to one live connection of the app chosen at random,
//! payloads above `fragment_bytes` split into parts, the 3 s ack deadline (a missing or
//! non-200 ack is a failed attempt, retried on the ladder by `push`), and the 50-connection
//! limit refused at the handshake. Switches kill connections or stop answering pings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use bridge_contracts::pbbp2::{Frame, Header};
use futures_util::StreamExt;
use prost::Message as _;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::emulator::{lock, Emulator};

/// Feishu's limit of long connections per app (events.md §7.1).
pub const MAX_CONNECTIONS: usize = 50;
/// How long Feishu waits for the ack of a data frame.
pub const ACK_DEADLINE: Duration = Duration::from_secs(3);
/// Handshake auth code for "connection limit exceeded" (events.md §7.3).
pub const CODE_CONN_LIMIT: &str = "1000040350";
/// Endpoint discovery: wrong or missing credentials (a client error: not retried).
pub const CODE_NO_CREDENTIAL: i64 = 1000040344;

/// How an app receives events (开发者后台 › 事件与回调 › 订阅方式): one or the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subscription {
    #[default]
    Webhook,
    LongConnection,
}

/// The knobs of the long-connection side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WsSettings {
    /// `ClientConfig` sent with the endpoint and in every pong (seconds).
    #[serde(rename = "ClientConfig")]
    pub client_config: Value,
    /// Payloads longer than this are sent in parts (0: never split).
    pub fragment_bytes: usize,
    /// Connections allowed per app (Feishu: 50).
    pub max_connections: usize,
    /// false: pings go unanswered (a half-open connection, for watchdog tests).
    pub answer_pings: bool,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            client_config: json!({
                "ReconnectCount": -1,
                "ReconnectInterval": 120,
                "ReconnectNonce": 30,
                "PingInterval": 120,
            }),
            fragment_bytes: 0,
            max_connections: MAX_CONNECTIONS,
            answer_pings: true,
        }
    }
}

enum Out {
    Frame(Vec<u8>),
    /// Drop the socket without a close handshake.
    Kill,
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
}

#[derive(Default)]
pub struct WsHub {
    subscriptions: Mutex<HashMap<String, Subscription>>,
    settings: Mutex<WsSettings>,
    conns: Mutex<HashMap<String, Vec<Conn>>>,
    /// One-time tickets handed out by discovery: ticket -> app_id.
    tickets: Mutex<HashMap<String, String>>,
    /// SeqID of a data frame -> whoever waits for its ack.
    acks: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    next: AtomicU64,
    /// Every handshake refused for the connection limit.
    refused: AtomicU64,
}

const SERVICE_ID: i32 = 33554678;

fn data_frame(seq: u64, message_id: &str, sum: usize, i: usize, kind: &str, part: &[u8]) -> Frame {
    let h = |k: &str, v: String| Header {
        key: k.into(),
        value: v,
    };
    Frame {
        seq_id: seq,
        log_id: seq,
        service: SERVICE_ID,
        method: 1,
        headers: vec![
            h("type", kind.into()),
            h("message_id", message_id.into()),
            h("sum", sum.to_string()),
            h("seq", i.to_string()),
            h("trace_id", uuid::Uuid::new_v4().simple().to_string()),
        ],
        payload: Some(part.to_vec()),
        ..Default::default()
    }
}

impl Emulator {
    fn ws(&self) -> &WsHub {
        &self.inner.ws
    }

    /// Chooses how `app_id` receives events: its request URL, or its long connections.
    pub fn set_subscription(&self, app_id: &str, s: Subscription) {
        lock(&self.ws().subscriptions).insert(app_id.to_string(), s);
    }

    pub fn subscription(&self, app_id: &str) -> Subscription {
        lock(&self.ws().subscriptions)
            .get(app_id)
            .copied()
            .unwrap_or_default()
    }

    pub fn ws_settings(&self) -> WsSettings {
        lock(&self.ws().settings).clone()
    }

    /// New settings; live clients get the new `ClientConfig` with their next pong.
    pub fn set_ws_settings(&self, s: WsSettings) {
        *lock(&self.ws().settings) = s;
    }

    /// Live long connections of `app_id`.
    pub fn connections(&self, app_id: &str) -> usize {
        lock(&self.ws().conns).get(app_id).map_or(0, Vec::len)
    }

    /// Handshakes refused so far for exceeding the connection limit.
    pub fn refused_connections(&self) -> u64 {
        self.ws().refused.load(Ordering::Relaxed)
    }

    /// Drops every live connection of `app_id` (all apps when `None`) without a close
    /// handshake, as a network failure or a server restart would.
    pub fn kill_connections(&self, app_id: Option<&str>) -> usize {
        let mut conns = lock(&self.ws().conns);
        let mut n = 0;
        for (app, list) in conns.iter_mut() {
            if app_id.is_some_and(|a| a != app) {
                continue;
            }
            for c in list.drain(..) {
                let _ = c.tx.send(Out::Kill);
                n += 1;
            }
        }
        n
    }

    /// Sends `body` (an event or callback envelope) to one random live connection of the
    /// app and waits up to 3 s for the ack. Returns the ack's payload
    /// (`{"code":200,"data":...}`), or why there is none.
    pub(crate) async fn deliver_ws(&self, app_id: &str, body: &[u8]) -> Result<Value, String> {
        self.deliver_ws_via(app_id, body).await.1
    }

    /// Like [`Self::deliver_ws`], also saying which connection was chosen.
    pub(crate) async fn deliver_ws_via(
        &self,
        app_id: &str,
        body: &[u8],
    ) -> (Option<u64>, Result<Value, String>) {
        let hub = self.ws();
        let (conn, tx) = {
            let conns = lock(&hub.conns);
            let list = conns.get(app_id).filter(|l| !l.is_empty());
            let Some(list) = list else {
                return (None, Err("app not online: no long connection".into()));
            };
            let pick = rand::thread_rng().gen_range(0..list.len());
            (list[pick].id, list[pick].tx.clone())
        };
        let seq = hub.next.fetch_add(1, Ordering::Relaxed) + 1;
        let message_id = uuid::Uuid::new_v4().simple().to_string();
        let size = self.ws_settings().fragment_bytes;
        let parts: Vec<&[u8]> = if size > 0 && body.len() > size {
            body.chunks(size).collect()
        } else {
            vec![body]
        };
        let (ack_tx, ack_rx) = oneshot::channel();
        lock(&hub.acks).insert(seq, ack_tx);
        let sum = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let f = data_frame(seq, &message_id, sum, i, "event", part);
            if tx.send(Out::Frame(f.encode_to_vec())).is_err() {
                lock(&hub.acks).remove(&seq);
                return (Some(conn), Err("connection closed".into()));
            }
        }
        let r = tokio::time::timeout(ACK_DEADLINE, ack_rx).await;
        lock(&hub.acks).remove(&seq);
        let out = match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err("connection closed before the ack".into()),
            Err(_) => Err("no ack within 3 s".into()),
        };
        (Some(conn), out)
    }

    /// One delivery attempt over the long connection: the connection chosen, and the ack's
    /// code.
    pub(crate) async fn deliver_ws_status(
        &self,
        app_id: &str,
        body: &[u8],
    ) -> (Option<u64>, Result<u16, String>) {
        let (conn, r) = self.deliver_ws_via(app_id, body).await;
        let code = r.map(|v| v.get("code").and_then(Value::as_u64).unwrap_or(0) as u16);
        (conn, code)
    }

    /// The callback answer carried in an ack: base64 JSON in `data`.
    pub(crate) fn ack_data(v: &Value) -> Value {
        v.get("data")
            .and_then(Value::as_str)
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/callback/ws/endpoint", web::post().to(endpoint))
        .route("/ws/v2", web::get().to(connect));
}

#[derive(Deserialize)]
struct EndpointRequest {
    #[serde(rename = "AppID", default)]
    app_id: String,
    #[serde(rename = "AppSecret", default)]
    app_secret: String,
}

async fn endpoint(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    body: web::Json<EndpointRequest>,
) -> HttpResponse {
    let ok = emu
        .app(&body.app_id)
        .is_some_and(|a| !body.app_secret.is_empty() && a.app_secret == body.app_secret);
    if !ok {
        return HttpResponse::Ok().json(json!({
            "code": CODE_NO_CREDENTIAL,
            "msg": "app id or app secret is invalid",
        }));
    }
    let ticket = uuid::Uuid::new_v4().simple().to_string();
    lock(&emu.ws().tickets).insert(ticket.clone(), body.app_id.clone());
    let device_id = emu.ws().next.fetch_add(1, Ordering::Relaxed) + 1;
    let host = req.connection_info().host().to_string();
    let url = format!(
        "ws://{host}/ws/v2?fpid=493&aid={}&device_id={device_id}&access_key={}&service_id={SERVICE_ID}&ticket={ticket}",
        body.app_id,
        uuid::Uuid::new_v4().simple()
    );
    HttpResponse::Ok().json(json!({
        "code": 0,
        "msg": "ok",
        "data": {"URL": url, "ClientConfig": emu.ws_settings().client_config},
    }))
}

fn refuse(status: u16, auth_code: &str, msg: &str) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::FORBIDDEN);
    HttpResponse::build(code)
        .insert_header(("Handshake-Status", status.to_string()))
        .insert_header(("Handshake-Msg", msg.to_string()))
        .insert_header(("Handshake-Autherrcode", auth_code.to_string()))
        .finish()
}

async fn connect(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    body: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let ticket = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let Some(app_id) = lock(&emu.ws().tickets).remove(&ticket) else {
        // An unknown or used ticket: an auth failure the client may retry (new ticket).
        return Ok(refuse(514, "1000040351", "invalid ticket"));
    };
    let max = emu.ws_settings().max_connections;
    let (tx, rx) = mpsc::unbounded_channel();
    let id = emu.ws().next.fetch_add(1, Ordering::Relaxed) + 1;
    {
        let mut conns = lock(&emu.ws().conns);
        let list = conns.entry(app_id.clone()).or_default();
        if list.len() >= max {
            drop(conns);
            emu.ws().refused.fetch_add(1, Ordering::Relaxed);
            return Ok(refuse(514, CODE_CONN_LIMIT, "exceed conn limit"));
        }
        list.push(Conn { id, tx });
    }
    let (resp, session, stream) = match actix_ws::handle(&req, body) {
        Ok(x) => x,
        Err(e) => {
            if let Some(list) = lock(&emu.ws().conns).get_mut(&app_id) {
                list.retain(|c| c.id != id);
            }
            return Err(e);
        }
    };
    let emu = emu.get_ref().clone();
    actix_web::rt::spawn(async move {
        serve(&emu, session, stream, rx).await;
        if let Some(list) = lock(&emu.ws().conns).get_mut(&app_id) {
            list.retain(|c| c.id != id);
        }
    });
    Ok(resp)
}

async fn serve(
    emu: &Emulator,
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
    mut rx: mpsc::UnboundedReceiver<Out>,
) {
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Frame(b)) => {
                    if session.binary(b).await.is_err() {
                        return;
                    }
                }
                // Dropping the session and stream ends the connection without a close frame.
                Some(Out::Kill) | None => return,
            },
            msg = stream.next() => match msg {
                Some(Ok(actix_ws::Message::Binary(b))) => {
                    let Ok(f) = Frame::decode(b.as_ref()) else { continue };
                    on_frame(emu, &mut session, f).await;
                }
                Some(Ok(actix_ws::Message::Ping(p))) => {
                    let _ = session.pong(&p).await;
                }
                Some(Ok(actix_ws::Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = session.close(None).await;
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn on_frame(emu: &Emulator, session: &mut actix_ws::Session, f: Frame) {
    let kind = f.header("type").unwrap_or_default().to_string();
    match (f.method, kind.as_str()) {
        (0, "ping") => {
            let s = emu.ws_settings();
            if !s.answer_pings {
                return;
            }
            let pong = Frame {
                seq_id: 0,
                log_id: 0,
                service: f.service,
                method: 0,
                headers: vec![Header {
                    key: "type".into(),
                    value: "pong".into(),
                }],
                payload: Some(s.client_config.to_string().into_bytes()),
                ..Default::default()
            };
            let _ = session.binary(pong.encode_to_vec()).await;
        }
        (1, _) => {
            let ack: Value = f
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_slice(p).ok())
                .unwrap_or(Value::Null);
            if let Some(waiter) = lock(&emu.ws().acks).remove(&f.seq_id) {
                let _ = waiter.send(ack);
            }
        }
        _ => {}
    }
}

impl Emulator {
    /// Sends one event envelope over the app's long connection and waits for its ack (the
    /// benchmark's driver): the ack's code, or why there is none.
    pub async fn push_over_long_connection(
        &self,
        app_id: &str,
        body: &[u8],
    ) -> Result<u16, String> {
        self.deliver_ws_status(app_id, body).await.1
    }
}
