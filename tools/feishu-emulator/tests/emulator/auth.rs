//! Token endpoints: shapes, wrong credentials, reissue rule, expiry.

use std::time::Duration;

use feishu_emulator::{demo, Settings};
use serde_json::{json, Value};

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_token_shape_and_reuse() {
    let app = TestApp::generated(10, 2, 1).await;
    let body = json!({"app_id": demo::APP_ID, "app_secret": demo::APP_SECRET});
    let url = app.url("/open-apis/auth/v3/tenant_access_token/internal");
    let a: Value = app
        .http
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["code"], 0);
    assert_eq!(a["msg"], "ok");
    assert!(
        a.get("data").is_none(),
        "token endpoints have no data wrapper"
    );
    assert!(a["tenant_access_token"].as_str().unwrap().starts_with("t-"));
    assert_eq!(a["expire"], 7200);
    // Same token with a smaller expire while >= 30 min remain.
    app.emu.advance_clock(Duration::from_secs(600));
    let b: Value = app
        .http
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["tenant_access_token"], b["tenant_access_token"]);
    assert_eq!(b["expire"], 6600);
    // < 30 min left: a new token; the old one still works.
    app.emu.advance_clock(Duration::from_secs(5700));
    let c: Value = app
        .http
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(a["tenant_access_token"], c["tenant_access_token"]);
    assert_eq!(c["expire"], 7200);
    let old = a["tenant_access_token"].as_str().unwrap();
    let (s, v) = app.get(old, "/open-apis/contact/v3/scopes").await;
    assert_eq!((s, v["code"].clone()), (200, json!(0)));
    // Old token expires at its 2 h mark.
    app.emu.advance_clock(Duration::from_secs(1000));
    let (s, v) = app.get(old, "/open-apis/contact/v3/scopes").await;
    assert_eq!(s, 400);
    assert_eq!(v["code"], 99991663);
    let new = c["tenant_access_token"].as_str().unwrap();
    let (_, v) = app.get(new, "/open-apis/contact/v3/scopes").await;
    assert_eq!(v["code"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_token_and_wrong_credentials() {
    let app = TestApp::generated(10, 2, 1).await;
    let url = app.url("/open-apis/auth/v3/app_access_token/internal");
    let v: Value = app
        .http
        .post(&url)
        .json(&json!({"app_id": demo::APP_ID, "app_secret": demo::APP_SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], 0);
    assert!(v["app_access_token"].as_str().unwrap().starts_with("a-"));
    assert!(v["tenant_access_token"].as_str().unwrap().starts_with("t-"));
    let url = app.url("/open-apis/auth/v3/tenant_access_token/internal");
    let r = app
        .http
        .post(&url)
        .json(&json!({"app_id": demo::APP_ID, "app_secret": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 10014);
    let v: Value = app
        .http
        .post(&url)
        .json(&json!({"app_id": "cli_0000000000000000", "app_secret": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], 10003);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_and_expired_tokens() {
    let app = TestApp::generated(10, 2, 1).await;
    app.emu
        .set_settings(Settings {
            token_lifetime_secs: 60,
            token_reissue_below_secs: 15,
            ..app.emu.settings()
        })
        .unwrap();
    let r = app
        .http
        .get(app.url("/open-apis/contact/v3/scopes"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 99991661);
    let (s, v) = app.get("t-unknown", "/open-apis/contact/v3/scopes").await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(99991663)));
    let tok = app.tenant_token().await;
    app.emu.advance_clock(Duration::from_secs(61));
    let (s, v) = app.get(&tok, "/open-apis/contact/v3/scopes").await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(99991663)));
}
