//! The test harness: a fresh database per app, a unique app id (so tests never see each
//! other's events), a queue bound to that app's events, a TCP proxy to cut the broker, and
//! typed helpers to build Feishu requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bridge_contracts::v1::FeishuEvent;
use bridge_feishu::EventCipher;
use bridge_runtime::settings::AppProvision;
use bridge_runtime::{Settings, Shutdown};
use feishu_bridge::{Application, Role};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use prost::Message as _;
use sea_orm::{ConnectionTrait, Database};
use secrecy::SecretString;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn random_app_id() -> String {
    let bytes: [u8; 8] = rand_bytes();
    format!("cli_{}", hex::encode(bytes))
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let u = uuid::Uuid::new_v4();
    for (i, b) in out.iter_mut().enumerate() {
        *b = u.as_bytes()[i % 16];
    }
    out
}

/// A new, empty PostgreSQL database.
pub async fn fresh_database() -> String {
    let name = format!("fb_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(PG_ADMIN_URL)
        .await
        .expect("PostgreSQL must be running");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create database");
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

pub fn master_key() -> SecretString {
    bridge_store::MasterKey::generate_base64()
}

/// One app's credentials, as Feishu and the bridge both know them.
#[derive(Clone)]
pub struct TestApp {
    pub app_id: String,
    pub app_secret: String,
    pub encrypt_key: Option<String>,
    pub verification_token: String,
}

impl TestApp {
    pub fn new(encrypted: bool) -> Self {
        Self {
            app_id: random_app_id(),
            app_secret: format!("secret-{}", uuid::Uuid::new_v4().simple()),
            encrypt_key: encrypted.then(|| format!("ek-{}", uuid::Uuid::new_v4().simple())),
            verification_token: format!("vt-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    pub fn provision(&self, enabled: bool) -> AppProvision {
        AppProvision {
            app_id: self.app_id.clone(),
            app_secret: SecretString::from(self.app_secret.clone()),
            encrypt_key: self.encrypt_key.clone().map(SecretString::from),
            verification_token: SecretString::from(self.verification_token.clone()),
            team_name: "Test team".into(),
            domain: None,
            enabled,
            qr_login_enabled: false,
            delivery: Default::default(),
        }
    }

    /// A schema 2.0 event envelope.
    pub fn event_json(&self, event_id: &str, event_type: &str) -> String {
        serde_json::json!({
            "schema": "2.0",
            "header": {
                "event_id": event_id,
                "event_type": event_type,
                "create_time": "1700000000123",
                "token": self.verification_token,
                "app_id": self.app_id,
                "tenant_key": "tenant-1",
            },
            "event": {"object": {"open_id": "ou_0123456789abcdef0123456789abcdef", "name": "张三"}},
        })
        .to_string()
    }

    /// The request Feishu would send for `plaintext`: encrypted and signed when the app has
    /// an Encrypt Key, plain otherwise.
    pub fn request(&self, plaintext: &str) -> FeishuRequest {
        match &self.encrypt_key {
            None => FeishuRequest {
                body: plaintext.as_bytes().to_vec(),
                headers: vec![],
            },
            Some(k) => {
                let c = EventCipher::new(k);
                let body =
                    serde_json::json!({"encrypt": c.encrypt(plaintext.as_bytes())}).to_string();
                let (ts, nonce) = (
                    "1700000000".to_string(),
                    uuid::Uuid::new_v4().simple().to_string(),
                );
                let sig = c.signature(&ts, &nonce, body.as_bytes());
                FeishuRequest {
                    body: body.into_bytes(),
                    headers: vec![
                        ("X-Lark-Request-Timestamp".into(), ts),
                        ("X-Lark-Request-Nonce".into(), nonce),
                        ("X-Lark-Signature".into(), sig),
                    ],
                }
            }
        }
    }
}

pub struct FeishuRequest {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// The running bridge.
pub struct Bridge {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub directory: Option<bridge_directory_sync::DirectorySync>,
    pub auth: Option<bridge_auth::Auth>,
    shutdown: Shutdown,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub struct BridgeOptions {
    pub apps: Vec<AppProvision>,
    pub broker_url: String,
    pub max_body_bytes: usize,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            apps: vec![],
            broker_url: AMQP_URL.into(),
            max_body_bytes: 1024 * 1024,
        }
    }
}

pub fn settings(opts: BridgeOptions, database_url: String) -> Settings {
    let mut s = Settings::default();
    s.http.listen = "127.0.0.1:0".parse().unwrap();
    s.http.workers = 2;
    s.http.shutdown_grace = Duration::from_secs(5);
    s.database.url = Some(SecretString::from(database_url));
    s.database.max_connections = 4;
    s.broker.url = Some(SecretString::from(opts.broker_url));
    s.broker.reconnect_min = Duration::from_millis(50);
    s.broker.reconnect_max = Duration::from_millis(300);
    // Queues of our own on the shared broker, gone a minute after the test.
    s.broker.queue_prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    s.broker.queue_expires = Some(Duration::from_secs(60));
    // Dozens of bridges start in one test run; a quorum queue costs a Raft group each.
    s.broker.quorum_queues = false;
    s.security.master_key = Some(master_key());
    s.ingress.max_body_bytes = opts.max_body_bytes;
    s.apps = opts.apps;
    s
}

impl Bridge {
    pub async fn start(opts: BridgeOptions) -> Self {
        let s = settings(opts, fresh_database().await);
        Self::start_with(s, Role::Ingress).await
    }

    pub async fn start_with(settings: Settings, role: Role) -> Self {
        let app = Application::build(settings, role)
            .await
            .expect("bridge starts");
        let addr = app.local_addr();
        let shutdown = app.shutdown();
        let directory = app.directory();
        let auth = app.auth();
        let task = tokio::spawn(app.run_until_stopped());
        Self {
            addr,
            http: reqwest::Client::new(),
            directory,
            auth,
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post(&self, path: &str, req: &FeishuRequest) -> reqwest::Response {
        let mut r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json; charset=utf-8")
            .body(req.body.clone());
        for (k, v) in &req.headers {
            r = r.header(k, v);
        }
        r.send().await.expect("request sent")
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics scraped")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn post_event(&self, app: &TestApp, plaintext: &str) -> reqwest::Response {
        self.post(
            &format!("/feishu/{}/events", app.app_id),
            &app.request(plaintext),
        )
        .await
    }

    /// The `/readyz` body.
    pub async fn readyz(&self) -> serde_json::Value {
        self.http
            .get(self.url("/readyz"))
            .send()
            .await
            .expect("readyz answered")
            .json()
            .await
            .expect("readyz JSON")
    }

    /// Waits until `/readyz` answers `want` (200 or 503), failing after `within`.
    pub async fn wait_ready(&self, want: u16, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let status = self
                .http
                .get(self.url("/readyz"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if status.as_ref().ok() == Some(&want) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz never answered {want} (last: {status:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("clean stop");
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A queue on the real RabbitMQ bound to `feishu.events` with `<app_id>.#`.
pub struct EventQueue {
    inner: BusQueue,
}

pub struct Received {
    pub routing_key: String,
    pub props: lapin::BasicProperties,
    pub event: FeishuEvent,
}

impl EventQueue {
    pub async fn bind(app_id: &str) -> Self {
        // The exchange exists already: the bridge declared the topology at start.
        Self {
            inner: BusQueue::bind("feishu.events", &format!("{app_id}.#")).await,
        }
    }

    pub async fn next(&mut self) -> Received {
        let m = self.inner.next().await;
        Received {
            routing_key: m.routing_key,
            event: FeishuEvent::decode(m.body.as_slice()).expect("FeishuEvent protobuf"),
            props: m.props,
        }
    }

    /// Publishes a sentinel event through the bridge and asserts it is the next message: proof
    /// that nothing else was published before it.
    pub async fn assert_nothing_else(&mut self, bridge: &Bridge, app: &TestApp) {
        let id = format!("sentinel-{}", uuid::Uuid::new_v4().simple());
        let r = bridge
            .post_event(app, &app.event_json(&id, "contact.user.updated_v3"))
            .await;
        assert_eq!(r.status(), 200, "sentinel accepted");
        let got = self.next().await;
        assert_eq!(
            got.event.event_id, id,
            "an unexpected message was published before the sentinel"
        );
    }
}

/// A queue of the test's own on the real RabbitMQ, bound to `exchange` with `pattern`.
pub struct BusQueue {
    _conn: lapin::Connection,
    consumer: lapin::Consumer,
}

pub struct BusMessage {
    pub routing_key: String,
    pub message_id: String,
    pub headers: std::collections::HashMap<String, String>,
    pub props: lapin::BasicProperties,
    pub body: Vec<u8>,
}

impl BusQueue {
    pub async fn bind(exchange: &str, pattern: &str) -> Self {
        let conn = lapin::Connection::connect(
            AMQP_URL,
            lapin::ConnectionProperties::default()
                .with_executor(tokio_executor_trait::Tokio::current())
                .with_reactor(tokio_reactor_trait::Tokio),
        )
        .await
        .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.exchange_declare(
            exchange,
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        let q = ch
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        ch.queue_bind(
            q.name().as_str(),
            exchange,
            pattern,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let consumer = ch
            .basic_consume(
                q.name().as_str(),
                "test",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Self {
            _conn: conn,
            consumer,
        }
    }

    pub async fn next(&mut self) -> BusMessage {
        let d = tokio::time::timeout(Duration::from_secs(20), self.consumer.next())
            .await
            .expect("a message within 20 s")
            .expect("consumer open")
            .expect("delivery");
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
        let mut headers = std::collections::HashMap::new();
        if let Some(h) = d.properties.headers() {
            for (k, v) in h.inner() {
                if let lapin::types::AMQPValue::LongString(s) = v {
                    headers.insert(
                        k.as_str().to_string(),
                        String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    );
                }
            }
        }
        BusMessage {
            routing_key: d.routing_key.as_str().to_string(),
            message_id: d
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
            headers,
            props: d.properties,
            body: d.data,
        }
    }
}

/// Runs a `SELECT COUNT(*) AS n ...` on the bridge's database.
pub async fn count_rows(settings: &Settings, sql: &str) -> i64 {
    use secrecy::ExposeSecret;
    let url = settings
        .database
        .url
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_string();
    let db = Database::connect(url).await.unwrap();
    let row = db
        .query_one(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// A TCP proxy in front of RabbitMQ that a test can cut and restore.
pub struct Proxy {
    pub addr: SocketAddr,
    down: watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (down, _) = watch::channel(false);
        let proxy = Arc::new(Self { addr, down });
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *p.down.borrow() {
                    drop(client);
                    continue;
                }
                let mut down = p.down.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down.wait_for(|d| *d) => {}
                    }
                });
            }
        });
        proxy
    }

    /// Cuts every connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.down.send_replace(true);
    }

    pub fn restore(&self) {
        self.down.send_replace(false);
    }
}

/// Waits until `check` holds, polling every 50 ms; fails with `what` after `within`.
pub async fn until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
