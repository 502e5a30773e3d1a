//! The binary as an operator runs it: `all` on its no-server defaults, a clean stop on SIGTERM,
//! secrets never in the logs, and clear startup errors.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::{fresh_database, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_feishu-bridge");

/// Reads the child's output lines on a thread; returns them through a channel.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    for out in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, log: &mut Vec<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line with {what}; log: {log:#?}"));
        log.push(line.clone());
        if line.contains(what) {
            return line;
        }
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM, asserts a clean exit, and adds the output lines still coming to `log`.
fn terminate_cleanly(
    child: &mut Child,
    rx: &std::sync::mpsc::Receiver<String>,
    log: &mut Vec<String>,
) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_exit(child);
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        log.push(l);
    }
}

/// `feishu-bridge all` as a child, on a settings file in `dir` binding `app` (plus `extra`
/// TOML) and with `env`; returns it with its output lines, the lines read so far and the
/// address it listens on.
fn spawn_all(
    dir: &std::path::Path,
    app: &TestApp,
    extra: &str,
    env: &[(&str, &str)],
) -> (Child, mpsc::Receiver<String>, Vec<String>, String) {
    let config = dir.join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[database]\ndata_dir = \"{}\"\n{extra}\n[[apps]]\napp_id = \"{}\"\napp_secret = \"{}\"\nencrypt_key = \"{}\"\nverification_token = \"{}\"\nteam_name = \"Demo\"\n",
            dir.join("data").display(),
            app.app_id,
            app.app_secret,
            app.encrypt_key.as_deref().unwrap(),
            app.verification_token
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "all"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let mut log = Vec::new();
    let line = wait_for_line(&rx, &mut log, "http listening");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = v["addr"].as_str().unwrap().to_string();
    (child, rx, log, addr)
}

#[tokio::test]
async fn all_mode_runs_on_defaults_stops_cleanly_and_never_logs_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::new(true);
    let (mut child, rx, mut log, addr) = spawn_all(
        dir.path(),
        &app,
        "",
        &[("BRIDGE__TELEMETRY__LOG_LEVEL", "debug")],
    );
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/feishu/{}/events", app.app_id);

    // An accepted event (into the embedded bus) and a refused token.
    for (body, want) in [
        (app.event_json("p-1", "contact.user.created_v3"), 200),
        (
            app.event_json("p-2", "contact.user.created_v3")
                .replace(&app.verification_token, "wrong"),
            401,
        ),
    ] {
        let req = app.request(&body);
        let mut r = http.post(&url).body(req.body.clone());
        for (k, v) in &req.headers {
            r = r.header(k, v);
        }
        assert_eq!(r.send().await.unwrap().status().as_u16(), want);
    }
    let ready = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    terminate_cleanly(&mut child, &rx, &mut log);
    let text = log.join("\n");
    assert!(text.contains("\"stopped\""), "{text}");
    let master = std::fs::read_to_string(dir.path().join("data/master.key")).unwrap();
    assert_eq!(master.trim().len(), 44, "a generated 32-byte key in base64");
    for secret in [
        app.app_secret.as_str(),
        app.encrypt_key.as_deref().unwrap(),
        app.verification_token.as_str(),
        master.trim(),
    ] {
        assert!(!text.contains(secret), "a secret appeared in the logs");
    }
    // The accepted event waits in the embedded bus's table, durable across the stop.
    let db = sea_orm::Database::connect(format!(
        "sqlite://{}?mode=ro",
        dir.path().join("data/feishu-bridge.sqlite").display()
    ))
    .await
    .unwrap();
    use sea_orm::ConnectionTrait;
    let row = db
        .query_one(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM bus_messages WHERE routing_key LIKE '%contact.user.created_v3'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 1);
}

fn run_failing(args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("BRIDGE__HTTP__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success(), "expected a startup failure");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn startup_errors_are_clear() {
    let db = fresh_database().await;
    let key = bridge_store::MasterKey::generate_base64();
    use secrecy::ExposeSecret;
    let key = key.expose_secret().to_string();

    let out = run_failing(
        &["ingress"],
        &[
            ("BRIDGE__DATABASE__URL", db.clone()),
            ("BRIDGE__SECURITY__MASTER_KEY", key.clone()),
            ("BRIDGE__BROKER__URL", "embedded".into()),
        ],
    );
    assert!(
        out.contains("embedded bus only connects services inside one `feishu-bridge all`"),
        "{out}"
    );

    let out = run_failing(
        &["ingress"],
        &[
            ("BRIDGE__DATABASE__URL", db.clone()),
            ("BRIDGE__BROKER__URL", crate::helpers::AMQP_URL.into()),
        ],
    );
    assert!(out.contains("security.master_key"), "{out}");

    let out = run_failing(&["ingress"], &[("BRIDGE__INGRESS__MAX_BODY", "1".into())]);
    assert!(out.contains("max_body"), "{out}");

    let out = run_failing(
        &["ingress"],
        &[
            ("BRIDGE__DATABASE__URL", db),
            ("BRIDGE__SECURITY__MASTER_KEY", "c2hvcnQ=".into()),
            ("BRIDGE__BROKER__URL", crate::helpers::AMQP_URL.into()),
        ],
    );
    assert!(
        out.contains("security.master_key must be 32 bytes"),
        "{out}"
    );
}

/// A stand-in OTLP collector: answers the HTTP/2 handshake (its SETTINGS, and an ACK of the
/// client's) and keeps every byte the exporter sends. The export request itself is never
/// answered; the protobuf of the spans travels uncompressed, so their names can be found in
/// the bytes.
async fn fake_collector() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                // SETTINGS (empty), then SETTINGS with ACK.
                let _ = sock.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
                let _ = sock.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await;
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    keep.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (addr, seen)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// With `telemetry.otlp_endpoint` set, request spans are exported over OTLP, and a SIGTERM
/// flushes what is buffered: the periodic export is put an hour away, so the spans can only
/// arrive through the shutdown. (Two runtime threads: the collector keeps reading while the
/// test blocks waiting for the process to exit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_and_flushed_on_sigterm() {
    let (collector, seen) = fake_collector().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::new(true);
    let (mut child, rx, mut log, addr) = spawn_all(
        dir.path(),
        &app,
        &format!("[telemetry]\notlp_endpoint = \"http://{collector}\""),
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "3600000"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ],
    );
    let req = app.request(&app.event_json("otlp-1", "contact.user.created_v3"));
    let mut r = reqwest::Client::new()
        .post(format!("http://{addr}/feishu/{}/events", app.app_id))
        .body(req.body.clone());
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    assert_eq!(r.send().await.unwrap().status(), 200);
    assert!(
        !contains(&seen.lock().unwrap(), "feishu_webhook"),
        "nothing is exported before the flush"
    );
    terminate_cleanly(&mut child, &rx, &mut log);
    let bytes = seen.lock().unwrap().clone();
    assert!(
        contains(&bytes, "feishu_webhook"),
        "the request's span reached the collector ({} bytes); log: {log:#?}",
        bytes.len()
    );
    assert!(
        contains(&bytes, "feishu-bridge-all"),
        "with the service name"
    );
}
