//! im: send with every receive_id_type, content checks, uuid idempotency, errors, reply,
//! batch_send and progress, per-recipient limit.

use feishu_emulator::control::AppPatch;
use feishu_emulator::{demo, ContactScope};
use serde_json::{json, Value};

use crate::helpers::TestApp;

fn text(t: &str) -> String {
    json!({"text": t}).to_string()
}

async fn send(
    app: &TestApp,
    tok: &str,
    id_type: &str,
    id: &str,
    msg_type: &str,
    content: String,
    uuid: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({"receive_id": id, "msg_type": msg_type, "content": content});
    if let Some(u) = uuid {
        body["uuid"] = json!(u);
    }
    app.post(
        tok,
        &format!("/open-apis/im/v1/messages?receive_id_type={id_type}"),
        &body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_every_id_type() {
    let app = TestApp::generated(20, 3, 1).await;
    let tok = app.tenant_token().await;
    let state = app.emu.snapshot();
    let t = &state.tenants[0];
    let u = &t.users["u0000005"];
    let chat = t.chats.values().next().unwrap().chat_id.clone();
    let targets = [
        ("open_id", app.emu.open_id(demo::APP_ID, "u0000005")),
        ("union_id", t.union_id("u0000005")),
        ("user_id", "u0000005".to_string()),
        ("email", u.email.clone()),
        ("chat_id", chat.clone()),
    ];
    for (ty, id) in &targets {
        let (s, v) = send(&app, &tok, ty, id, "text", text("hi"), None).await;
        assert_eq!((s, v["code"].as_i64()), (200, Some(0)), "{ty}: {v}");
        let d = &v["data"];
        assert!(d["message_id"].as_str().unwrap().starts_with("om_"));
        assert!(d["chat_id"].as_str().unwrap().starts_with("oc_"));
        assert_eq!(d["sender"]["sender_type"], "app");
        assert_eq!(d["sender"]["id_type"], "app_id");
        assert_eq!(d["body"]["content"], text("hi"));
        assert_eq!(d["create_time"].as_str().unwrap().len(), 13);
    }
    let inbox = app.emu.inbox();
    assert_eq!(
        inbox
            .iter()
            .filter(|m| m.recipient_user_id.as_deref() == Some("u0000005"))
            .count(),
        4
    );
    assert_eq!(inbox.iter().filter(|m| m.chat_id == chat).count(), 1);
    // Other message types.
    let post =
        json!({"zh_cn": {"title": "T", "content": [[{"tag": "text", "text": "a"}]]}}).to_string();
    let card = json!({"schema": "2.0", "body": {"elements": []}}).to_string();
    let image = json!({"image_key": "img_v2_x"}).to_string();
    for (ty, c) in [("post", post), ("interactive", card), ("image", image)] {
        let (s, v) = send(&app, &tok, "user_id", "u0000005", ty, c, None).await;
        assert_eq!((s, v["code"].as_i64()), (200, Some(0)), "{ty}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_idempotency() {
    let app = TestApp::generated(20, 3, 1).await;
    let tok = app.tenant_token().await;
    let (s, v) = send(
        &app,
        &tok,
        "user_id",
        "u0000005",
        "text",
        "not json".into(),
        None,
    )
    .await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(230001)));
    let big = text(&"x".repeat(31 * 1024));
    let card = json!({"elements": [big]}).to_string();
    let (s, v) = send(&app, &tok, "user_id", "u0000005", "interactive", card, None).await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(230025)));
    let (s, v) = send(&app, &tok, "user_id", "nobody", "text", text("x"), None).await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(230001)));
    app.emu
        .set_availability(
            demo::APP_ID,
            ContactScope {
                all: false,
                department_ids: vec![],
                user_ids: vec!["u0000001".into()],
            },
        )
        .unwrap();
    let (s, v) = send(&app, &tok, "user_id", "u0000005", "text", text("x"), None).await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(230013)));
    let (a, first) = send(
        &app,
        &tok,
        "user_id",
        "u0000001",
        "text",
        text("once"),
        Some("dedupe-1"),
    )
    .await;
    let (b, second) = send(
        &app,
        &tok,
        "user_id",
        "u0000001",
        "text",
        text("once"),
        Some("dedupe-1"),
    )
    .await;
    assert_eq!((a, b), (200, 200));
    assert_eq!(first["data"]["message_id"], second["data"]["message_id"]);
    assert_eq!(
        app.emu
            .inbox()
            .iter()
            .filter(|m| m.uuid.as_deref() == Some("dedupe-1"))
            .count(),
        1
    );
    app.emu.advance_clock(std::time::Duration::from_secs(3601));
    let (_, third) = send(
        &app,
        &tok,
        "user_id",
        "u0000001",
        "text",
        text("once"),
        Some("dedupe-1"),
    )
    .await;
    assert_ne!(first["data"]["message_id"], third["data"]["message_id"]);
    // Reply.
    let mid = first["data"]["message_id"].as_str().unwrap();
    let (s, r) = app
        .post(
            &tok,
            &format!("/open-apis/im/v1/messages/{mid}/reply"),
            &json!({"msg_type": "text", "content": text("re")}),
        )
        .await;
    assert_eq!((s, r["code"].as_i64()), (200, Some(0)));
    assert_eq!(r["data"]["parent_id"], mid);
    assert_eq!(r["data"]["root_id"], mid);
    app.emu
        .patch_app(
            demo::APP_ID,
            AppPatch {
                bot_enabled: Some(false),
                ..AppPatch::default()
            },
        )
        .unwrap();
    let (s, v) = send(&app, &tok, "user_id", "u0000001", "text", text("x"), None).await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(230006)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_recipient_limit_is_five_per_second() {
    let app = TestApp::generated(20, 3, 1).await;
    app.emu.set_rate_limit_scale(1.0).unwrap();
    let tok = app.tenant_token().await;
    let mut codes = Vec::new();
    let start = std::time::Instant::now();
    for _ in 0..8 {
        let (_, v) = send(
            &app,
            &tok,
            "user_id",
            "u0000003",
            "text",
            text("burst"),
            None,
        )
        .await;
        codes.push(v["code"].as_i64().unwrap());
    }
    let refill = (start.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    let sent = codes.iter().filter(|c| **c == 0).count();
    assert!(sent >= 5 && sent <= 5 + refill, "{codes:?}");
    assert!(codes.contains(&230020));
    let (_, v) = send(
        &app,
        &tok,
        "user_id",
        "u0000004",
        "text",
        text("other"),
        None,
    )
    .await;
    assert_eq!(v["code"], 0, "another recipient is unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_send_expands_departments() {
    let app = TestApp::generated(60, 6, 2).await;
    let tok = app.tenant_token().await;
    let state = app.emu.snapshot();
    let t = &state.tenants[0];
    let top = t
        .departments
        .values()
        .find(|d| d.parent == "0")
        .unwrap()
        .open_department_id
        .clone();
    let body = json!({
        "msg_type": "text", "content": {"text": "all hands"},
        "department_ids": [top, "od-missing"],
        "open_ids": [app.emu.open_id(demo::APP_ID, "u0000001"), "ou_unknown"],
    });
    let (s, v) = app
        .post(&tok, "/open-apis/message/v4/batch_send/", &body)
        .await;
    assert_eq!((s, v["code"].as_i64()), (200, Some(0)), "{v}");
    let bm = v["data"]["message_id"].as_str().unwrap();
    assert!(bm.starts_with("bm-"));
    assert_eq!(v["data"]["invalid_department_ids"], json!(["od-missing"]));
    assert_eq!(v["data"]["invalid_open_ids"], json!(["ou_unknown"]));
    let delivered = app
        .emu
        .inbox()
        .iter()
        .filter(|m| m.batch_id.as_deref() == Some(bm))
        .count();
    assert!(delivered >= 1);
    let (s, p) = app
        .get(
            &tok,
            &format!("/open-apis/im/v1/batch_messages/{bm}/get_progress"),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        p["data"]["batch_message_send_progress"]["success_user_ids_count"],
        delivered
    );
    let (s, v) = app
        .post(
            &tok,
            "/open-apis/message/v4/batch_send/",
            &json!({"msg_type": "text", "content": {"text": "x"}}),
        )
        .await;
    assert_eq!((s, v["code"].as_i64()), (200, Some(10003)));
}
