//! auth against the emulator, real PostgreSQL and RabbitMQ: the QR login in headless
//! Chromium, the same flow over HTTP, the in-client code, sessions (refresh rotation, reuse,
//! logout seen by another process), JWKS verification from outside, key rotation, and every
//! refused login with its reason and no session.

use std::collections::HashMap;
use std::time::Duration;

use bridge_contracts::topology::AUTH_EVENTS;
use bridge_contracts::v1::{AuthEvent, AuthEventKind};
use bridge_session::{KeySource, Verifier, VerifierOptions, VerifyError};
use feishu_bridge::Role;
use prost::Message as _;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::Value;

use crate::directory::{World, WorldOptions};
use crate::helpers::{until, Bridge, BusQueue};

/// A browser without JavaScript: a cookie jar (ignoring paths) and no automatic redirects.
struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, r: &reqwest::Response) {
        for h in r.headers().get_all(SET_COOKIE) {
            let s = h.to_str().unwrap();
            let (pair, attrs) = s.split_once(';').unwrap_or((s, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") || v.is_empty() {
                self.jar.remove(k.trim());
            } else {
                self.jar.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let r = self
            .http
            .get(url)
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    async fn post(&mut self, url: &str, body: Option<Value>) -> reqwest::Response {
        let mut req = self.http.post(url).header(COOKIE, self.cookie_header());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        self.keep_cookies(&r);
        r
    }

    fn has(&self, name: &str) -> bool {
        self.jar.contains_key(name)
    }
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location in a {} answer", r.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// The "log in with Feishu" link of a login page.
fn authorize_link(html: &str) -> String {
    let at = html
        .find("id=\"feishu-login\" href=\"")
        .expect("login link")
        + 24;
    let end = at + html[at..].find('"').unwrap();
    html[at..end].replace("&amp;", "&")
}

fn login_url(w: &World, redirect: &str) -> String {
    w.bridge.url(&format!(
        "/auth/feishu/{}/login?redirect={}",
        w.app.app_id,
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    ))
}

/// Opens the login page and returns the authorize URL it leads to.
async fn start_login(w: &World, b: &mut Browser, redirect: &str) -> String {
    let r = b.get(&login_url(w, redirect)).await;
    assert_eq!(r.status(), StatusCode::OK);
    authorize_link(&r.text().await.unwrap())
}

/// Feishu's side: the user approves; returns the callback URL Feishu redirects to.
async fn approve(b: &mut Browser, authorize: &str, user_id: &str) -> String {
    let r = b.get(&format!("{authorize}&emulator_user={user_id}")).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{}", r.text().await.unwrap());
    location(&r)
}

/// A whole login over HTTP; returns the callback's answer.
async fn login_as(w: &World, b: &mut Browser, user_id: &str, redirect: &str) -> reqwest::Response {
    let authorize = start_login(w, b, redirect).await;
    let callback = approve(b, &authorize, user_id).await;
    b.get(&callback).await
}

/// Logs `user_id` in over HTTP; returns the access token.
pub async fn login_session(w: &World, user_id: &str) -> String {
    let mut b = Browser::new();
    let r = login_as(w, &mut b, user_id, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    b.jar["fb_session"].clone()
}

/// Users of the tenant, by user_id, that are active.
pub fn active_users(w: &World) -> Vec<String> {
    w.tenant()
        .users
        .values()
        .filter(|u| !u.status.is_resigned && !u.status.is_frozen)
        .map(|u| u.user_id.clone())
        .collect()
}

async fn me(w: &World, access: &str) -> reqwest::Response {
    w.bridge
        .http
        .get(w.bridge.url("/auth/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

/// A refused login: the status, the page's code, and no session cookie.
async fn assert_refused(b: &Browser, r: reqwest::Response, status: StatusCode, code: u32) {
    let got = r.status();
    let page = r.text().await.unwrap();
    assert_eq!(got, status, "{page}");
    assert!(
        page.contains(&format!("code {code}")),
        "want code {code}: {page}"
    );
    assert!(!b.has("fb_session"), "a refused login set a session");
}

fn small_world() -> WorldOptions {
    WorldOptions {
        users: 30,
        departments: 4,
        ..Default::default()
    }
}

#[tokio::test]
async fn qr_login_over_http_then_refresh_logout_and_events() {
    let w = World::new(small_world()).await;
    w.sync().await.unwrap();
    let users = active_users(&w);
    let admin = users[0].clone();
    w.emu
        .edit_app(&w.app.app_id, |a| a.admins = vec![admin.clone()])
        .unwrap();
    let mut events = BusQueue::bind(AUTH_EVENTS, &format!("{}.auth.*", w.app.app_id)).await;

    // A plain user logs in and lands where the login started.
    let mut b = Browser::new();
    let r = login_as(&w, &mut b, &users[1], "/app/forms?tab=mine").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/app/forms?tab=mine");
    let access = b.jar["fb_session"].clone();
    let refresh = b.jar["fb_refresh"].clone();
    let open_id = w.emu.open_id(&w.app.app_id, &users[1]);
    let who: Value = me(&w, &access).await.json().await.unwrap();
    assert_eq!(who["open_id"], open_id.as_str());
    assert_eq!(who["sub"], open_id.as_str());
    assert_eq!(who["app_id"], w.app.app_id.as_str());
    assert_eq!(who["admin"], false);
    assert_eq!(who["name"], w.tenant().users[&users[1]].name.as_str());
    assert!(!who["tenant_key"].as_str().unwrap().is_empty());
    let login: AuthEvent = AuthEvent::decode(events.next().await.body.as_slice()).unwrap();
    assert_eq!(login.kind, AuthEventKind::Login as i32);
    assert_eq!(login.open_id, open_id);
    assert_eq!(login.method, "qr");

    // The session opens the read API of its own app; starting a sync needs an admin.
    let tree = w
        .bridge
        .http
        .get(
            w.bridge
                .url(&format!("/api/v1/apps/{}/departments", w.app.app_id)),
        )
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(tree.status(), StatusCode::OK);
    let sync = w
        .bridge
        .http
        .post(w.bridge.url(&format!("/api/v1/apps/{}/sync", w.app.app_id)))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), StatusCode::FORBIDDEN);

    // The admin's session says so.
    let mut ab = Browser::new();
    let r = login_as(&w, &mut ab, &admin, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let who: Value = me(&w, &ab.jar["fb_session"]).await.json().await.unwrap();
    assert_eq!(who["admin"], true);
    events.next().await;

    // Refresh rotates both tokens.
    let r = b.post(&w.bridge.url("/auth/refresh"), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let fresh: Value = r.json().await.unwrap();
    let access2 = fresh["access_token"].as_str().unwrap().to_string();
    let refresh2 = fresh["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh);
    assert_eq!(me(&w, &access2).await.status(), StatusCode::OK);

    // The old refresh token used again: refused, and the whole session is revoked.
    let r = b
        .post(
            &w.bridge.url("/auth/refresh"),
            Some(serde_json::json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("already used"));
    assert_eq!(me(&w, &access2).await.status(), StatusCode::UNAUTHORIZED);
    let r = b
        .post(
            &w.bridge.url("/auth/refresh"),
            Some(serde_json::json!({"refresh_token": refresh2})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let reuse = AuthEvent::decode(events.next().await.body.as_slice()).unwrap();
    assert_eq!(reuse.kind, AuthEventKind::Logout as i32);
    assert_eq!(reuse.method, "refresh_reuse");

    // Logout stops the session everywhere: here at once, in another process within its poll.
    let mut other_settings = w.settings.clone();
    other_settings.broker.queue_prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    let other = Bridge::start_with(other_settings, Role::DirectorySync).await;
    let admin_access = ab.jar["fb_session"].clone();
    let dept_url = other.url(&format!("/api/v1/apps/{}/departments", w.app.app_id));
    let seen = other
        .http
        .get(&dept_url)
        .bearer_auth(&admin_access)
        .send()
        .await
        .unwrap();
    assert_eq!(seen.status(), StatusCode::OK);
    let r = ab.post(&w.bridge.url("/auth/logout"), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!ab.has("fb_session") && !ab.has("fb_refresh"));
    assert_eq!(
        me(&w, &admin_access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    until(
        "the other process refuses the logged-out session",
        Duration::from_secs(10),
        || async {
            let r = other
                .http
                .get(&dept_url)
                .bearer_auth(&admin_access)
                .send()
                .await;
            r.unwrap().status() == StatusCode::UNAUTHORIZED
        },
    )
    .await;
    let out = AuthEvent::decode(events.next().await.body.as_slice()).unwrap();
    assert_eq!(out.kind, AuthEventKind::Logout as i32);
    assert_eq!(out.method, "logout");
    assert_eq!(out.open_id, w.emu.open_id(&w.app.app_id, &admin));
    // Logging out twice is harmless and says so.
    let r = w
        .bridge
        .http
        .post(w.bridge.url("/auth/logout"))
        .json(&serde_json::json!({"refresh_token": ab_refresh_or_empty(&ab)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    other.stop().await;
}

fn ab_refresh_or_empty(b: &Browser) -> String {
    b.jar.get("fb_refresh").cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_person_directory_sync_has_not_seen_is_recorded_at_login() {
    let w = World::new(WorldOptions {
        events: false,
        ..small_world()
    })
    .await;
    let users = active_users(&w);
    let mut b = Browser::new();
    let r = login_as(&w, &mut b, &users[2], "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let open_id = w.emu.open_id(&w.app.app_id, &users[2]);
    let row = w.get(&format!("/users/{open_id}")).await;
    assert_eq!(row.status(), StatusCode::OK);
    // The next full sync owns the row: same person, no duplicate.
    w.sync().await.unwrap();
    w.wait_equal(Duration::from_secs(10)).await;

    // Someone the directory has not seen and the contact API does not show the app.
    w.emu
        .set_contact_scope(
            &w.app.app_id,
            feishu_emulator::ContactScope {
                all: false,
                department_ids: vec![],
                user_ids: users[..3].to_vec(),
            },
        )
        .unwrap();
    let outsider = users
        .iter()
        .find(|u| {
            let open_id = w.emu.open_id(&w.app.app_id, u);
            !users[..3].contains(u) && !open_id.is_empty()
        })
        .unwrap()
        .clone();
    crate::helpers::count_rows(
        &w.settings,
        &format!(
            "WITH d AS (DELETE FROM users WHERE open_id = '{}' RETURNING 1) SELECT count(*) AS n FROM d",
            w.emu.open_id(&w.app.app_id, &outsider)
        ),
    )
    .await;
    let mut o = Browser::new();
    let r = login_as(&w, &mut o, &outsider, "/").await;
    assert_refused(&o, r, StatusCode::FORBIDDEN, 40324).await;
}

#[tokio::test]
async fn refused_logins_say_why_and_open_no_session() {
    let w = World::new(small_world()).await;
    w.sync().await.unwrap();
    let users = active_users(&w);

    // No state.
    let mut b = Browser::new();
    let r = b
        .get(
            &w.bridge
                .url(&format!("/auth/feishu/{}/callback?code=abc", w.app.app_id)),
        )
        .await;
    assert_refused(&b, r, StatusCode::BAD_REQUEST, 40021).await;

    // The answer arrives in a browser that did not start the login.
    let mut a = Browser::new();
    let authorize = start_login(&w, &mut a, "/").await;
    let callback = approve(&mut a, &authorize, &users[0]).await;
    let mut stranger = Browser::new();
    let _ = start_login(&w, &mut stranger, "/").await; // a login cookie of its own
    let r = stranger.get(&callback).await;
    assert_refused(&stranger, r, StatusCode::BAD_REQUEST, 40021).await;
    // The rightful browser still completes it, once.
    let r = a.get(&callback).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let mut replay = Browser::new();
    replay.jar = a.jar.clone();
    replay.jar.remove("fb_session");
    let r = replay.get(&callback).await;
    assert_refused(&replay, r, StatusCode::BAD_REQUEST, 40021).await;

    // A used code under a fresh login: Feishu refuses it.
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let mut c = Browser::new();
    let authorize = start_login(&w, &mut c, "/").await;
    let state = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let r = c
        .get(&w.bridge.url(&format!(
            "/auth/feishu/{}/callback?code={code}&state={state}",
            w.app.app_id
        )))
        .await;
    assert_refused(&c, r, StatusCode::BAD_REQUEST, 40023).await;

    // An expired code (Feishu's five minutes passed).
    let mut d = Browser::new();
    let authorize = start_login(&w, &mut d, "/").await;
    let callback = approve(&mut d, &authorize, &users[0]).await;
    w.emu.advance_clock(Duration::from_secs(6 * 60));
    let r = d.get(&callback).await;
    assert_refused(&d, r, StatusCode::BAD_REQUEST, 40023).await;

    // PKCE: the code was issued for another challenge.
    let mut e = Browser::new();
    let authorize = start_login(&w, &mut e, "/").await;
    let forged = authorize.replace("code_challenge=", "code_challenge=x");
    let callback = approve(&mut e, &forged, &users[0]).await;
    let r = e.get(&callback).await;
    assert_refused(&e, r, StatusCode::BAD_REQUEST, 40024).await;

    // A login that expired on our side.
    let mut f = Browser::new();
    let authorize = start_login(&w, &mut f, "/").await;
    let callback = approve(&mut f, &authorize, &users[0]).await;
    crate::helpers::count_rows(
        &w.settings,
        "WITH u AS (UPDATE auth_login_states SET expires_at = now() - interval '1 second' WHERE used_at IS NULL RETURNING 1) SELECT count(*) AS n FROM u",
    )
    .await;
    let r = f.get(&callback).await;
    assert_refused(&f, r, StatusCode::BAD_REQUEST, 40021).await;

    // After login, only this platform's pages.
    let mut g = Browser::new();
    for target in [
        "https://evil.example/",
        "//evil.example/x",
        "javascript:alert(1)",
    ] {
        let r = g.get(&login_url(&w, target)).await;
        assert_refused(&g, r, StatusCode::BAD_REQUEST, 40020).await;
    }

    // A resigned and a frozen account, as the directory knows them.
    let resigned = w.emu.open_id(&w.app.app_id, &users[3]);
    let frozen = w.emu.open_id(&w.app.app_id, &users[4]);
    crate::helpers::count_rows(
        &w.settings,
        &format!(
            "WITH u AS (UPDATE users SET is_resigned = (open_id = '{resigned}'), is_frozen = (open_id = '{frozen}') WHERE open_id IN ('{resigned}', '{frozen}') RETURNING 1) SELECT count(*) AS n FROM u"
        ),
    )
    .await;
    let mut h = Browser::new();
    let r = login_as(&w, &mut h, &users[3], "/").await;
    assert_refused(&h, r, StatusCode::FORBIDDEN, 40325).await;
    let r = login_as(&w, &mut h, &users[4], "/").await;
    assert_refused(&h, r, StatusCode::FORBIDDEN, 40326).await;

    // Outside the app's contact scope (still allowed to use the app).
    let outsider = users[5].clone();
    w.emu
        .set_contact_scope(
            &w.app.app_id,
            feishu_emulator::ContactScope {
                all: false,
                department_ids: vec![],
                user_ids: users[..5].to_vec(),
            },
        )
        .unwrap();
    // Once directory-sync applied the scope change, the outsider's row is a tombstone.
    w.wait_equal(Duration::from_secs(20)).await;
    let mut i = Browser::new();
    let r = login_as(&w, &mut i, &outsider, "/").await;
    assert_refused(&i, r, StatusCode::FORBIDDEN, 40324).await;

    // The operator switched QR login off: the login page says so.
    let mut binding = w.app.provision(true);
    binding.qr_login_enabled = false;
    set_binding(&w, binding).await;
    let mut j = Browser::new();
    let r = j.get(&login_url(&w, "/")).await;
    assert_refused(&j, r, StatusCode::FORBIDDEN, 40321).await;
    // And a disabled binding refuses the callback too.
    set_binding(&w, w.app.provision(false)).await;
    let r = j
        .get(&w.bridge.url(&format!(
            "/auth/feishu/{}/callback?code=a&state=b",
            w.app.app_id
        )))
        .await;
    assert_refused(&j, r, StatusCode::FORBIDDEN, 40320).await;
}

/// Replaces the app's binding in the database and waits until the bridge sees it.
async fn set_binding(w: &World, p: bridge_runtime::settings::AppProvision) {
    let key =
        bridge_store::MasterKey::from_base64(w.settings.security.master_key.as_ref().unwrap())
            .unwrap();
    let db = bridge_store::connect(
        secrecy::ExposeSecret::expose_secret(w.settings.database.url.as_ref().unwrap()),
        2,
        false,
    )
    .await
    .unwrap();
    let reg = bridge_store::AppRegistry::load(db, key).await.unwrap();
    let want = (p.enabled, p.qr_login_enabled);
    reg.upsert(&bridge_store::apps::BindingInput {
        app_id: p.app_id.clone(),
        app_secret: p.app_secret,
        encrypt_key: p.encrypt_key,
        verification_token: p.verification_token,
        team_name: p.team_name,
        domain: bridge_store::Domain::Feishu,
        enabled: p.enabled,
        qr_login_enabled: p.qr_login_enabled,
        delivery: bridge_store::Delivery::Webhook,
    })
    .await
    .unwrap();
    // The bridge's registry reloads when the table changes (every 2 s).
    until(
        "the bridge sees the binding change",
        Duration::from_secs(10),
        || async {
            match want {
                // A disabled binding refuses even the callback (before looking at the state).
                (false, _) => {
                    let probe = w.bridge.url(&format!(
                        "/auth/feishu/{}/callback?code=a&state=b",
                        w.app.app_id
                    ));
                    reqwest::get(probe).await.unwrap().status() == StatusCode::FORBIDDEN
                }
                (true, qr) => {
                    let r = reqwest::get(login_url(w, "/")).await.unwrap().status();
                    r == if qr {
                        StatusCode::OK
                    } else {
                        StatusCode::FORBIDDEN
                    }
                }
            }
        },
    )
    .await;
}

#[tokio::test]
async fn in_client_code_login() {
    let w = World::new(small_world()).await;
    let users = active_users(&w);
    // Inside Feishu the page gets a code from the JS API; here, from the authorize page.
    let callback = w
        .bridge
        .url(&format!("/auth/feishu/{}/callback", w.app.app_id));
    let mut b = Browser::new();
    let authorize = format!(
        "{}/open-apis/authen/v1/authorize?client_id={}&response_type=code&redirect_uri={}&state=x&emulator_user={}",
        w.settings.feishu.base_url.as_ref().unwrap().as_str().trim_end_matches('/'),
        w.app.app_id,
        url::form_urlencoded::byte_serialize(callback.as_bytes()).collect::<String>(),
        users[0]
    );
    let r = b.get(&authorize).await;
    let code = url::Url::parse(&location(&r))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let url = w.bridge.url(&format!("/auth/feishu/{}/code", w.app.app_id));
    let r = b
        .post(&url, Some(serde_json::json!({ "code": code })))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(b.has("fb_session"));
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["token_type"], "Bearer");
    assert_eq!(
        s["user"]["open_id"],
        w.emu.open_id(&w.app.app_id, &users[0]).as_str()
    );
    assert_eq!(
        me(&w, s["access_token"].as_str().unwrap()).await.status(),
        StatusCode::OK
    );

    // The same code again, an empty one, a body that is not JSON.
    let mut c = Browser::new();
    let r = c
        .post(&url, Some(serde_json::json!({ "code": code })))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 40023);
    let r = c.post(&url, Some(serde_json::json!({ "code": "" }))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(!c.has("fb_session"));
}

/// The service's active private key, read the way auth reads it (tests only).
async fn signing_key(w: &World) -> (String, Vec<u8>) {
    let key =
        bridge_store::MasterKey::from_base64(w.settings.security.master_key.as_ref().unwrap())
            .unwrap();
    let db = bridge_store::connect(
        secrecy::ExposeSecret::expose_secret(w.settings.database.url.as_ref().unwrap()),
        2,
        false,
    )
    .await
    .unwrap();
    use bridge_store::entity::auth_signing_key as k;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let row = k::Entity::find()
        .filter(k::Column::RetiredAt.is_null())
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let der = key
        .open(
            &row.private_key,
            &format!("auth_signing_keys.private_key:{}", row.kid),
        )
        .unwrap();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(secrecy::ExposeSecret::expose_secret(&der))
        .unwrap();
    (row.kid, der)
}

#[tokio::test]
async fn tokens_verify_from_outside_and_forgeries_do_not() {
    let w = World::new(small_world()).await;
    let users = active_users(&w);
    let mut b = Browser::new();
    assert_eq!(
        login_as(&w, &mut b, &users[0], "/").await.status(),
        StatusCode::SEE_OTHER
    );
    let token = b.jar["fb_session"].clone();

    // Another platform service: only the JWKS URL.
    let outside = Verifier::new(
        KeySource::JwksUrl(w.bridge.url("/.well-known/jwks.json").parse().unwrap()),
        VerifierOptions::default(),
    );
    let c = outside.verify(&token).await.unwrap();
    assert_eq!(c.open_id, w.emu.open_id(&w.app.app_id, &users[0]));

    // A changed payload, someone else's key under our kid, alg none, an expired token.
    let parts: Vec<&str> = token.split('.').collect();
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    claims["admin"] = Value::Bool(true);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    );
    assert!(matches!(
        outside.verify(&tampered).await,
        Err(VerifyError::BadSignature)
    ));
    for bad in [
        &tampered,
        &format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        ),
        &"garbage".to_string(),
    ] {
        let r = me(&w, bad).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let (kid, _) = signing_key(&w).await;
    let rng = ring::rand::SystemRandom::new();
    let foreign = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let forged = jsonwebtoken::encode(
        &header,
        &c,
        &jsonwebtoken::EncodingKey::from_ed_der(foreign.as_ref()),
    )
    .unwrap();
    assert!(matches!(
        outside.verify(&forged).await,
        Err(VerifyError::BadSignature)
    ));
    let (_, der) = signing_key(&w).await;
    let mut old = c.clone();
    old.exp = chrono::Utc::now().timestamp() - 120;
    let expired =
        jsonwebtoken::encode(&header, &old, &jsonwebtoken::EncodingKey::from_ed_der(&der)).unwrap();
    assert!(matches!(
        outside.verify(&expired).await,
        Err(VerifyError::Expired)
    ));
    assert_eq!(me(&w, &expired).await.status(), StatusCode::UNAUTHORIZED);
    let mut other_app = c.clone();
    other_app.aud = "someone-else".into();
    let wrong_aud = jsonwebtoken::encode(
        &header,
        &other_app,
        &jsonwebtoken::EncodingKey::from_ed_der(&der),
    )
    .unwrap();
    assert!(matches!(
        outside.verify(&wrong_aud).await,
        Err(VerifyError::WrongAudience(_))
    ));

    // Rotation: new logins carry the new key, earlier tokens still verify, both published.
    let db_url =
        secrecy::ExposeSecret::expose_secret(w.settings.database.url.as_ref().unwrap()).to_string();
    let db = bridge_store::connect(&db_url, 2, false).await.unwrap();
    let mk = bridge_store::MasterKey::from_base64(w.settings.security.master_key.as_ref().unwrap())
        .unwrap();
    let new_kid = bridge_auth::rotate_signing_key(&db, &mk, &w.settings.auth)
        .await
        .unwrap();
    assert_ne!(new_kid, kid);
    w.bridge.auth.as_ref().unwrap().reload_key().await.unwrap();
    let mut b2 = Browser::new();
    assert_eq!(
        login_as(&w, &mut b2, &users[1], "/").await.status(),
        StatusCode::SEE_OTHER
    );
    let t2 = b2.jar["fb_session"].clone();
    let h2 = jsonwebtoken::decode_header(&t2).unwrap();
    assert_eq!(h2.kid.as_deref(), Some(new_kid.as_str()));
    outside.verify(&t2).await.unwrap();
    outside.verify(&token).await.unwrap();
    let jwks: Value = reqwest::get(w.bridge.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{kids:?}"
    );
    assert!(
        jwks.to_string().find("\"d\"").is_none(),
        "the JWKS leaks a private key"
    );
}

#[tokio::test]
async fn qr_login_in_headless_chromium() {
    let w = World::new(small_world()).await;
    let users = active_users(&w);
    w.emu.set_qr_auto_user(Some(users[0].clone()));
    let driver = crate::browser::Driver::start().await;
    let client = driver.client().await;
    client.goto(&login_url(&w, "/auth/me")).await.unwrap();
    // The QR frame "scans", posts the tmp_code, the page follows it through Feishu's
    // authorize page to the callback, which sets the session and redirects to /auth/me.
    until(
        "the browser reaches /auth/me",
        Duration::from_secs(30),
        || async { client.current_url().await.unwrap().path() == "/auth/me" },
    )
    .await;
    let body = client.source().await.unwrap();
    let open_id = w.emu.open_id(&w.app.app_id, &users[0]);
    assert!(body.contains(&open_id), "{body}");
    client.close().await.unwrap();
}
