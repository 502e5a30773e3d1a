//! Long-connection mode against the emulator's WebSocket, real RabbitMQ and PostgreSQL:
//! exactly-once publishing, fragments, a withheld ack while the broker is down, killed and
//! silent connections, terminal errors, two replicas, and webhook + long connection together.

use std::collections::HashSet;
use std::time::Duration;

use bridge_contracts::v1::Delivery;
use bridge_runtime::settings::DeliveryMode;
use bridge_runtime::Settings;
use feishu_bridge::Role;
use feishu_emulator::{Emulator, GenerateSpec, RunningEmulator, Subscription, WsSettings};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::{
    fresh_database, random_app_id, settings, until, Bridge, BridgeOptions, EventQueue, Proxy,
    TestApp,
};

struct Lc {
    emu: Emulator,
    running: RunningEmulator,
    app: TestApp,
    user: String,
}

impl Lc {
    async fn new(tweak: impl FnOnce(&mut WsSettings)) -> Self {
        let emu = Emulator::generate(GenerateSpec {
            users: 3,
            departments: 1,
            seed: 11,
        });
        let mut s = emu.settings();
        // The retry ladder (15 s, 5 min, ...) a hundred times faster.
        s.event_time_factor = 0.01;
        emu.set_settings(s).unwrap();
        let mut ws = WsSettings {
            client_config: json!({
                "ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 1, "PingInterval": 1,
            }),
            ..Default::default()
        };
        tweak(&mut ws);
        emu.set_ws_settings(ws);
        let mut app = feishu_emulator::generate::demo_app();
        app.app_id = random_app_id();
        emu.add_app(app.clone()).unwrap();
        emu.set_subscription(&app.app_id, Subscription::LongConnection);
        let user = emu.snapshot().tenants[0]
            .users
            .keys()
            .next()
            .unwrap()
            .clone();
        let running = emu.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let app = TestApp {
            app_id: app.app_id.clone(),
            app_secret: app.app_secret.clone(),
            encrypt_key: app.encrypt_key.clone(),
            verification_token: app.verification_token.clone(),
        };
        Self {
            emu,
            running,
            app,
            user,
        }
    }

    fn settings(
        &self,
        delivery: DeliveryMode,
        database: String,
        broker: Option<String>,
    ) -> Settings {
        let mut p = self.app.provision(true);
        p.delivery = delivery;
        let mut s = settings(
            BridgeOptions {
                apps: vec![p],
                broker_url: broker.unwrap_or_else(|| crate::helpers::AMQP_URL.into()),
                ..Default::default()
            },
            database,
        );
        s.feishu.base_url = Some(self.running.base_url().parse().unwrap());
        s.ingress.long_connection.pong_timeout = Duration::from_millis(1500);
        s.ingress.long_connection.max_ping_interval = Duration::from_secs(1);
        s
    }

    async fn bridge(&self, delivery: DeliveryMode) -> Bridge {
        let s = self.settings(delivery, fresh_database().await, None);
        Bridge::start_with(s, Role::Ingress).await
    }

    async fn wait_connections(&self, n: usize) {
        until(
            &format!("{n} long connections"),
            Duration::from_secs(15),
            || async { self.emu.connections(&self.app.app_id) == n },
        )
        .await;
    }

    /// A user messages the bot: one `im.message.receive_v1` event; returns its event id.
    fn emit(&self, text: &str) -> String {
        self.emu
            .user_messages_bot(&self.app.app_id, &self.user, text)
            .unwrap();
        self.emu.events().last().unwrap()["header"]["event_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Receives `ids.len()` events and asserts they are exactly `ids`, over the long connection.
    async fn receive_exactly(&self, q: &mut EventQueue, ids: &[String]) {
        let mut got = HashSet::new();
        for _ in 0..ids.len() {
            let r = q.next().await;
            assert_eq!(r.event.delivery, Delivery::LongConnection as i32);
            assert!(
                got.insert(r.event.event_id.clone()),
                "published twice: {}",
                r.event.event_id
            );
        }
        let want: HashSet<String> = ids.iter().cloned().collect();
        assert_eq!(got, want);
    }
}

async fn readyz(bridge: &Bridge) -> Value {
    bridge.readyz().await
}

fn app_state(ready: &Value, app_id: &str) -> Value {
    ready["checks"]["long_connection"]["apps"][app_id].clone()
}

#[tokio::test]
async fn events_over_the_long_connection_are_published_once_and_acked() {
    let w = Lc::new(|_| {}).await;
    let mut q = EventQueue::bind(&w.app.app_id).await;
    let bridge = w.bridge(DeliveryMode::LongConnection).await;
    w.wait_connections(1).await;
    let ids: Vec<String> = (0..10).map(|i| w.emit(&format!("hello {i}"))).collect();
    w.receive_exactly(&mut q, &ids).await;
    // Every delivery was acknowledged 200 on its first attempt.
    until("every ack recorded", Duration::from_secs(5), || async {
        w.emu.push_log().iter().filter(|a| a.ok).count() == ids.len()
    })
    .await;
    assert!(w.emu.push_log().iter().all(|a| a.ok
        && a.attempt == 0
        && a.url
            .as_deref()
            .is_some_and(|u| u.starts_with("long-connection"))));
    let ready = readyz(&bridge).await;
    let state = app_state(&ready, &w.app.app_id);
    assert_eq!(state["state"], "connected", "{ready}");
    assert_eq!(state["connections"], 1);
    assert_eq!(ready["checks"]["long_connection"]["status"], "ok");
    let metrics = bridge.metrics().await;
    assert!(
        metrics.contains("ingress_long_connection_connected"),
        "{metrics}"
    );
    q.assert_nothing_else(&bridge, &w.app).await;
    bridge.stop().await;
    // Graceful shutdown closed the connection.
    w.wait_connections(0).await;
}

#[tokio::test]
async fn fragmented_events_are_reassembled() {
    let w = Lc::new(|s| s.fragment_bytes = 256).await;
    let mut q = EventQueue::bind(&w.app.app_id).await;
    let bridge = w.bridge(DeliveryMode::LongConnection).await;
    w.wait_connections(1).await;
    let text = "长连接".repeat(400);
    let id = w.emit(&text);
    let r = q.next().await;
    assert_eq!(r.event.event_id, id);
    let sent = w.emu.events().last().unwrap().clone();
    let got: Value = serde_json::from_slice(&r.event.payload).unwrap();
    assert_eq!(got, sent, "the payload is the whole envelope");
    assert!(sent.to_string().len() > 256 * 4, "it was split");
    bridge.stop().await;
}

#[tokio::test]
async fn an_ack_withheld_while_the_broker_is_down_leads_to_redelivery() {
    let w = Lc::new(|_| {}).await;
    let proxy = Proxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let mut q = EventQueue::bind(&w.app.app_id).await;
    let s = w.settings(
        DeliveryMode::LongConnection,
        fresh_database().await,
        Some(format!("amqp://guest:guest@{}/%2f", proxy.addr)),
    );
    let bridge = Bridge::start_with(s, Role::Ingress).await;
    w.wait_connections(1).await;
    proxy.cut();
    let id = w.emit("while the broker is down");
    until("a failed attempt", Duration::from_secs(10), || async {
        w.emu.push_log().iter().any(|a| a.event_id == id && !a.ok)
    })
    .await;
    let failed = w
        .emu
        .push_log()
        .into_iter()
        .find(|a| a.event_id == id && !a.ok)
        .unwrap();
    assert_eq!(failed.status, Some(500), "acked 500, never 200: {failed:?}");
    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let r = loop {
        match tokio::time::timeout(Duration::from_secs(1), q.next()).await {
            Ok(r) => break r,
            Err(_) => assert!(tokio::time::Instant::now() < deadline, "never redelivered"),
        }
    };
    assert_eq!(r.event.event_id, id);
    q.assert_nothing_else(&bridge, &w.app).await;
    bridge.stop().await;
}

#[tokio::test]
async fn killed_and_silent_connections_reconnect_and_lose_nothing() {
    let w = Lc::new(|_| {}).await;
    let mut q = EventQueue::bind(&w.app.app_id).await;
    let bridge = w.bridge(DeliveryMode::LongConnection).await;
    w.wait_connections(1).await;
    let first: Vec<String> = (0..3).map(|i| w.emit(&format!("before {i}"))).collect();
    w.receive_exactly(&mut q, &first).await;

    // Killed mid-stream: events sent meanwhile fail and come back on Feishu's ladder.
    assert_eq!(w.emu.kill_connections(Some(&w.app.app_id)), 1);
    let during: Vec<String> = (0..3).map(|i| w.emit(&format!("killed {i}"))).collect();
    w.wait_connections(1).await;
    w.receive_exactly(&mut q, &during).await;

    // Silent: the socket stays open but pongs stop; the watchdog reconnects.
    let before = app_state(&readyz(&bridge).await, &w.app.app_id)["reconnects"]
        .as_u64()
        .unwrap();
    let mut s = w.emu.ws_settings();
    s.answer_pings = false;
    w.emu.set_ws_settings(s.clone());
    until(
        "the watchdog reconnects",
        Duration::from_secs(15),
        || async {
            app_state(&readyz(&bridge).await, &w.app.app_id)["reconnects"]
                .as_u64()
                .unwrap()
                > before
        },
    )
    .await;
    s.answer_pings = true;
    w.emu.set_ws_settings(s);
    w.wait_connections(1).await;
    let after: Vec<String> = (0..3).map(|i| w.emit(&format!("after {i}"))).collect();
    w.receive_exactly(&mut q, &after).await;
    q.assert_nothing_else(&bridge, &w.app).await;
    bridge.stop().await;
}

#[tokio::test]
async fn wrong_credentials_are_terminal_until_the_binding_changes() {
    let w = Lc::new(|_| {}).await;
    let mut s = w.settings(DeliveryMode::LongConnection, fresh_database().await, None);
    s.apps[0].app_secret = SecretString::from("wrong-secret".to_string());
    let key =
        bridge_store::MasterKey::from_base64(s.security.master_key.as_ref().unwrap()).unwrap();
    let db_url = secrecy::ExposeSecret::expose_secret(s.database.url.as_ref().unwrap()).to_string();
    let bridge = Bridge::start_with(s.clone(), Role::Ingress).await;
    until("the binding fails", Duration::from_secs(10), || async {
        app_state(&readyz(&bridge).await, &w.app.app_id)["state"] == "failed"
    })
    .await;
    let ready = readyz(&bridge).await;
    assert_eq!(
        ready["status"], "ready",
        "other apps are still served: {ready}"
    );
    assert_eq!(ready["checks"]["long_connection"]["status"], "degraded");
    let err = app_state(&ready, &w.app.app_id)["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains("1000040344") && err.contains("App Secret"),
        "{err}"
    );
    assert_eq!(w.emu.connections(&w.app.app_id), 0);

    // The operator fixes the secret: the binding changes and the connection comes up.
    let db = bridge_store::connect(&db_url, 2, false).await.unwrap();
    let reg = bridge_store::AppRegistry::load(db, key).await.unwrap();
    reg.upsert(&bridge_store::apps::BindingInput {
        app_id: w.app.app_id.clone(),
        app_secret: SecretString::from(w.app.app_secret.clone()),
        encrypt_key: w.app.encrypt_key.clone().map(SecretString::from),
        verification_token: SecretString::from(w.app.verification_token.clone()),
        team_name: "Test team".into(),
        domain: bridge_store::Domain::Feishu,
        enabled: true,
        qr_login_enabled: false,
        delivery: bridge_store::Delivery::LongConnection,
    })
    .await
    .unwrap();
    w.wait_connections(1).await;
    until("the error is cleared", Duration::from_secs(10), || async {
        app_state(&readyz(&bridge).await, &w.app.app_id)["state"] == "connected"
    })
    .await;
    bridge.stop().await;
}

#[tokio::test]
async fn the_connection_limit_is_terminal() {
    let w = Lc::new(|s| s.max_connections = 1).await;
    let mut s = w.settings(DeliveryMode::LongConnection, fresh_database().await, None);
    s.ingress.long_connection.connections_per_app = 2;
    let bridge = Bridge::start_with(s, Role::Ingress).await;
    until(
        "one connection refused",
        Duration::from_secs(10),
        || async { app_state(&readyz(&bridge).await, &w.app.app_id)["state"] == "failed" },
    )
    .await;
    let state = app_state(&readyz(&bridge).await, &w.app.app_id);
    assert!(
        state["error"]
            .as_str()
            .unwrap()
            .contains("connection limit"),
        "{state}"
    );
    assert_eq!(
        w.emu.connections(&w.app.app_id),
        1,
        "the other connection lives on"
    );
    let refused = w.emu.refused_connections();
    assert!(refused >= 1);
    // Not retried: no further handshakes are refused.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(w.emu.refused_connections(), refused);
    bridge.stop().await;
}

#[tokio::test]
async fn two_replicas_share_the_deliveries_and_together_receive_all() {
    let w = Lc::new(|_| {}).await;
    let mut q = EventQueue::bind(&w.app.app_id).await;
    let s = w.settings(DeliveryMode::LongConnection, fresh_database().await, None);
    let a = Bridge::start_with(s.clone(), Role::Ingress).await;
    let b = Bridge::start_with(s, Role::Ingress).await;
    w.wait_connections(2).await;
    let ids: Vec<String> = (0..30).map(|i| w.emit(&format!("shared {i}"))).collect();
    w.receive_exactly(&mut q, &ids).await;
    let used: HashSet<String> = w
        .emu
        .push_log()
        .into_iter()
        .filter(|p| p.ok)
        .filter_map(|p| p.url)
        .collect();
    assert_eq!(used.len(), 2, "both connections got deliveries: {used:?}");
    q.assert_nothing_else(&a, &w.app).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn replicas_together_stay_within_the_connection_cap() {
    let w = Lc::new(|_| {}).await;
    let mut s = w.settings(DeliveryMode::LongConnection, fresh_database().await, None);
    s.ingress.long_connection.connections_per_app = 2;
    s.ingress.long_connection.max_connections_per_app = 3;
    let a = Bridge::start_with(s.clone(), Role::Ingress).await;
    w.wait_connections(2).await;
    // The second replica wants two as well, but only one slot is left.
    let b = Bridge::start_with(s, Role::Ingress).await;
    w.wait_connections(3).await;
    until(
        "b holds one connection",
        Duration::from_secs(15),
        || async { app_state(&readyz(&b).await, &w.app.app_id)["connections"] == 1 },
    )
    .await;
    assert_eq!(
        w.emu.connections(&w.app.app_id),
        3,
        "never more than the cap"
    );
    // The first replica stops: its slots free up and the second takes one more.
    a.stop().await;
    until(
        "b holds two connections",
        Duration::from_secs(20),
        || async { app_state(&readyz(&b).await, &w.app.app_id)["connections"] == 2 },
    )
    .await;
    w.wait_connections(2).await;
    b.stop().await;
}

#[tokio::test]
async fn webhook_and_long_connection_together_do_not_double_publish() {
    let w = Lc::new(|_| {}).await;
    let mut q = EventQueue::bind(&w.app.app_id).await;
    let bridge = w.bridge(DeliveryMode::Both).await;
    w.wait_connections(1).await;
    let ids: Vec<String> = (0..5).map(|i| w.emit(&format!("both {i}"))).collect();
    w.receive_exactly(&mut q, &ids).await;
    // The same events reach the webhook as well: answered 200, not published again.
    for env in w.emu.events() {
        let r = bridge.post_event(&w.app, &env.to_string()).await;
        assert_eq!(r.status(), 200);
    }
    q.assert_nothing_else(&bridge, &w.app).await;
    bridge.stop().await;
}

#[tokio::test]
async fn card_callbacks_are_published_and_answered_with_empty_json() {
    let w = Lc::new(|_| {}).await;
    let mut q = EventQueue::bind(&w.app.app_id).await;
    let bridge = w.bridge(DeliveryMode::LongConnection).await;
    w.wait_connections(1).await;
    let mid = w
        .emu
        .user_messages_bot(&w.app.app_id, &w.user, "a card")
        .unwrap();
    assert_eq!(q.next().await.event.event_type, "im.message.receive_v1");
    // The emulator gives a callback Feishu's 3 s; the answer travels base64 in the ack.
    let answer = w
        .emu
        .click_card(&w.app.app_id, &w.user, &mid, json!({"action": "approve"}))
        .await
        .unwrap();
    assert_eq!(answer, json!({}));
    let r = q.next().await;
    assert_eq!(r.event.event_type, "card.action.trigger");
    assert!(r.event.is_callback);
    assert_eq!(r.event.delivery, Delivery::LongConnection as i32);
    bridge.stop().await;
}
