//! OAuth: authorize page, code exchange with PKCE, reuse, expiry, redirect_uri checks,
//! refresh, user_info, and the QR tmp_code flow.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use feishu_emulator::control::AppPatch;
use feishu_emulator::demo;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::TestApp;

const REDIRECT: &str = "http://127.0.0.1:9/auth/callback";
const VERIFIER: &str = "abcdefghijklmnopqrstuvwxyz0123456789-._~ABCDEFG";

async fn setup() -> (TestApp, reqwest::Client) {
    let app = TestApp::generated(20, 3, 1).await;
    app.emu
        .patch_app(
            demo::APP_ID,
            AppPatch {
                redirect_urls: Some(vec![REDIRECT.into()]),
                ..AppPatch::default()
            },
        )
        .unwrap();
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (app, no_redirect)
}

/// Runs the authorize page as `user`; returns the Location header.
async fn authorize(app: &TestApp, c: &reqwest::Client, extra: &str) -> (u16, String) {
    let challenge = B64URL.encode(Sha256::digest(VERIFIER.as_bytes()));
    let url = format!(
        "{}?client_id={}&response_type=code&redirect_uri={}&state=st4te&scope=offline_access&code_challenge={challenge}&code_challenge_method=S256{extra}",
        app.url("/open-apis/authen/v1/authorize"),
        demo::APP_ID,
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    let r = c.get(url).send().await.unwrap();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), loc)
}

fn code_of(location: &str) -> String {
    let u = url::Url::parse(location).unwrap();
    assert_eq!(
        u.query_pairs().find(|(k, _)| k == "state").unwrap().1,
        "st4te"
    );
    u.query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned()
}

async fn exchange(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app
        .http
        .post(app.url("/open-apis/authen/v2/oauth/token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn code_body(code: &str) -> Value {
    json!({"grant_type": "authorization_code", "client_id": demo::APP_ID, "client_secret": demo::APP_SECRET,
           "code": code, "redirect_uri": REDIRECT, "code_verifier": VERIFIER})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_login_refresh_and_user_info() {
    let (app, c) = setup().await;
    // Without a pick the page lists the tenant's users.
    let page = c
        .get(format!(
            "{}?client_id={}&redirect_uri={}&response_type=code",
            app.url("/open-apis/authen/v1/authorize"),
            demo::APP_ID,
            REDIRECT
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-user-id=\"u0000000\""));
    let (s, loc) = authorize(&app, &c, "&emulator_user=u0000004").await;
    assert_eq!(s, 302);
    assert!(loc.starts_with(REDIRECT));
    let (s, tok) = exchange(&app, code_body(&code_of(&loc))).await;
    assert_eq!((s, tok["code"].as_i64()), (200, Some(0)), "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 7200);
    assert!(tok["access_token"].as_str().unwrap().starts_with("eyJ"));
    let (s, info) = app
        .get(
            tok["access_token"].as_str().unwrap(),
            "/open-apis/authen/v1/user_info",
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        info["data"]["open_id"],
        app.emu.open_id(demo::APP_ID, "u0000004")
    );
    assert_eq!(info["data"]["tenant_key"], demo::TENANT_KEY);
    // Refresh rotates; the old refresh token is single use.
    let rt = tok["refresh_token"].as_str().unwrap();
    let body = json!({"grant_type": "refresh_token", "client_id": demo::APP_ID, "client_secret": demo::APP_SECRET, "refresh_token": rt});
    let (s, t2) = exchange(&app, body.clone()).await;
    assert_eq!((s, t2["code"].as_i64()), (200, Some(0)));
    assert_ne!(t2["refresh_token"], tok["refresh_token"]);
    let (s, again) = exchange(&app, body).await;
    assert_eq!((s, again["code"].as_i64()), (400, Some(20064)));
    // A tenant token is refused by user_info.
    let tat = app.tenant_token().await;
    let (s, v) = app.get(&tat, "/open-apis/authen/v1/user_info").await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(99991668)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkce_reuse_expiry_and_redirect_errors() {
    let (app, c) = setup().await;
    // PKCE failure.
    let (_, loc) = authorize(&app, &c, "&emulator_user=u0000001").await;
    let mut bad = code_body(&code_of(&loc));
    bad["code_verifier"] = json!("x".repeat(43));
    let (s, v) = exchange(&app, bad).await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(20049)));
    assert_eq!(v["error"], "invalid_grant");
    assert!(v["error_description"].is_string());
    // Reused code.
    let (_, loc) = authorize(&app, &c, "&emulator_user=u0000001").await;
    let code = code_of(&loc);
    assert_eq!(exchange(&app, code_body(&code)).await.1["code"], 0);
    assert_eq!(exchange(&app, code_body(&code)).await.1["code"], 20065);
    // Expired code (5 minutes).
    let (_, loc) = authorize(&app, &c, "&emulator_user=u0000001").await;
    app.emu.advance_clock(Duration::from_secs(301));
    assert_eq!(
        exchange(&app, code_body(&code_of(&loc))).await.1["code"],
        20004
    );
    // redirect_uri differing at the exchange.
    let (_, loc) = authorize(&app, &c, "&emulator_user=u0000001").await;
    let mut other = code_body(&code_of(&loc));
    other["redirect_uri"] = json!("http://127.0.0.1:9/other");
    assert_eq!(exchange(&app, other).await.1["code"], 20071);
    // Foreign redirect_uri at the authorize page.
    let r = c
        .get(format!("{}?client_id={}&redirect_uri=http%3A%2F%2Fevil.example%2Fcb&response_type=code&emulator_user=u0000001", app.url("/open-apis/authen/v1/authorize"), demo::APP_ID))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 302);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"code": 2000, "message": "redirect_uri unmatch"}));
    // Wrong secret.
    let (_, loc) = authorize(&app, &c, "&emulator_user=u0000001").await;
    let mut wrong = code_body(&code_of(&loc));
    wrong["client_secret"] = json!("nope");
    assert_eq!(exchange(&app, wrong).await.1["code"], 20002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_flow_with_tmp_code() {
    let (app, c) = setup().await;
    let sdk = c
        .get(app.url("/obj/feishu-static/lark/passport/qrcode/LarkSSOSDKWebQRCode-1.0.3.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sdk.contains("window.QRLogin") && sdk.contains("matchData"));
    app.emu.set_qr_auto_user(Some("u0000002".into()));
    let frame = c
        .get(app.url("/suite/passport/sso/qr?goto=x"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(frame.contains("postMessage") && frame.contains("u0000002"));
    let r: Value = c
        .post(app.url("/suite/passport/sso/qr/scan"))
        .json(&json!({"user_id": "u0000002", "client_id": demo::APP_ID}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tmp = r["tmp_code"].as_str().unwrap();
    let (s, loc) = authorize(&app, &c, &format!("&tmp_code={tmp}")).await;
    assert_eq!(s, 302);
    let (_, tok) = exchange(&app, code_body(&code_of(&loc))).await;
    let (_, info) = app
        .get(
            tok["access_token"].as_str().unwrap(),
            "/open-apis/authen/v1/user_info",
        )
        .await;
    assert_eq!(info["data"]["user_id"], "u0000002");
    // tmp_code is single use.
    let (s, _) = authorize(&app, &c, &format!("&tmp_code={tmp}")).await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_oidc_exchange_with_app_access_token() {
    let (app, c) = setup().await;
    let aat: Value = app
        .http
        .post(app.url("/open-apis/auth/v3/app_access_token/internal"))
        .json(&json!({"app_id": demo::APP_ID, "app_secret": demo::APP_SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let aat = aat["app_access_token"].as_str().unwrap();
    let (_, loc) = authorize(&app, &c, "&emulator_user=u0000006").await;
    let body = json!({"grant_type": "authorization_code", "code": code_of(&loc)});
    let (s, v) = app
        .post(aat, "/open-apis/authen/v1/oidc/access_token", &body)
        .await;
    assert_eq!((s, v["code"].as_i64()), (200, Some(0)), "{v}");
    let (s, v2) = app
        .post(aat, "/open-apis/authen/v1/oidc/access_token", &body)
        .await;
    assert_eq!((s, v2["code"].as_i64()), (400, Some(20065)));
    let rt = v["data"]["refresh_token"].as_str().unwrap();
    let (s, r) = app
        .post(
            aat,
            "/open-apis/authen/v1/oidc/refresh_access_token",
            &json!({"grant_type": "refresh_token", "refresh_token": rt}),
        )
        .await;
    assert_eq!((s, r["code"].as_i64()), (200, Some(0)));
    let (_, info) = app
        .get(
            r["data"]["access_token"].as_str().unwrap(),
            "/open-apis/authen/v1/user_info",
        )
        .await;
    assert_eq!(info["data"]["user_id"], "u0000006");
    let tat = app.tenant_token().await;
    let (s, v) = app
        .post(&tat, "/open-apis/authen/v1/oidc/access_token", &body)
        .await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(99991664)));
}
