//! Event pushes: url_verification, encryption and signature, event shapes, retry ladder.

use std::time::Duration;

use bridge_feishu::EventCipher;
use feishu_emulator::control::AppPatch;
use feishu_emulator::{demo, ContactScope, NewDepartment, NewUser, UserPatch};
use serde_json::{json, Value};

use crate::helpers::{wait_for, Receiver, TestApp};

const KEY: Option<&str> = Some(demo::ENCRYPT_KEY);

async fn wait_events(r: &Receiver, key: Option<&str>, n: usize) -> Vec<Value> {
    wait_for(Duration::from_secs(10), "events", || async {
        let e = r.events(key);
        (e.len() >= n).then_some(e)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_verification_gates_the_request_url() {
    let app = TestApp::generated(20, 3, 1).await;
    let silent = Receiver::start(KEY, false).await;
    let err = app.emu.set_request_url(demo::APP_ID, &silent.url).await;
    assert!(err.is_err());
    assert_eq!(app.emu.app(demo::APP_ID).unwrap().event_request_url, None);
    let r = Receiver::start(KEY, true).await;
    app.emu.set_request_url(demo::APP_ID, &r.url).await.unwrap();
    assert_eq!(
        app.emu
            .app(demo::APP_ID)
            .unwrap()
            .event_request_url
            .as_deref(),
        Some(r.url.as_str())
    );
    let got = r.received();
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert!(
        body.get("encrypt").is_some(),
        "encrypted when the app has an Encrypt Key"
    );
    let plain = crate::helpers::plaintext(KEY, &got[0].body);
    assert_eq!(plain["type"], "url_verification");
    assert_eq!(plain["token"], demo::VERIFICATION_TOKEN);
    // Same through the control API.
    let resp = app
        .http
        .put(app.url(&format!("/_emulator/apps/{}/request_url", demo::APP_ID)))
        .json(&json!({"url": silent.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_events_are_encrypted_signed_and_match_the_mutation() {
    let app = TestApp::generated(20, 3, 2).await;
    let r = Receiver::start(KEY, true).await;
    app.emu.set_request_url(demo::APP_ID, &r.url).await.unwrap();
    let dept = app.emu.snapshot().tenants[0]
        .departments
        .keys()
        .next()
        .unwrap()
        .clone();
    let u = app
        .emu
        .create_user(NewUser {
            user_id: Some("newbie".into()),
            fields: UserPatch {
                name: Some("New Bie".into()),
                email: Some("nb@example.com".into()),
                department_ids: Some(vec![dept.clone()]),
                ..UserPatch::default()
            },
        })
        .unwrap();
    let events = wait_events(&r, KEY, 1).await;
    let got = r.received();
    let last = got.last().unwrap();
    let cipher = EventCipher::new(demo::ENCRYPT_KEY);
    let (ts, nonce, sig) = (
        &last.headers["x-lark-request-timestamp"],
        &last.headers["x-lark-request-nonce"],
        &last.headers["x-lark-signature"],
    );
    assert!(cipher.verify_signature(ts, nonce, &last.body, sig));
    let e = &events[0];
    assert_eq!(e["schema"], "2.0");
    let h = &e["header"];
    assert_eq!(h["event_type"], "contact.user.created_v3");
    assert_eq!(h["token"], demo::VERIFICATION_TOKEN);
    assert_eq!(h["app_id"], demo::APP_ID);
    assert_eq!(h["tenant_key"], demo::TENANT_KEY);
    assert_eq!(h["create_time"].as_str().unwrap().len(), 13);
    assert_eq!(h["event_id"].as_str().unwrap().len(), 32);
    let obj = &e["event"]["object"];
    assert_eq!(obj["open_id"], app.emu.open_id(demo::APP_ID, &u.user_id));
    assert_eq!(obj["name"], "New Bie");
    assert_eq!(obj["email"], "nb@example.com");

    app.emu
        .update_user(
            "newbie",
            UserPatch {
                name: Some("Renamed".into()),
                ..UserPatch::default()
            },
        )
        .unwrap();
    let events = wait_events(&r, KEY, 2).await;
    let e = &events[1];
    assert_eq!(e["header"]["event_type"], "contact.user.updated_v3");
    assert_eq!(e["event"]["object"]["name"], "Renamed");
    assert_eq!(
        e["event"]["old_object"],
        json!({"name": "New Bie"}),
        "only changed fields"
    );

    app.emu.freeze_user("newbie", true).unwrap();
    let events = wait_events(&r, KEY, 3).await;
    assert_eq!(
        events[2]["event"]["old_object"]["status"]["is_frozen"],
        false
    );
    assert_eq!(events[2]["event"]["object"]["status"]["is_frozen"], true);

    app.emu.resign_user("newbie").unwrap();
    let events = wait_events(&r, KEY, 4).await;
    assert_eq!(events[3]["header"]["event_type"], "contact.user.deleted_v3");
    assert_eq!(
        events[3]["event"]["old_object"]["department_ids"],
        json!([dept])
    );
    // The push log recorded each attempt.
    wait_for(Duration::from_secs(5), "push log", || async {
        let n = app
            .emu
            .push_log()
            .iter()
            .filter(|a| a.ok && a.event_type.starts_with("contact.user"))
            .count();
        (n >= 4).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_events_carry_the_token_and_departments_and_scope_events() {
    let app = TestApp::generated(30, 4, 3).await;
    app.emu
        .patch_app(
            demo::APP_ID,
            AppPatch {
                encrypt_key: Some(String::new()),
                ..AppPatch::default()
            },
        )
        .unwrap();
    let r = Receiver::start(None, true).await;
    app.emu.set_request_url(demo::APP_ID, &r.url).await.unwrap();
    let d = app
        .emu
        .create_department(NewDepartment {
            name: "Skunkworks".into(),
            parent: "0".into(),
            ..NewDepartment::default()
        })
        .unwrap();
    app.emu
        .rename_department(&d.open_department_id, "Moonshots")
        .unwrap();
    let events = wait_events(&r, None, 2).await;
    let got = r.received();
    assert!(!got.last().unwrap().headers.contains_key("x-lark-signature"));
    assert_eq!(events[0]["header"]["token"], demo::VERIFICATION_TOKEN);
    assert_eq!(
        events[0]["header"]["event_type"],
        "contact.department.created_v3"
    );
    assert_eq!(
        events[0]["event"]["object"]["open_department_id"],
        d.open_department_id
    );
    assert_eq!(
        events[1]["header"]["event_type"],
        "contact.department.updated_v3"
    );
    assert_eq!(events[1]["event"]["old_object"]["name"], "Skunkworks");
    app.emu.delete_department(&d.open_department_id).unwrap();
    let events = wait_events(&r, None, 3).await;
    assert_eq!(
        events[2]["header"]["event_type"],
        "contact.department.deleted_v3"
    );
    assert_eq!(events[2]["event"]["object"]["status"]["is_deleted"], true);

    let top = app.emu.snapshot().tenants[0]
        .departments
        .values()
        .find(|d| d.parent == "0")
        .unwrap()
        .open_department_id
        .clone();
    app.emu
        .set_contact_scope(
            demo::APP_ID,
            ContactScope {
                all: false,
                department_ids: vec![top.clone()],
                user_ids: vec![],
            },
        )
        .unwrap();
    let events = wait_events(&r, None, 4).await;
    assert_eq!(
        events[3]["header"]["event_type"],
        "contact.scope.updated_v3"
    );
    let removed = &events[3]["event"]["removed"];
    assert!(!removed["departments"].as_array().unwrap().is_empty());
    assert!(removed["departments"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["open_department_id"] != top.as_str()));
    assert!(events[3]["event"]["added"]["departments"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_ladder_redelivers_to_a_receiver_that_was_down() {
    let app = TestApp::generated(10, 2, 4).await;
    let r = Receiver::start(KEY, true).await;
    app.emu.set_request_url(demo::APP_ID, &r.url).await.unwrap();
    r.fail_next.store(2, std::sync::atomic::Ordering::SeqCst);
    app.emu
        .update_user(
            "u0000001",
            UserPatch {
                city: Some("Xi'an".into()),
                ..UserPatch::default()
            },
        )
        .unwrap();
    let events = wait_events(&r, KEY, 3).await;
    let ids: Vec<_> = events
        .iter()
        .map(|e| e["header"]["event_id"].clone())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "same event redelivered");
    let log = wait_for(Duration::from_secs(5), "push log", || async {
        let log: Vec<_> = app
            .emu
            .push_log()
            .into_iter()
            .filter(|a| a.event_type == "contact.user.updated_v3")
            .collect();
        log.iter().any(|a| a.ok).then_some(log)
    })
    .await;
    assert_eq!(
        log.iter().map(|a| (a.attempt, a.ok)).collect::<Vec<_>>(),
        vec![(0, false), (1, false), (2, true)]
    );
    assert_eq!(log[0].status, Some(500));
    // 15 s and 5 min scaled by 0.001: the gaps are at least 15 ms and 300 ms.
    assert!(log[1].at_ms - log[0].at_ms >= 15);
    assert!(log[2].at_ms - log[1].at_ms >= 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_delivered_when_asked() {
    let app = TestApp::generated(10, 2, 5).await;
    let s = app.emu.settings();
    app.emu
        .set_settings(feishu_emulator::Settings {
            duplicate_share: 1.0,
            ..s
        })
        .unwrap();
    let r = Receiver::start(KEY, true).await;
    app.emu.set_request_url(demo::APP_ID, &r.url).await.unwrap();
    app.emu
        .update_user(
            "u0000002",
            UserPatch {
                city: Some("Dali".into()),
                ..UserPatch::default()
            },
        )
        .unwrap();
    let events = wait_events(&r, KEY, 2).await;
    assert_eq!(
        events[0]["header"]["event_id"],
        events[1]["header"]["event_id"]
    );
    wait_for(Duration::from_secs(5), "duplicate in push log", || async {
        app.emu.push_log().iter().any(|a| a.duplicate).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_card_clicks_reach_the_app() {
    let app = TestApp::generated(10, 2, 6).await;
    let r = Receiver::start(KEY, true).await;
    app.emu.set_request_url(demo::APP_ID, &r.url).await.unwrap();
    let mid = app
        .emu
        .user_messages_bot(demo::APP_ID, "u0000003", "hello bot")
        .unwrap();
    let events = wait_events(&r, KEY, 1).await;
    let e = &events[0];
    assert_eq!(e["header"]["event_type"], "im.message.receive_v1");
    assert_eq!(e["event"]["message"]["message_id"], mid);
    assert_eq!(e["event"]["message"]["chat_type"], "p2p");
    assert_eq!(
        e["event"]["message"]["content"],
        json!({"text": "hello bot"}).to_string()
    );
    assert_eq!(
        e["event"]["sender"]["sender_id"]["open_id"],
        app.emu.open_id(demo::APP_ID, "u0000003")
    );
    let chat = app.emu.snapshot().tenants[0]
        .chats
        .values()
        .find(|c| c.chat_type == "group")
        .unwrap()
        .chat_id
        .clone();
    app.emu
        .user_mentions_bot(demo::APP_ID, &chat, "u0000003", "status?")
        .unwrap();
    let events = wait_events(&r, KEY, 2).await;
    assert_eq!(events[1]["event"]["message"]["chat_type"], "group");
    assert_eq!(
        events[1]["event"]["message"]["mentions"][0]["mentioned_type"],
        "bot"
    );
    // A card click is a synchronous callback; the receiver's answer comes back.
    let answer = app
        .emu
        .click_card(demo::APP_ID, "u0000003", &mid, json!({"action": "approve"}))
        .await
        .unwrap();
    assert_eq!(answer["toast"]["type"], "success");
    let events = wait_events(&r, KEY, 3).await;
    assert_eq!(events[2]["header"]["event_type"], "card.action.trigger");
    assert_eq!(events[2]["event"]["action"]["value"]["action"], "approve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_deliveries_still_arrive() {
    let app = TestApp::generated(20, 2, 7).await;
    let s = app.emu.settings();
    app.emu
        .set_settings(feishu_emulator::Settings {
            reorder_share: 0.5,
            ..s
        })
        .unwrap();
    let r = Receiver::start(KEY, true).await;
    app.emu.set_request_url(demo::APP_ID, &r.url).await.unwrap();
    for i in 0..10 {
        app.emu
            .update_user(
                &format!("u{i:07}"),
                UserPatch {
                    city: Some(format!("C{i}")),
                    ..UserPatch::default()
                },
            )
            .unwrap();
    }
    let events = wait_events(&r, KEY, 10).await;
    let mut cities: Vec<String> = events
        .iter()
        .map(|e| e["event"]["object"]["city"].as_str().unwrap().to_string())
        .collect();
    cities.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("C{i}")).collect();
    want.sort();
    assert_eq!(cities, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_subtree_out_of_a_partial_scope_deletes_what_left() {
    let app = TestApp::generated(200, 12, 8).await;
    let state = app.emu.snapshot();
    let t = &state.tenants[0];
    let top = t
        .departments
        .values()
        .find(|d| d.parent == "0")
        .unwrap()
        .open_department_id
        .clone();
    let other_top = t
        .departments
        .values()
        .filter(|d| d.parent == "0")
        .nth(1)
        .unwrap()
        .open_department_id
        .clone();
    app.emu
        .set_contact_scope(
            demo::APP_ID,
            ContactScope {
                all: false,
                department_ids: vec![top.clone()],
                user_ids: vec![],
            },
        )
        .unwrap();
    let before = app.emu.export(demo::APP_ID).unwrap();
    let r = Receiver::start(KEY, true).await;
    app.emu.set_request_url(demo::APP_ID, &r.url).await.unwrap();
    // A fresh department inside the scope with one member, then moved out of it.
    let d = app
        .emu
        .create_department(NewDepartment {
            name: "Temp".into(),
            parent: top.clone(),
            ..NewDepartment::default()
        })
        .unwrap();
    app.emu
        .create_user(NewUser {
            user_id: Some("mover".into()),
            fields: UserPatch {
                name: Some("Mover".into()),
                department_ids: Some(vec![d.open_department_id.clone()]),
                ..UserPatch::default()
            },
        })
        .unwrap();
    app.emu
        .move_department(&d.open_department_id, &other_top)
        .unwrap();
    let events = wait_events(&r, KEY, 4).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["header"]["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "contact.department.created_v3",
            "contact.user.created_v3",
            "contact.department.deleted_v3",
            "contact.user.deleted_v3"
        ]
    );
    assert_eq!(app.emu.export(demo::APP_ID).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_and_mobile_changes_arrive_as_separate_events() {
    let app = TestApp::generated(10, 2, 9).await;
    let r = Receiver::start(KEY, true).await;
    app.emu.set_request_url(demo::APP_ID, &r.url).await.unwrap();
    app.emu
        .update_user(
            "u0000001",
            UserPatch {
                email: Some("new@example.com".into()),
                mobile: Some("+8613000000000".into()),
                city: Some("Lhasa".into()),
                ..UserPatch::default()
            },
        )
        .unwrap();
    let events = wait_events(&r, KEY, 3).await;
    let olds: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            e["event"]["old_object"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        })
        .collect();
    assert_eq!(
        olds,
        vec![
            vec!["city".to_string()],
            vec!["email".to_string()],
            vec!["mobile".to_string()]
        ]
    );
    assert!(events
        .iter()
        .all(|e| e["event"]["object"]["email"] == "new@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_added_to_a_group_and_card_delayed_update() {
    let app = TestApp::generated(20, 2, 7).await;
    let r = Receiver::start(KEY, true).await;
    app.emu.set_request_url(demo::APP_ID, &r.url).await.unwrap();
    // A user adds the bot to a new group: im.chat.member.bot.added_v1.
    app.emu
        .add_bot_to_chat(
            demo::APP_ID,
            "oc_0123456789abcdef0123456789abcdef",
            "u0000002",
            "Ops",
        )
        .unwrap();
    let events = wait_events(&r, KEY, 1).await;
    assert_eq!(
        events[0]["header"]["event_type"],
        "im.chat.member.bot.added_v1"
    );
    assert_eq!(
        events[0]["event"]["chat_id"],
        "oc_0123456789abcdef0123456789abcdef"
    );
    assert_eq!(events[0]["event"]["name"], "Ops");
    assert_eq!(events[0]["event"]["operator_id"]["user_id"], "u0000002");
    // The bot's card, clicked: the callback's token allows two delayed updates of that card.
    let tok = app.tenant_token().await;
    let card =
        json!({"schema": "2.0", "body": {"elements": [{"tag": "markdown", "content": "v0"}]}});
    let (s, v) = app
        .post(
            &tok,
            "/open-apis/im/v1/messages?receive_id_type=user_id",
            &json!({"receive_id": "u0000002", "msg_type": "interactive", "content": card.to_string()}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mid = v["data"]["message_id"].as_str().unwrap().to_string();
    app.emu
        .click_card(demo::APP_ID, "u0000002", &mid, json!({"k": "v"}))
        .await
        .unwrap();
    let events = wait_events(&r, KEY, 2).await;
    let token = events[1]["event"]["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("c-"));
    let update = |n: u32| json!({"token": token, "card": {"schema": "2.0", "body": {"elements": [{"tag": "markdown", "content": format!("v{n}")}]}}});
    for n in 1..=2 {
        let (s, v) = app
            .post(&tok, "/open-apis/interactive/v1/card/update", &update(n))
            .await;
        assert_eq!((s, v["code"].as_i64()), (200, Some(0)), "{v}");
        let m = app
            .emu
            .inbox()
            .into_iter()
            .find(|m| m.message_id == mid)
            .unwrap();
        assert_eq!(m.update_count, n);
        let c: Value = serde_json::from_str(&m.content).unwrap();
        assert_eq!(c["body"]["elements"][0]["content"], format!("v{n}"));
    }
    let (s, v) = app
        .post(&tok, "/open-apis/interactive/v1/card/update", &update(3))
        .await;
    assert_eq!(
        (s, v["code"].as_i64()),
        (400, Some(99992402)),
        "a third use is refused: {v}"
    );
    let (s, _) = app
        .post(
            &tok,
            "/open-apis/interactive/v1/card/update",
            &json!({"token": "c-unknown", "card": {}}),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_progress_is_zero_until_the_job_is_scheduled() {
    let app = TestApp::generated(30, 2, 7).await;
    let mut s = app.emu.settings();
    s.batch_schedule_ms = 60_000;
    app.emu.set_settings(s).unwrap();
    let tok = app.tenant_token().await;
    let (_, v) = app
        .post(
            &tok,
            "/open-apis/message/v4/batch_send/",
            &json!({"msg_type": "text", "content": {"text": "hi"}, "user_ids": ["u0000001", "u0000002"]}),
        )
        .await;
    let id = v["data"]["message_id"].as_str().unwrap().to_string();
    let path = format!("/open-apis/im/v1/batch_messages/{id}/get_progress");
    let (_, p) = app.get(&tok, &path).await;
    assert_eq!(
        p["data"]["batch_message_send_progress"]["valid_user_ids_count"],
        0
    );
    app.emu.advance_clock(Duration::from_secs(61));
    let (_, p) = app.get(&tok, &path).await;
    assert_eq!(
        p["data"]["batch_message_send_progress"]["valid_user_ids_count"],
        2
    );
    assert_eq!(
        p["data"]["batch_message_send_progress"]["success_user_ids_count"],
        2
    );
}
