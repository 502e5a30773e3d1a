//! Long-connection endpoint discovery and the handshake's refusals (the WebSocket itself is
//! exercised end to end by the bridge's tests).

use feishu_emulator::{demo, WsSettings};
use serde_json::{json, Value};

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_answers_a_ticket_url_or_a_client_error() {
    let app = TestApp::generated(5, 1, 1).await;
    let post = |secret: &str| {
        app.http
            .post(app.url("/callback/ws/endpoint"))
            .header("locale", "zh")
            .json(&json!({"AppID": demo::APP_ID, "AppSecret": secret}))
            .send()
    };
    let v: Value = post("wrong").await.unwrap().json().await.unwrap();
    assert_eq!(v["code"], 1000040344, "{v}");
    let v: Value = post(demo::APP_SECRET).await.unwrap().json().await.unwrap();
    assert_eq!(v["code"], 0, "{v}");
    let url = url::Url::parse(v["data"]["URL"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert!(q.contains_key("ticket") && q.contains_key("device_id"));
    assert_eq!(q["service_id"], "33554678");
    assert_eq!(
        v["data"]["ClientConfig"],
        WsSettings::default().client_config
    );

    // A ticket is single use and must be known: otherwise a retryable 514 at the handshake.
    let r = app
        .http
        .get(app.url("/ws/v2?ticket=nope"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 514);
    assert_eq!(r.headers()["Handshake-Status"], "514");
    assert_ne!(r.headers()["Handshake-Autherrcode"], "1000040350");

    // Beyond the per-app limit: 514 with auth code 1000040350 (connection limit).
    app.emu.set_ws_settings(WsSettings {
        max_connections: 0,
        ..WsSettings::default()
    });
    let v: Value = post(demo::APP_SECRET).await.unwrap().json().await.unwrap();
    let url = v["data"]["URL"]
        .as_str()
        .unwrap()
        .replace("ws://", "http://");
    let r = app
        .http
        .get(url)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["Handshake-Autherrcode"], "1000040350");
    assert_eq!(app.emu.refused_connections(), 1);
}
