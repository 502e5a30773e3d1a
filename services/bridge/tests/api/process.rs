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

#[tokio::test]
async fn all_mode_runs_on_defaults_stops_cleanly_and_never_logs_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::new(true);
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[database]\ndata_dir = \"{}\"\n[[apps]]\napp_id = \"{}\"\napp_secret = \"{}\"\nencrypt_key = \"{}\"\nverification_token = \"{}\"\nteam_name = \"Demo\"\n",
            dir.path().join("data").display(),
            app.app_id,
            app.app_secret,
            app.encrypt_key.as_deref().unwrap(),
            app.verification_token
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "all"])
        .env("BRIDGE__TELEMETRY__LOG_LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let mut log = Vec::new();
    let line = wait_for_line(&rx, &mut log, "http listening");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = v["addr"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/feishu/{}/events", app.app_id);

    // An accepted event (into the embedded bus), a refused token, a challenge.
    for body in [
        app.event_json("p-1", "contact.user.created_v3"),
        app.event_json("p-2", "contact.user.created_v3")
            .replace(&app.verification_token, "wrong"),
    ] {
        let req = app.request(&body);
        let mut r = http.post(&url).body(req.body.clone());
        for (k, v) in &req.headers {
            r = r.header(k, v);
        }
        let status = r.send().await.unwrap().status().as_u16();
        assert!(status == 200 || status == 401, "{status}");
    }
    let ready = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_exit(&mut child);
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        log.push(l);
    }
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
