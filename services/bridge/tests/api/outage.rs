//! The broker goes away: the ingress answers 503 (never 200 for an event it could not
//! persist), and once the broker is back the same request is accepted and published once.

use std::time::Duration;

use crate::helpers::{Bridge, BridgeOptions, EventQueue, Proxy, TestApp};

#[tokio::test]
async fn broker_down_means_503_then_the_retry_is_published_once() {
    let proxy = Proxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let app = TestApp::new(true);
    let bridge = Bridge::start(BridgeOptions {
        apps: vec![app.provision(true)],
        broker_url: format!("amqp://guest:guest@{}/%2f", proxy.addr),
        ..Default::default()
    })
    .await;
    bridge.wait_ready(200, Duration::from_secs(10)).await;
    let mut q = EventQueue::bind(&app.app_id).await;

    proxy.cut();
    bridge.wait_ready(503, Duration::from_secs(10)).await;
    let ev = app.event_json("outage-1", "contact.department.updated_v3");
    let req = app.request(&ev);
    let path = format!("/feishu/{}/events", app.app_id);
    let started = std::time::Instant::now();
    let r = bridge.post(&path, &req).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], 50300);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered within Feishu's 3 s"
    );

    proxy.restore();
    bridge.wait_ready(200, Duration::from_secs(15)).await;
    // Feishu's retries: the very same request, until it is accepted (on a loaded machine the
    // first publish on the new connection may still miss the confirm deadline; 503 again is
    // the correct answer then).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = bridge.post(&path, &req).await.status().as_u16();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "only 503 may precede the 200");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never accepted after the broker came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(q.next().await.event.event_id, "outage-1");
    q.assert_nothing_else(&bridge, &app).await;
    bridge.stop().await;
}

/// `/readyz` is ready only while the database answers too: it says which check failed, and
/// turns ready again once the database is back.
#[tokio::test]
async fn database_down_means_not_ready_until_it_is_back() {
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = TestApp::new(true);
    let url = crate::helpers::fresh_database()
        .await
        .replace("127.0.0.1:5432", &proxy.addr.to_string());
    let settings = crate::helpers::settings(
        BridgeOptions {
            apps: vec![app.provision(true)],
            ..Default::default()
        },
        url,
    );
    let bridge = Bridge::start_with(settings, feishu_bridge::Role::Ingress).await;
    bridge.wait_ready(200, Duration::from_secs(10)).await;

    proxy.cut();
    bridge.wait_ready(503, Duration::from_secs(20)).await;
    let body = bridge.readyz().await;
    assert_ne!(body["checks"]["database"]["status"], "ok", "{body}");
    assert_eq!(body["checks"]["broker"]["status"], "ok", "{body}");

    proxy.restore();
    bridge.wait_ready(200, Duration::from_secs(30)).await;
    bridge.stop().await;
}
