//! The console against the emulator, real PostgreSQL and RabbitMQ: every admin endpoint with
//! its validation and permission errors, install / initialise (complete, missing scopes, wrong
//! secret, no bot), and the page in headless Chromium.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::auth::{active_users, login_session};
use crate::directory::{World, WorldOptions, TOKEN};
use crate::helpers::until;

pub const ADMIN_TOKEN: &str = "bootstrap-admin-token-for-tests";

fn console_world() -> WorldOptions {
    WorldOptions {
        users: 30,
        departments: 4,
        tweak: |s| {
            s.console.admin_token = Some(secrecy::SecretString::from(ADMIN_TOKEN.to_string()));
        },
        ..Default::default()
    }
}

async fn call(
    w: &World,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = w.bridge.http.request(method, w.bridge.url(path));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A second app in the emulator's tenant, with everything an install needs.
fn second_app(w: &World) -> feishu_emulator::App {
    let mut app = feishu_emulator::generate::demo_app();
    app.app_id = crate::helpers::random_app_id();
    app.app_secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
    w.emu.add_app(app.clone()).unwrap();
    app
}

async fn wait_install(w: &World, app_id: &str, run_id: &str) -> Value {
    let path = format!("/api/v1/apps/{app_id}/install/{run_id}");
    let last = std::cell::RefCell::new(Value::Null);
    until(
        "the install run finishes",
        Duration::from_secs(30),
        || async {
            let (s, run) = call(w, reqwest::Method::GET, &path, Some(ADMIN_TOKEN), None).await;
            assert_eq!(s, StatusCode::OK, "{run}");
            let done = run["status"] != "running";
            *last.borrow_mut() = run;
            done
        },
    )
    .await;
    last.into_inner()
}

fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[tokio::test]
async fn bindings_api_permissions_validation_and_audit() {
    use reqwest::Method as M;
    let w = World::new(console_world()).await;
    let users = active_users(&w);
    w.emu
        .edit_app(&w.app.app_id, |a| a.admins = vec![users[0].clone()])
        .unwrap();

    // Who may: nobody without credentials, not a service, not a plain user; an admin and the
    // bootstrap token may.
    assert_eq!(
        call(&w, M::GET, "/api/v1/apps", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&w, M::GET, "/api/v1/apps", Some("wrong"), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&w, M::GET, "/api/v1/apps", Some(TOKEN), None).await.0,
        StatusCode::FORBIDDEN
    );
    let plain = login_session(&w, &users[1]).await;
    let (s, body) = call(&w, M::GET, "/api/v1/apps", Some(&plain), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], 40330);
    let admin = login_session(&w, &users[0]).await;
    let (s, list) = call(&w, M::GET, "/api/v1/apps", Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"][0]["app_id"], w.app.app_id.as_str());
    assert_eq!(
        call(&w, M::GET, "/api/v1/apps", Some(ADMIN_TOKEN), None)
            .await
            .0,
        StatusCode::OK
    );

    // Validation, each with its reason.
    let (s, e) = call(
        &w,
        M::POST,
        "/api/v1/apps",
        Some(ADMIN_TOKEN),
        Some(json!({"app_id": "cli_nothex", "team_name": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("app_id")
            && msg.contains("app_secret: required")
            && msg.contains("verification_token: required"),
        "{msg}"
    );
    let (s, e) = call(&w, M::POST, "/api/v1/apps", Some(ADMIN_TOKEN), Some(json!({"app_id": "cli_0123456789abcdef", "app_secret": "s", "verification_token": "v", "secret": "typo"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["msg"].as_str().unwrap().contains("secret"), "{e}");
    let (s, e) = call(
        &w,
        M::POST,
        "/api/v1/apps",
        Some(ADMIN_TOKEN),
        Some(json!({"app_id": w.app.app_id, "app_secret": "s", "verification_token": "v"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let (s, e) = call(&w, M::POST, "/api/v1/apps", Some(ADMIN_TOKEN), Some(json!({"app_id": "cli_0123456789abcdef", "app_secret": "s", "verification_token": "v", "domain": "google"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["msg"].as_str().unwrap().contains("domain"));

    // Create; secrets are write-only.
    let new_id = crate::helpers::random_app_id();
    let secret = "very-secret-app-secret-9f3a";
    let (s, v) = call(&w, M::POST, "/api/v1/apps", Some(&admin), Some(json!({
        "app_id": new_id, "app_secret": secret, "encrypt_key": "enc-key-77aa", "verification_token": "vt-1234",
        "team_name": "Ops 运维", "domain": "lark", "qr_login_enabled": true}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["secrets"]["app_secret"],
        json!({"set": true, "last4": "9f3a"})
    );
    assert_eq!(v["secrets"]["encrypt_key"]["last4"], "77aa");
    assert_eq!(v["domain"], "lark");
    assert!(!v.to_string().contains(secret));
    // The other services see it: the ingress knows the app now.
    let r = w
        .bridge
        .http
        .post(w.bridge.url(&format!("/feishu/{new_id}/events")))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::NOT_FOUND);

    // Update: a new secret, the team name, QR login off; app_id cannot change; empty key removes it.
    let (s, v) = call(&w, M::PATCH, &format!("/api/v1/apps/{new_id}"), Some(ADMIN_TOKEN), Some(json!({"app_secret": "rotated-secret-0042", "team_name": "Ops", "qr_login_enabled": false, "encrypt_key": ""}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["secrets"]["app_secret"]["last4"], "0042");
    assert_eq!(v["secrets"]["encrypt_key"], json!({"set": false}));
    assert_eq!(v["team_name"], "Ops");
    let (s, _) = call(
        &w,
        M::PATCH,
        &format!("/api/v1/apps/{new_id}"),
        Some(ADMIN_TOKEN),
        Some(json!({"app_id": "cli_ffffffffffffffff"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(
        &w,
        M::PATCH,
        "/api/v1/apps/cli_ffffffffffffffff",
        Some(ADMIN_TOKEN),
        Some(json!({"team_name": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Disable.
    let (s, v) = call(
        &w,
        M::PATCH,
        &format!("/api/v1/apps/{new_id}"),
        Some(ADMIN_TOKEN),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!((s, v["enabled"].clone()), (StatusCode::OK, json!(false)));

    // The checklist for the binding.
    let (s, c) = call(
        &w,
        M::GET,
        &format!("/api/v1/apps/{new_id}/setup"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let urls: Vec<&str> = c["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["value"].as_str().unwrap())
        .collect();
    assert!(
        urls.contains(&w.bridge.url(&format!("/feishu/{new_id}/events")).as_str()),
        "{urls:?}"
    );
    assert!(urls.contains(
        &w.bridge
            .url(&format!("/feishu/{new_id}/callbacks"))
            .as_str()
    ));
    assert!(urls.contains(
        &w.bridge
            .url(&format!("/auth/feishu/{new_id}/callback"))
            .as_str()
    ));
    assert!(urls.contains(&w.bridge.url("/console").as_str()));
    let scopes: Vec<&str> = c["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scope"].as_str().unwrap())
        .collect();
    for s in [
        "contact:user.email:readonly",
        "im:message:send_multi_depts",
        "admin:app.admin:check",
        "contact:contact:readonly_as_app",
    ] {
        assert!(scopes.contains(&s), "{s}");
    }
    let events: Vec<&str> = c["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"contact.user.created_v3")
            && events.contains(&"im.chat.member.bot.added_v1")
    );
    assert_eq!(c["base_url_configured"], false);
    assert!(c["warning"]["en"]
        .as_str()
        .unwrap()
        .contains("public_base_url"));

    // Delete, then it is gone.
    let (s, _) = call(
        &w,
        M::DELETE,
        &format!("/api/v1/apps/{new_id}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        call(
            &w,
            M::GET,
            &format!("/api/v1/apps/{new_id}"),
            Some(ADMIN_TOKEN),
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // The audit trail: who and what, never a secret's value.
    let (s, a) = call(
        &w,
        M::GET,
        &format!("/api/v1/apps/{new_id}/audit"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<&str> = a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["delete", "update", "update", "create"],
        "a refused change is not audited"
    );
    let text = a.to_string();
    assert!(
        !text.contains(secret)
            && !text.contains("rotated-secret")
            && !text.contains("enc-key-77aa"),
        "{text}"
    );
    assert!(
        text.contains("\"app_secret\":\"changed\"") && text.contains("bootstrap-token"),
        "{text}"
    );
    assert!(a["items"][3]["actor"]
        .as_str()
        .unwrap()
        .contains(&w.emu.open_id(&w.app.app_id, &users[0])));

    // "Events are arriving": a contact change pushed by Feishu shows on the binding.
    w.emu
        .update_user(
            &users[2],
            feishu_emulator::UserPatch {
                name: Some("Renamed".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let path = format!("/api/v1/apps/{}", w.app.app_id);
    until(
        "the ingress records the event",
        Duration::from_secs(20),
        || async {
            let (_, v) = call(&w, M::GET, &path, Some(ADMIN_TOKEN), None).await;
            v["activity"]["last_event_type"] == "contact.user.updated_v3"
        },
    )
    .await;
    let (_, v) = call(&w, M::GET, &path, Some(ADMIN_TOKEN), None).await;
    assert!(v["activity"]["events"].as_i64().unwrap() >= 1, "{v}");
}

#[tokio::test]
async fn install_checks_each_step_then_syncs() {
    use reqwest::Method as M;
    let w = World::new(console_world()).await;
    let app = second_app(&w);
    let (s, _) = call(&w, M::POST, "/api/v1/apps", Some(ADMIN_TOKEN), Some(json!({
        "app_id": app.app_id, "app_secret": "wrong-secret", "verification_token": app.verification_token}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let install = |w: &World| {
        let path = format!("/api/v1/apps/{}/install", app.app_id);
        let w = w
            .bridge
            .http
            .post(w.bridge.url(&path))
            .bearer_auth(ADMIN_TOKEN);
        async move {
            let r: Value = w.send().await.unwrap().json().await.unwrap();
            r["run_id"].as_str().unwrap().to_string()
        }
    };

    // A wrong secret stops at the credentials.
    let run = wait_install(&w, &app.app_id, &install(&w).await).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(step(&run, "credentials")["state"], "failed");
    assert!(step(&run, "credentials")["detail"]["zh"]
        .as_str()
        .unwrap()
        .contains("App Secret"));
    for s in ["scopes", "contact_range", "bot", "sync"] {
        assert_eq!(step(&run, s)["state"], "skipped", "{s}");
    }

    // Fixed secret, but two scopes missing and no bot: each reported, no sync.
    call(
        &w,
        M::PATCH,
        &format!("/api/v1/apps/{}", app.app_id),
        Some(ADMIN_TOKEN),
        Some(json!({"app_secret": app.app_secret})),
    )
    .await;
    w.emu
        .edit_app(&app.app_id, |a| {
            a.scopes
                .retain(|s| s != "admin:app.admin:check" && s != "im:message:send_multi_depts");
            a.bot_enabled = false;
        })
        .unwrap();
    let run = wait_install(&w, &app.app_id, &install(&w).await).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(step(&run, "credentials")["state"], "ok");
    let scopes = step(&run, "scopes");
    assert_eq!(scopes["state"], "failed");
    let mut missing: Vec<&str> = scopes["detail"]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["scope"].as_str().unwrap())
        .collect();
    missing.sort();
    assert_eq!(
        missing,
        vec!["admin:app.admin:check", "im:message:send_multi_depts"]
    );
    assert_eq!(step(&run, "contact_range")["state"], "ok");
    assert_eq!(step(&run, "bot")["state"], "failed");
    assert!(step(&run, "bot")["detail"]["en"]
        .as_str()
        .unwrap()
        .contains("bot"));
    assert_eq!(step(&run, "sync")["state"], "skipped");

    // Everything fixed: the initialisation succeeds and the directory equals Feishu's.
    w.emu
        .edit_app(&app.app_id, |a| {
            a.scopes = feishu_emulator::generate::default_scopes();
            a.bot_enabled = true;
        })
        .unwrap();
    let run = wait_install(&w, &app.app_id, &install(&w).await).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "ok"),
        "{run}"
    );
    assert!(step(&run, "sync")["detail"]["counts"].is_object());
    let ours = serde_json::to_value(w.ds().export(&app.app_id).await.unwrap()).unwrap();
    let theirs = serde_json::to_value(w.emu.export(&app.app_id).unwrap()).unwrap();
    assert_eq!(
        ours["users"].as_array().unwrap().len(),
        theirs["users"].as_array().unwrap().len()
    );
    assert_eq!(
        ours["departments"].as_array().unwrap().len(),
        theirs["departments"].as_array().unwrap().len()
    );
    let (_, runs) = call(
        &w,
        M::GET,
        &format!("/api/v1/apps/{}/install", app.app_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(runs["items"].as_array().unwrap().len(), 3);
    let (s, _) = call(
        &w,
        M::GET,
        &format!("/api/v1/apps/{}/install/nope", app.app_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn console_page_in_headless_chromium() {
    use fantoccini::Locator;
    let w = World::new(console_world()).await;
    let users = active_users(&w);
    w.emu
        .edit_app(&w.app.app_id, |a| a.admins = vec![users[0].clone()])
        .unwrap();
    let app = second_app(&w);
    let shots = std::env::var("SCREENSHOTS_DIR")
        .ok()
        .map(std::path::PathBuf::from);
    let driver = crate::browser::Driver::start().await;
    let c = driver.client().await;
    c.set_window_size(1280, 1000).await.unwrap();
    let shot = |name: &'static str| {
        let c = c.clone();
        let dir = shots.clone();
        async move {
            let png = c.screenshot().await.unwrap();
            assert!(png.len() > 1000, "empty screenshot");
            if let Some(d) = dir {
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(format!("{name}.png")), png).unwrap();
            }
        }
    };
    let wait = |css: &'static str| {
        let c = c.clone();
        async move {
            c.wait()
                .at_most(Duration::from_secs(30))
                .for_element(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"))
        }
    };

    // Not logged in: the login screen offers the app's QR login.
    c.goto(&w.bridge.url("/console")).await.unwrap();
    wait("a.login-app").await;
    shot("console-login").await;

    // The admin scans (the emulator's QR stand-in) and lands on the console.
    w.emu.set_qr_auto_user(Some(users[0].clone()));
    c.goto(&w.bridge.url(&format!(
        "/auth/feishu/{}/login?redirect=/console",
        w.app.app_id
    )))
    .await
    .unwrap();
    wait("#new-app").await.click().await.unwrap();
    let form = wait("#binding-form").await;
    for (field, value) in [
        ("app_id", app.app_id.as_str()),
        ("app_secret", app.app_secret.as_str()),
        ("verification_token", app.verification_token.as_str()),
        ("team_name", "Demo team"),
    ] {
        form.find(Locator::Id(field))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    form.find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The new binding's checklist: copy the request URL.
    let copy = wait("button.copy[data-key=event_request_url]").await;
    let url = wait("code[data-key=event_request_url]")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(url, w.bridge.url(&format!("/feishu/{}/events", app.app_id)));
    copy.click().await.unwrap();
    wait("button.copy[data-key=event_request_url][data-copied=true]").await;
    c.execute(
        "document.getElementById('checklist').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    shot("console-checklist").await;

    // Install: every step succeeds and the organisation appears.
    wait("#install-button").await.click().await.unwrap();
    wait("#install-result[data-status=succeeded]").await;
    c.execute(
        "document.getElementById('install').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    shot("console-installed").await;
    wait("#tree button.dept").await.click().await.unwrap();
    wait("#tree li div.muted:not(:empty)").await;
    c.execute("document.getElementById('org').scrollIntoView()", vec![])
        .await
        .unwrap();
    shot("console-organisation").await;
    assert!(c.source().await.unwrap().contains(&app.app_id));
    c.close().await.unwrap();

    // A user who is not an admin is refused.
    let c2 = driver.client().await;
    w.emu.set_qr_auto_user(Some(users[1].clone()));
    c2.goto(&w.bridge.url(&format!(
        "/auth/feishu/{}/login?redirect=/console",
        w.app.app_id
    )))
    .await
    .unwrap();
    c2.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Id("not-admin"))
        .await
        .unwrap();
    if let Some(d) = &shots {
        std::fs::write(
            d.join("console-not-admin.png"),
            c2.screenshot().await.unwrap(),
        )
        .unwrap();
    }
    c2.close().await.unwrap();
}
