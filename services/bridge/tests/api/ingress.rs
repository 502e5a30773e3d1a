//! The webhook ingress end to end: verification, decryption, the published message, and every
//! refusal publishing nothing.

use crate::helpers::{until, Bridge, BridgeOptions, EventQueue, FeishuRequest, TestApp};
use bridge_contracts::v1::Delivery;
use bridge_feishu::EventCipher;
use std::time::Duration;

async fn start(apps: &[&TestApp]) -> Bridge {
    Bridge::start(BridgeOptions {
        apps: apps.iter().map(|a| a.provision(true)).collect(),
        max_body_bytes: 64 * 1024,
        ..Default::default()
    })
    .await
}

async fn json(r: reqwest::Response) -> serde_json::Value {
    r.json().await.expect("JSON body")
}

#[tokio::test]
async fn encrypted_signed_event_lands_on_the_bus_with_its_properties() {
    let app = TestApp::new(true);
    let bridge = start(&[&app]).await;
    let mut q = EventQueue::bind(&app.app_id).await;
    let plaintext = app.event_json("ev-1", "contact.user.created_v3");

    let r = bridge.post_event(&app, &plaintext).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["code"], 0);

    let got = q.next().await;
    assert_eq!(
        got.routing_key,
        format!("{}.contact.user.created_v3", app.app_id)
    );
    let e = &got.event;
    assert_eq!(e.event_id, "ev-1");
    assert_eq!(e.event_type, "contact.user.created_v3");
    assert_eq!(e.app_id, app.app_id);
    assert_eq!(e.tenant_key, "tenant-1");
    assert_eq!(e.create_time, "1700000000123");
    assert_eq!(e.create_time_ms, 1_700_000_000_123);
    assert_eq!(e.schema, "2.0");
    assert_eq!(e.delivery, Delivery::Webhook as i32);
    assert!(!e.is_callback);
    assert!(e.received_at_ms > 1_700_000_000_000);
    assert_eq!(
        e.payload,
        plaintext.as_bytes(),
        "payload is the decrypted JSON, byte for byte"
    );

    let p = &got.props;
    assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("ev-1"));
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/x-protobuf")
    );
    assert_eq!(
        p.kind().as_ref().map(|s| s.as_str()),
        Some("feishu_bridge.v1.FeishuEvent")
    );
    assert_eq!(*p.delivery_mode(), Some(2), "persistent");
    let headers = p.headers().as_ref().expect("headers");
    let h = |k: &str| -> String {
        match headers.inner().get(k) {
            Some(lapin::types::AMQPValue::LongString(s)) => {
                String::from_utf8_lossy(s.as_bytes()).into_owned()
            }
            other => panic!("header {k}: {other:?}"),
        }
    };
    let tp = h("traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[1].len(), parts[2].len()),
        (4, "00", 32, 16),
        "{tp}"
    );
    assert_eq!(h("cloudEvents:specversion"), "1.0");
    assert_eq!(h("cloudEvents:id"), "ev-1");
    assert_eq!(
        h("cloudEvents:source"),
        format!("urn:feishu:app:{}", app.app_id)
    );
    assert_eq!(h("cloudEvents:type"), "feishu.contact.user.created_v3");
    assert_eq!(h("cloudEvents:time"), "2023-11-14T22:13:20.123Z");
    assert_eq!(h("cloudEvents:subject"), "tenant-1");
    bridge.stop().await;
}

#[tokio::test]
async fn plain_app_and_schema_1_events_are_published() {
    let app = TestApp::new(false);
    let bridge = Bridge::start(BridgeOptions {
        apps: vec![app.provision(true)],
        ..Default::default()
    })
    .await;
    let mut q = EventQueue::bind(&app.app_id).await;
    let v1 = serde_json::json!({
        "ts": "1502199207.7171419", "uuid": "bc447199585340d1f3728d26b1c0297a",
        "token": app.verification_token, "type": "event_callback",
        "event": {"type": "user_add", "app_id": app.app_id, "tenant_key": "t"}
    })
    .to_string();
    assert_eq!(bridge.post_event(&app, &v1).await.status(), 200);
    let got = q.next().await;
    assert_eq!(got.event.schema, "1.0");
    assert_eq!(got.event.event_id, "bc447199585340d1f3728d26b1c0297a");
    assert_eq!(got.routing_key, format!("{}.user_add", app.app_id));
    assert_eq!(got.event.create_time_ms, 1_502_199_207_717);
    bridge.stop().await;
}

#[tokio::test]
async fn url_verification_plain_and_encrypted() {
    let enc = TestApp::new(true);
    let plain = TestApp::new(false);
    let bridge = Bridge::start(BridgeOptions {
        apps: vec![enc.provision(true), plain.provision(true)],
        ..Default::default()
    })
    .await;
    for app in [&enc, &plain] {
        let challenge = serde_json::json!({"challenge": "ajls384kdjx98XX", "token": app.verification_token, "type": "url_verification"}).to_string();
        // Feishu does not sign the url_verification request.
        let mut req = app.request(&challenge);
        req.headers.clear();
        let r = bridge
            .post(&format!("/feishu/{}/events", app.app_id), &req)
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            json(r).await,
            serde_json::json!({"challenge": "ajls384kdjx98XX"})
        );

        let wrong =
            serde_json::json!({"challenge": "x", "token": "wrong", "type": "url_verification"})
                .to_string();
        let mut req = app.request(&wrong);
        req.headers.clear();
        let r = bridge
            .post(&format!("/feishu/{}/events", app.app_id), &req)
            .await;
        assert_eq!(r.status(), 401);
    }
    bridge.stop().await;
}

#[tokio::test]
async fn card_callback_is_published_and_answered_with_an_empty_object() {
    let app = TestApp::new(true);
    let bridge = start(&[&app]).await;
    let mut q = EventQueue::bind(&app.app_id).await;
    let cb = app.event_json("cb-1", "card.action.trigger");
    let r = bridge
        .post(
            &format!("/feishu/{}/callbacks", app.app_id),
            &app.request(&cb),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await, serde_json::json!({}));
    let got = q.next().await;
    assert_eq!(
        got.routing_key,
        format!("{}.card.action.trigger", app.app_id)
    );
    assert!(got.event.is_callback);
    bridge.stop().await;
}

#[tokio::test]
async fn a_duplicate_is_published_once() {
    let app = TestApp::new(true);
    let bridge = start(&[&app]).await;
    let mut q = EventQueue::bind(&app.app_id).await;
    let ev = app.event_json("dup-1", "contact.user.updated_v3");
    // Feishu's retry carries a new nonce and signature but the same event.
    for _ in 0..3 {
        assert_eq!(bridge.post_event(&app, &ev).await.status(), 200);
    }
    assert_eq!(q.next().await.event.event_id, "dup-1");
    q.assert_nothing_else(&bridge, &app).await;
    bridge.stop().await;
}

#[tokio::test]
async fn concurrent_copies_of_one_event_are_published_once() {
    let app = TestApp::new(true);
    let bridge = start(&[&app]).await;
    let mut q = EventQueue::bind(&app.app_id).await;
    let ev = app.event_json("dup-2", "contact.user.updated_v3");
    let answers =
        futures_util::future::join_all((0..8).map(|_| bridge.post_event(&app, &ev))).await;
    assert!(answers.iter().all(|r| r.status() == 200));
    assert_eq!(q.next().await.event.event_id, "dup-2");
    q.assert_nothing_else(&bridge, &app).await;
    bridge.stop().await;
}

#[tokio::test]
async fn every_bad_input_is_refused_and_publishes_nothing() {
    let app = TestApp::new(true);
    let disabled = TestApp::new(true);
    let bridge = Bridge::start(BridgeOptions {
        apps: vec![app.provision(true), disabled.provision(false)],
        max_body_bytes: 64 * 1024,
        ..Default::default()
    })
    .await;
    let mut q = EventQueue::bind(&app.app_id).await;
    let path = format!("/feishu/{}/events", app.app_id);
    let good = app.event_json("bad-1", "contact.user.created_v3");

    let mut cases: Vec<(&str, FeishuRequest, u16, u32)> = Vec::new();
    // Wrong signature.
    let mut r = app.request(&good);
    r.headers[2].1 = "00".repeat(32);
    cases.push(("wrong signature", r, 401, 40101));
    // Missing signature headers on an event.
    let mut r = app.request(&good);
    r.headers.clear();
    cases.push(("missing signature", r, 401, 40100));
    // Body changed after signing (one byte).
    let mut r = app.request(&good);
    let last = r.body.len() - 3;
    r.body[last] ^= 1;
    cases.push(("tampered body", r, 401, 40101));
    // Encrypted with another key, but signed correctly with the app's key.
    let other = EventCipher::new("not the app's key");
    let body = serde_json::json!({"encrypt": other.encrypt(good.as_bytes())}).to_string();
    let c = EventCipher::new(app.encrypt_key.as_deref().unwrap());
    let sig = c.signature("1", "n", body.as_bytes());
    cases.push((
        "undecryptable",
        FeishuRequest {
            body: body.into_bytes(),
            headers: vec![
                ("X-Lark-Request-Timestamp".into(), "1".into()),
                ("X-Lark-Request-Nonce".into(), "n".into()),
                ("X-Lark-Signature".into(), sig),
            ],
        },
        400,
        40001,
    ));
    // Malformed JSON (signed).
    let body = b"{not json".to_vec();
    let sig = c.signature("1", "n", &body);
    cases.push((
        "malformed",
        FeishuRequest {
            body,
            headers: vec![
                ("X-Lark-Request-Timestamp".into(), "1".into()),
                ("X-Lark-Request-Nonce".into(), "n".into()),
                ("X-Lark-Signature".into(), sig),
            ],
        },
        400,
        40000,
    ));
    // Right encryption and signature, wrong Verification Token inside.
    let wrong_token = good.replace(&app.verification_token, "vt-wrong");
    cases.push(("wrong token", app.request(&wrong_token), 401, 40102));
    // Event of another app.
    let foreign = good.replace(
        &format!("\"app_id\":\"{}\"", app.app_id),
        "\"app_id\":\"cli_0000000000000000\"",
    );
    cases.push(("foreign app_id", app.request(&foreign), 400, 40003));
    // An event id longer than an AMQP short string: refused, not retried by Feishu forever.
    let long_id = app.event_json(&"e".repeat(300), "contact.user.created_v3");
    cases.push(("event id too long", app.request(&long_id), 400, 40001));
    // Too large.
    let big = app.event_json(&"x".repeat(70 * 1024), "contact.user.created_v3");
    cases.push(("oversized", app.request(&big), 413, 41300));

    for (name, req, status, code) in cases {
        let r = bridge.post(&path, &req).await;
        assert_eq!(r.status().as_u16(), status, "{name}");
        let body = json(r).await;
        assert_eq!(body["code"], code, "{name}: {body}");
        assert!(
            body["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}"
        );
    }

    // Unknown and disabled apps: 404.
    let r = bridge
        .post("/feishu/cli_ffffffffffffffff/events", &app.request(&good))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["code"], 40400);
    let r = bridge
        .post_event(
            &disabled,
            &disabled.event_json("d-1", "contact.user.created_v3"),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["code"], 40401);
    // Wrong method.
    let r = bridge.http.get(bridge.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(json(r).await["code"], 40500);

    q.assert_nothing_else(&bridge, &app).await;
    bridge.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::new(true);
    let bridge = start(&[&app]).await;
    let r = bridge
        .http
        .get(bridge.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = bridge.http.get(bridge.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["checks"]["broker"]["status"], "ok");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert_eq!(
        bridge
            .post_event(&app, &app.event_json("m-1", "contact.user.created_v3"))
            .await
            .status(),
        200
    );
    let text = bridge.metrics().await;
    assert!(
        text.contains("ingress_requests_total{kind=\"event\",outcome=\"published\"}"),
        "{text}"
    );
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(
        text.contains("ingress_publish_duration_seconds_count{outcome=\"confirmed\"}"),
        "{text}"
    );
    // Events go out over the HTTP worker's own connection (opened in the background after
    // the worker's first event, which lapin's shared connection carries).
    let mut i = 0;
    until(
        "an event published over a worker connection",
        Duration::from_secs(20),
        || {
            i += 1;
            let ev = app.event_json(&format!("w-{i}"), "contact.user.created_v3");
            let (bridge, app) = (&bridge, &app);
            async move {
                assert_eq!(bridge.post_event(app, &ev).await.status(), 200);
                let text = bridge.metrics().await;
                text.contains("bus_worker_publishes_total")
                    && text.contains("bus_worker_connections_opened_total")
            }
        },
    )
    .await;
    bridge.stop().await;
}

/// events.md §10.2 and §10.3: the Node SDK's own url_verification vectors, through the
/// ingress. The plain one carries no token: Feishu always sends it (events.md §2.6), and like
/// the Go, Java and Python SDKs the ingress answers only a challenge with the app's token.
#[tokio::test]
async fn the_sdks_challenge_vectors() {
    let node = TestApp {
        encrypt_key: Some("mazhe.nerd".into()),
        verification_token: "iRdCP2WwXNBXRM3mGLqhrgch3cn0gbT6".into(),
        ..TestApp::new(true)
    };
    let plain = TestApp::new(false);
    let bridge = Bridge::start(BridgeOptions {
        apps: vec![node.provision(true), plain.provision(true)],
        ..Default::default()
    })
    .await;
    let unsigned = |body: &str| FeishuRequest {
        body: body.as_bytes().to_vec(),
        headers: vec![],
    };
    let encrypted = r#"{"encrypt":"tT1xP+ovuc0T3b/rnZX3ax76exqAn0ANQ6/U45GcciC0mgNBc8JtvqOJGNAPMKpgRs2dVU1NYk9VDeqS8T4SYtU0hzNU54aS84WnxvZ3VFfDcy/RyABlNqlUiGyLDzFI0yxdCMT4KR/YEQXlt6nZi50KwRlZ+A75r645KesZuLMljezYyY8VeeXEVjPw35+e"}"#;
    let r = bridge
        .post(
            &format!("/feishu/{}/events", node.app_id),
            &unsigned(encrypted),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        json(r).await,
        serde_json::json!({"challenge": "5634b122-c042-4634-bc7f-b07a3c3e77ad"})
    );

    let path = format!("/feishu/{}/events", plain.app_id);
    for (name, body, status, code) in [
        (
            "challenge without a token",
            r#"{"challenge":"ajls384kdjx98XX","type":"url_verification"}"#,
            401,
            40102,
        ),
        ("not a challenge", "{}", 400, 40000),
        (
            "encrypted, but the app has no Encrypt Key",
            r#"{"encrypt":"encrypt"}"#,
            400,
            40002,
        ),
    ] {
        let r = bridge.post(&path, &unsigned(body)).await;
        assert_eq!(r.status().as_u16(), status, "{name}");
        assert_eq!(json(r).await["code"], code, "{name}");
    }
    bridge.stop().await;
}

/// `/callbacks` is verified as `/events` is: every refusal has its status and code, and
/// nothing is published.
#[tokio::test]
async fn bad_callbacks_are_refused_and_publish_nothing() {
    let app = TestApp::new(true);
    let bridge = start(&[&app]).await;
    let mut q = EventQueue::bind(&app.app_id).await;
    let path = format!("/feishu/{}/callbacks", app.app_id);
    let good = app.event_json("cb-bad", "card.action.trigger");
    let mut wrong_sig = app.request(&good);
    wrong_sig.headers[2].1 = "11".repeat(32);
    let mut unsigned = app.request(&good);
    unsigned.headers.clear();
    let wrong_token = app.request(&good.replace(&app.verification_token, "vt-wrong"));
    let big = app.request(&app.event_json(&"x".repeat(70 * 1024), "card.action.trigger"));
    for (name, req, status, code) in [
        ("wrong signature", wrong_sig, 401, 40101),
        ("missing signature", unsigned, 401, 40100),
        ("wrong token", wrong_token, 401, 40102),
        ("oversized", big, 413, 41300),
    ] {
        let r = bridge.post(&path, &req).await;
        assert_eq!(r.status().as_u16(), status, "{name}");
        assert_eq!(json(r).await["code"], code, "{name}");
    }
    let r = bridge
        .post(
            "/feishu/cli_ffffffffffffffff/callbacks",
            &app.request(&good),
        )
        .await;
    assert_eq!(r.status(), 404);
    let body = json(r).await;
    assert_eq!(body["code"], 40400, "{body}");
    assert!(body["msg"].as_str().is_some_and(|m| !m.is_empty()));
    let r = bridge.http.put(bridge.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(json(r).await["code"], 40500);
    q.assert_nothing_else(&bridge, &app).await;
    bridge.stop().await;
}

/// A legacy message-card callback (`card.action.trigger_v1`): flat, never encrypted, signed
/// with SHA-1 over the Verification Token, with no event id; Feishu's retry of it is the
/// same body, published once.
#[tokio::test]
async fn a_legacy_card_callback_is_verified_and_published_once() {
    let app = TestApp::new(true);
    let bridge = start(&[&app]).await;
    let mut q = EventQueue::bind(&app.app_id).await;
    let path = format!("/feishu/{}/callbacks", app.app_id);
    let body = r#"{"open_id":"ou_1","user_id":"u1","open_message_id":"om_1","tenant_key":"tenant-1","token":"c-card-update-token","action":{"value":{"k":"v"},"tag":"button"}}"#;
    let signed = |body: &str, nonce: &str| FeishuRequest {
        body: body.as_bytes().to_vec(),
        headers: vec![
            ("X-Lark-Request-Timestamp".into(), "1700000000".into()),
            ("X-Lark-Request-Nonce".into(), nonce.into()),
            (
                "X-Lark-Signature".into(),
                bridge_feishu::crypto::legacy_card_signature(
                    &app.verification_token,
                    "1700000000",
                    nonce,
                    body.as_bytes(),
                ),
            ),
        ],
    };
    let r = bridge.post(&path, &signed(body, "n1")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await, serde_json::json!({}));
    let got = q.next().await;
    assert_eq!(
        got.routing_key,
        format!("{}.card.action.trigger_v1", app.app_id)
    );
    assert!(got.event.is_callback);
    assert!(got.event.event_id.starts_with("card-v1-"));
    assert_eq!(got.event.tenant_key, "tenant-1");
    assert_eq!(got.event.payload, body.as_bytes());
    // Feishu's retry: the same body under a new nonce.
    assert_eq!(bridge.post(&path, &signed(body, "n2")).await.status(), 200);
    // Signed with the wrong token, or not signed: refused.
    let mut forged = signed(body, "n3");
    forged.headers[2].1 = bridge_feishu::crypto::legacy_card_signature(
        "vt-wrong",
        "1700000000",
        "n3",
        body.as_bytes(),
    );
    let r = bridge.post(&path, &forged).await;
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["code"], 40101);
    let mut unsigned = signed(body, "n4");
    unsigned.headers.clear();
    let r = bridge.post(&path, &unsigned).await;
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["code"], 40100);
    q.assert_nothing_else(&bridge, &app).await;
    bridge.stop().await;
}
