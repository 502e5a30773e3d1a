//! Load generator for `make bench`: drives the ingress (or any Feishu webhook receiver) with
//! pre-built, distinct, encrypted and signed events, and measures the ceiling a bare lapin
//! publisher with confirms reaches on the same exchange, queue and message size.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bridge_contracts::v1::{Delivery, FeishuEvent};
use bridge_feishu::EventCipher;
use clap::{Args, Parser, Subcommand};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueuePurgeOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use prost::Message as _;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// POST events to a webhook URL at a fixed concurrency (closed loop) or a fixed rate.
    Webhook(WebhookArgs),
    /// A bare lapin publisher: the same messages to the same exchange and queue, persistent,
    /// confirmed, at a fixed concurrency.
    Ceiling {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        amqp: String,
        #[arg(long)]
        app_id: String,
        #[arg(long, default_value_t = 50_000)]
        messages: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 4)]
        channels: usize,
    },
    /// Whole logins per second: through the bridge (`--bridge`), or the same Feishu round trips
    /// made directly against the emulator (no `--bridge`: the baseline).
    Logins {
        #[arg(long)]
        bridge: Option<String>,
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        app_id: String,
        #[arg(long)]
        app_secret: String,
        /// Comma-separated user_ids to log in as, in turn.
        #[arg(long, value_delimiter = ',')]
        users: Vec<String>,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Access-token verifications per second with the shared helper, next to bare Ed25519.
    JwtVerify {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Publishes contact events straight to `feishu.events` (as the ingress would) and measures
    /// how fast directory-sync applies them, by watching its processed-event table.
    ContactEvents {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        amqp: String,
        /// The bridge's database.
        #[arg(long)]
        db: String,
        #[arg(long)]
        app_id: String,
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Department every generated user joins (an existing one avoids placeholders).
        #[arg(long, default_value = "0")]
        department: String,
    },
    /// The raw rate of single-row upsert transactions on the same database, at a given
    /// number of connections (the baseline for contact events).
    PgUpsert {
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 2)]
        connections: usize,
        #[arg(long, default_value_t = 20_000)]
        transactions: usize,
    },
    /// Plays Feishu for the long-connection benchmark: serves discovery and the WebSocket on
    /// `--listen`, waits for the bridge to connect, then pushes events over the connection.
    Longconn {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        app_id: String,
        #[arg(long)]
        app_secret: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        encrypt_key: String,
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Start only once this file exists (the script's signal).
        #[arg(long)]
        go_file: Option<String>,
    },
    /// Publishes notification requests, each to one distinct user, to `notify.requests`.
    NotifyRequests {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        amqp: String,
        #[arg(long)]
        app_id: String,
        #[arg(long, default_value_t = 3000)]
        count: usize,
        /// The first generated user (`u0000000` is 0).
        #[arg(long, default_value_t = 0)]
        first_user: usize,
    },
    /// Empties a queue (after a run).
    Purge {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        amqp: String,
        #[arg(long)]
        queue: String,
    },
}

#[derive(Args)]
struct WebhookArgs {
    /// e.g. http://127.0.0.1:8080/feishu/cli_.../events
    #[arg(long)]
    url: String,
    #[arg(long)]
    app_id: String,
    #[arg(long)]
    encrypt_key: String,
    #[arg(long)]
    token: String,
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop: send at this many requests per second instead of as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// A label printed with the result.
    #[arg(long, default_value = "webhook")]
    label: String,
    /// Client threads. One (the default) keeps the client's own CPU, which competes with
    /// the server on this machine, lowest (like `wrk -t1`): no work stealing between threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// A realistic contact.user.updated_v3 envelope of about 1.2 KB.
fn event_json(app_id: &str, token: &str, i: usize) -> String {
    serde_json::json!({
        "schema": "2.0",
        "header": {
            "event_id": format!("bench-{}-{i:08}", std::process::id()),
            "event_type": "contact.user.updated_v3",
            "create_time": "1700000000123",
            "token": token,
            "app_id": app_id,
            "tenant_key": "736588c9260f175d",
        },
        "event": {
            "object": {
                "open_id": format!("ou_{:032x}", i),
                "union_id": format!("on_{:032x}", i),
                "user_id": format!("u{i:07}"),
                "name": "张三",
                "en_name": "San Zhang",
                "nickname": "Sunny",
                "email": format!("user{i}@example.com"),
                "enterprise_email": format!("user{i}@corp.example.com"),
                "job_title": "Software Engineer",
                "mobile": "+8613800000000",
                "gender": 1,
                "avatar": {"avatar_72": "https://example.com/a72.png", "avatar_240": "https://example.com/a240.png", "avatar_640": "https://example.com/a640.png", "avatar_origin": "https://example.com/a.png"},
                "status": {"is_frozen": false, "is_resigned": false, "is_activated": true, "is_exited": false, "is_unjoin": false},
                "department_ids": ["od-4e6ac4d14bcd5071a37a39de902c7141", "od-5e6ac4d14bcd5071a37a39de902c7141"],
                "leader_user_id": "ou_3985a4f5b4b0a2a1b7ab4b0a2a1b7ab4",
                "city": "杭州", "country": "CN", "work_station": "F1-001",
                "join_time": 1615381702, "is_tenant_manager": false,
                "employee_no": format!("E{i:06}"), "employee_type": 1,
            },
            "old_object": {"job_title": "Engineer", "department_ids": ["od-4e6ac4d14bcd5071a37a39de902c7141"]}
        }
    })
    .to_string()
}

mod auth;
mod directory;
mod http1;
mod longconn;
mod notify;

struct Prepared {
    body: bytes::Bytes,
    ts: String,
    nonce: String,
    sig: String,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// CPU time this process has used so far (user + system), in clock ticks, read from
/// `/proc/self/stat`; 0 where that cannot be read.
pub(crate) fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    field(11) + field(12)
}

/// CPU seconds this process used since `cpu0` (from [`cpu_ticks`]); Linux counts ticks of
/// 1/100 s.
pub(crate) fn cpu_seconds_since(cpu0: u64) -> f64 {
    cpu_ticks().saturating_sub(cpu0) as f64 / 100.0
}

pub(crate) fn report(
    label: &str,
    n: usize,
    errors: usize,
    elapsed: Duration,
    mut lat: Vec<Duration>,
    cpu0: u64,
) {
    lat.sort();
    let rate = n as f64 / elapsed.as_secs_f64();
    // One line of JSON, parsed by bench/ingress.sh.
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{}",
            serde_json::json!({
                "label": label,
                "requests": n,
                "errors": errors,
                "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                "per_second": rate.round(),
                "p50_ms": (percentile(&lat, 0.50).as_secs_f64() * 1e5).round() / 100.0,
                "p99_ms": (percentile(&lat, 0.99).as_secs_f64() * 1e5).round() / 100.0,
                // This process's CPU seconds over the measured phase (not the preparation).
                "cpu_s": cpu_seconds_since(cpu0),
            })
        );
    }
}

async fn webhook(a: WebhookArgs) -> anyhow::Result<()> {
    let WebhookArgs {
        url,
        app_id,
        encrypt_key: key,
        token,
        events,
        concurrency,
        rate,
        label,
        threads: _,
    } = a;
    let cipher = EventCipher::new(&key);
    let prepared: Arc<Vec<Prepared>> = Arc::new(
        (0..events)
            .map(|i| {
                let body = serde_json::json!({"encrypt": cipher.encrypt(event_json(&app_id, &token, i).as_bytes())}).to_string();
                let ts = "1700000000".to_string();
                let nonce = format!("n{i}");
                let sig = cipher.signature(&ts, &nonce, body.as_bytes());
                Prepared { body: bytes::Bytes::from(body), ts, nonce, sig }
            })
            .collect(),
    );
    let target = url::Url::parse(&url).context("--url")?;
    let host = target.host_str().context("--url has no host")?.to_string();
    let port = target
        .port_or_known_default()
        .context("--url has no port")?;
    let path = match target.query() {
        Some(q) => format!("{}?{q}", target.path()),
        None => target.path().to_string(),
    };
    // Whole requests, serialised once: the client side of the benchmark costs next to nothing.
    let requests: Arc<Vec<bytes::Bytes>> = Arc::new(
        prepared
            .iter()
            .map(|p| {
                let mut r = format!(
                    "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json; charset=utf-8\r\nX-Lark-Request-Timestamp: {}\r\nX-Lark-Request-Nonce: {}\r\nX-Lark-Signature: {}\r\nContent-Length: {}\r\n\r\n",
                    p.ts, p.nonce, p.sig, p.body.len()
                )
                .into_bytes();
                r.extend_from_slice(&p.body);
                bytes::Bytes::from(r)
            })
            .collect(),
    );
    let addr = format!("{host}:{port}");
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_ticks();
    let started = Instant::now();
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let workers = (0..concurrency).map(|_| {
        let (requests, next, errors, addr) =
            (requests.clone(), next.clone(), errors.clone(), addr.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut conn: Option<http1::Conn> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests.len() {
                    break;
                }
                if let Some(iv) = interval {
                    // Open loop: request i is due at started + i * interval.
                    let due = started + iv * i as u32;
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                if conn.is_none() {
                    conn = http1::Conn::open(&addr).await.ok();
                }
                let ok = match conn.as_mut() {
                    Some(c) => match c.round_trip(&requests[i]).await {
                        Ok(status) => (200..300).contains(&status),
                        Err(_) => {
                            conn = None;
                            false
                        }
                    },
                    None => false,
                };
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed());
            }
            lat
        })
    });
    let mut lat = Vec::with_capacity(events);
    for w in futures_util::future::join_all(workers).await {
        lat.extend(w?);
    }
    report(
        &label,
        events,
        errors.load(Ordering::Relaxed),
        started.elapsed(),
        lat,
        cpu0,
    );
    Ok(())
}

pub(crate) async fn connect(amqp: &str) -> anyhow::Result<lapin::Connection> {
    lapin::Connection::connect(
        amqp,
        lapin::ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio),
    )
    .await
    .context("connecting to RabbitMQ")
}

async fn ceiling(
    amqp: String,
    app_id: String,
    messages: usize,
    concurrency: usize,
    channels: usize,
) -> anyhow::Result<()> {
    let conn = connect(&amqp).await?;
    let mut chans = Vec::new();
    for _ in 0..channels.max(1) {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        chans.push(ch);
    }
    let chans = Arc::new(chans);
    // The same body the ingress would publish: a FeishuEvent carrying the decrypted JSON.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..messages)
            .map(|i| {
                FeishuEvent {
                    event_id: format!("ceiling-{i}"),
                    event_type: "contact.user.updated_v3".into(),
                    app_id: app_id.clone(),
                    tenant_key: "736588c9260f175d".into(),
                    create_time: "1700000000123".into(),
                    schema: "2.0".into(),
                    delivery: Delivery::Webhook as i32,
                    received_at_ms: 1_700_000_000_000,
                    payload: event_json(&app_id, "token", i).into_bytes(),
                    create_time_ms: 1_700_000_000_123,
                    is_callback: false,
                }
                .encode_to_vec()
            })
            .collect(),
    );
    let key = format!("{app_id}.contact.user.updated_v3");
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_ticks();
    let started = Instant::now();
    let workers = (0..concurrency).map(|w| {
        let (chans, bodies, next, key, app) = (
            chans.clone(),
            bodies.clone(),
            next.clone(),
            key.clone(),
            app_id.clone(),
        );
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    break;
                }
                let ch = &chans[(w + i) % chans.len()];
                let t = Instant::now();
                // The very properties the ingress sets: same message, same bytes on the wire.
                let mut headers = FieldTable::default();
                for (k, v) in [
                    ("traceparent", format!("00-{:032x}-{:016x}-00", i, i)),
                    ("cloudEvents:specversion", "1.0".to_string()),
                    ("cloudEvents:id", format!("ceiling-{i}")),
                    ("cloudEvents:source", format!("urn:feishu:app:{app}")),
                    (
                        "cloudEvents:type",
                        "feishu.contact.user.updated_v3".to_string(),
                    ),
                    ("cloudEvents:time", "2023-11-14T22:13:20.123Z".to_string()),
                    ("cloudEvents:subject", "736588c9260f175d".to_string()),
                ] {
                    headers.insert(k.into(), AMQPValue::LongString(v.into()));
                }
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("ceiling-{i}").into())
                    .with_content_type("application/x-protobuf".into())
                    .with_type("feishu_bridge.v1.FeishuEvent".into())
                    .with_timestamp(1_700_000_000)
                    .with_headers(headers);
                let ok = match ch
                    .basic_publish(
                        "feishu.events",
                        &key,
                        BasicPublishOptions::default(),
                        &bodies[i],
                        props,
                    )
                    .await
                {
                    Ok(confirm) => matches!(confirm.await, Ok(Confirmation::Ack(_))),
                    Err(_) => false,
                };
                if !ok {
                    errors += 1;
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        })
    });
    let mut lat = Vec::with_capacity(messages);
    let mut errors = 0;
    for w in futures_util::future::join_all(workers).await {
        let (l, e) = w?;
        lat.extend(l);
        errors += e;
    }
    report(
        "lapin-ceiling",
        messages,
        errors,
        started.elapsed(),
        lat,
        cpu0,
    );
    let _ = conn.close(200, "done").await;
    Ok(())
}

async fn purge(amqp: String, queue: String) -> anyhow::Result<()> {
    let conn = connect(&amqp).await?;
    let ch = conn.create_channel().await?;
    ch.queue_purge(&queue, QueuePurgeOptions::default()).await?;
    let _ = conn.close(200, "done").await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cmd = Cli::parse().cmd;
    let mut runtime = match &cmd {
        Cmd::Webhook(a) if a.threads <= 1 => tokio::runtime::Builder::new_current_thread(),
        Cmd::Webhook(a) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(a.threads);
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(cmd))
}

async fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Webhook(a) => webhook(a).await,
        Cmd::Ceiling {
            amqp,
            app_id,
            messages,
            concurrency,
            channels,
        } => ceiling(amqp, app_id, messages, concurrency, channels).await,
        Cmd::Purge { amqp, queue } => purge(amqp, queue).await,
        Cmd::Longconn {
            listen,
            app_id,
            app_secret,
            token,
            encrypt_key,
            events,
            concurrency,
            go_file,
        } => {
            longconn::run(longconn::Args {
                listen,
                app_id,
                app_secret,
                token,
                encrypt_key,
                events,
                concurrency,
                go_file,
            })
            .await
        }
        Cmd::Logins {
            bridge,
            emulator,
            app_id,
            app_secret,
            users,
            concurrency,
            seconds,
        } => {
            auth::logins(auth::LoginArgs {
                bridge,
                emulator,
                app_id,
                app_secret,
                users,
                concurrency,
                seconds,
            })
            .await
        }
        Cmd::JwtVerify { seconds, threads } => auth::jwt_verify(seconds, threads).await,
        Cmd::NotifyRequests {
            amqp,
            app_id,
            count,
            first_user,
        } => notify::requests(&amqp, &app_id, count, first_user).await,
        Cmd::ContactEvents {
            amqp,
            db,
            app_id,
            events,
            department,
        } => directory::contact_events(&amqp, &db, &app_id, events, &department).await,
        Cmd::PgUpsert {
            db,
            connections,
            transactions,
        } => directory::pg_upsert(&db, connections, transactions).await,
    }
}
