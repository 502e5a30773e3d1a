//! The control API under `/_emulator/` (a prefix no Feishu path uses): load/generate state,
//! mutate the organisation, simulate users, read the export, inbox and push log, set faults,
//! limits and settings. Every route mirrors a Rust method on [`Emulator`].

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::emulator::{lock, Emulator};
use crate::error::EmulatorError;
use crate::faults::Fault;
use crate::generate::GenerateSpec;
use crate::mutate::{NewDepartment, NewUser, UserPatch};
use crate::state::{App, ContactScope, Settings, State};

type R = Result<HttpResponse, EmulatorError>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_emulator")
            .route("/state", web::get().to(get_state))
            .route("/state", web::put().to(put_state))
            .route("/generate", web::post().to(generate))
            .route("/settings", web::get().to(get_settings))
            .route("/settings", web::put().to(put_settings))
            .route("/limits", web::get().to(get_limits))
            .route("/limits", web::put().to(put_limits))
            .route("/clock/advance", web::post().to(advance_clock))
            .route("/faults", web::get().to(get_faults))
            .route("/faults", web::put().to(put_faults))
            .route("/apps", web::get().to(list_apps))
            .route("/apps", web::post().to(add_app))
            .route("/apps/{app_id}", web::get().to(get_app))
            .route("/apps/{app_id}", web::patch().to(patch_app))
            .route("/apps/{app_id}/request_url", web::put().to(put_request_url))
            .route(
                "/apps/{app_id}/callback_url",
                web::put().to(put_callback_url),
            )
            .route("/apps/{app_id}/contact_scope", web::put().to(put_scope))
            .route(
                "/apps/{app_id}/availability",
                web::put().to(put_availability),
            )
            .route("/apps/{app_id}/export", web::get().to(export))
            .route("/users", web::post().to(create_user))
            .route("/users/{user_id}", web::patch().to(update_user))
            .route("/users/{user_id}", web::delete().to(delete_user))
            .route("/users/{user_id}/move", web::post().to(move_user))
            .route("/users/{user_id}/freeze", web::post().to(freeze_user))
            .route("/users/{user_id}/resign", web::post().to(resign_user))
            .route("/departments", web::post().to(create_department))
            .route("/departments/{id}", web::patch().to(update_department))
            .route("/departments/{id}", web::delete().to(delete_department))
            .route("/messages/p2p", web::post().to(user_message))
            .route("/messages/group", web::post().to(user_mention))
            .route("/cards/click", web::post().to(card_click))
            .route("/chats/{chat_id}/bots", web::post().to(add_bot))
            .route("/inbox", web::get().to(inbox))
            .route("/push_log", web::get().to(push_log))
            .route("/events", web::get().to(events))
            .route("/qr/auto_user", web::put().to(put_qr_auto_user))
            .route("/qr/scan", web::post().to(qr_scan))
            .route(
                "/apps/{app_id}/subscription",
                web::put().to(put_subscription),
            )
            .route("/apps/{app_id}/connections", web::get().to(get_connections))
            .route("/long_connection", web::get().to(get_ws_settings))
            .route("/long_connection", web::put().to(put_ws_settings))
            .route("/long_connection/kill", web::post().to(kill_connections)),
    );
}

fn json_ok(v: impl serde::Serialize) -> R {
    Ok(HttpResponse::Ok().json(v))
}

async fn get_state(emu: web::Data<Emulator>) -> R {
    json_ok(emu.snapshot())
}

async fn put_state(emu: web::Data<Emulator>, s: web::Json<State>) -> R {
    emu.load(s.into_inner());
    json_ok(json!({"ok": true}))
}

async fn generate(emu: web::Data<Emulator>, spec: web::Json<GenerateSpec>) -> R {
    let state = crate::generate::generate(spec.into_inner());
    // Generation takes a while for big organisations; keep it off the server's threads.
    let emu2 = emu.get_ref().clone();
    tokio::task::spawn_blocking(move || emu2.load(state))
        .await
        .map_err(|e| EmulatorError::Invalid(e.to_string()))?;
    json_ok(json!({"ok": true}))
}

async fn get_settings(emu: web::Data<Emulator>) -> R {
    json_ok(emu.settings())
}

async fn put_settings(emu: web::Data<Emulator>, s: web::Json<Settings>) -> R {
    emu.set_settings(s.into_inner())?;
    json_ok(emu.settings())
}

#[derive(Deserialize)]
struct Limits {
    rate_limit_scale: f64,
}

async fn get_limits(emu: web::Data<Emulator>) -> R {
    json_ok(json!({"rate_limit_scale": emu.settings().rate_limit_scale}))
}

async fn put_limits(emu: web::Data<Emulator>, l: web::Json<Limits>) -> R {
    emu.set_rate_limit_scale(l.rate_limit_scale)?;
    get_limits(emu).await
}

#[derive(Deserialize)]
struct Advance {
    secs: u64,
}

async fn advance_clock(emu: web::Data<Emulator>, a: web::Json<Advance>) -> R {
    emu.advance_clock(std::time::Duration::from_secs(a.secs));
    json_ok(json!({"now_ms": emu.clock().now_ms()}))
}

async fn get_faults(emu: web::Data<Emulator>) -> R {
    json_ok(emu.faults())
}

async fn put_faults(emu: web::Data<Emulator>, f: web::Json<Vec<Fault>>) -> R {
    emu.set_faults(f.into_inner());
    json_ok(emu.faults())
}

async fn list_apps(emu: web::Data<Emulator>) -> R {
    let s = emu.snapshot();
    let apps: Vec<Value> = s
        .tenants
        .iter()
        .flat_map(|t| {
            t.apps
                .iter()
                .map(move |a| json!({"tenant_key": t.tenant_key, "app": a}))
        })
        .collect();
    json_ok(apps)
}

async fn add_app(emu: web::Data<Emulator>, a: web::Json<App>) -> R {
    emu.add_app(a.into_inner())?;
    json_ok(json!({"ok": true}))
}

async fn get_app(emu: web::Data<Emulator>, p: web::Path<String>) -> R {
    let app = emu
        .app(&p)
        .ok_or_else(|| EmulatorError::NotFound(format!("app {p}")))?;
    json_ok(app)
}

/// Console-editable app settings.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AppPatch {
    pub redirect_urls: Option<Vec<String>>,
    pub callback_url: Option<String>,
    pub admins: Option<Vec<String>>,
    pub bot_enabled: Option<bool>,
    /// `""` removes the Encrypt Key (plain events with `header.token`).
    pub encrypt_key: Option<String>,
    pub verification_token: Option<String>,
    pub app_secret: Option<String>,
    pub scopes: Option<Vec<String>>,
}

impl Emulator {
    /// Applies console-style app settings.
    pub fn patch_app(&self, app_id: &str, p: AppPatch) -> Result<(), EmulatorError> {
        self.edit_app(app_id, |a| {
            if let Some(v) = p.redirect_urls {
                a.redirect_urls = v;
            }
            if let Some(v) = p.callback_url {
                a.callback_url = (!v.is_empty()).then_some(v);
            }
            if let Some(v) = p.admins {
                a.admins = v;
            }
            if let Some(v) = p.bot_enabled {
                a.bot_enabled = v;
            }
            if let Some(v) = p.encrypt_key {
                a.encrypt_key = (!v.is_empty()).then_some(v);
            }
            if let Some(v) = p.verification_token {
                a.verification_token = v;
            }
            if let Some(v) = p.app_secret {
                a.app_secret = v;
            }
            if let Some(v) = p.scopes {
                a.scopes = v;
            }
        })
    }

    /// Sets the rate-limit scale (must be > 0: limits are never switched off).
    pub fn set_rate_limit_scale(&self, scale: f64) -> Result<(), EmulatorError> {
        self.set_settings(Settings {
            rate_limit_scale: scale,
            ..self.settings()
        })
    }

    /// The fault rules in force.
    pub fn faults(&self) -> Vec<Fault> {
        lock(&self.inner.faults).rules.clone()
    }

    /// Replaces the fault rules.
    pub fn set_faults(&self, rules: Vec<Fault>) {
        lock(&self.inner.faults).rules = rules;
    }
}

async fn patch_app(emu: web::Data<Emulator>, p: web::Path<String>, b: web::Json<AppPatch>) -> R {
    emu.patch_app(&p, b.into_inner())?;
    get_app(emu, p).await
}

#[derive(Deserialize)]
struct UrlBody {
    url: String,
}

async fn put_request_url(
    emu: web::Data<Emulator>,
    p: web::Path<String>,
    b: web::Json<UrlBody>,
) -> R {
    emu.set_request_url(&p, &b.url).await?;
    json_ok(json!({"ok": true}))
}

async fn put_callback_url(
    emu: web::Data<Emulator>,
    p: web::Path<String>,
    b: web::Json<UrlBody>,
) -> R {
    emu.set_callback_url(&p, &b.url).await?;
    json_ok(json!({"ok": true}))
}

async fn put_scope(
    emu: web::Data<Emulator>,
    p: web::Path<String>,
    b: web::Json<ContactScope>,
) -> R {
    emu.set_contact_scope(&p, b.into_inner())?;
    json_ok(json!({"ok": true}))
}

async fn put_availability(
    emu: web::Data<Emulator>,
    p: web::Path<String>,
    b: web::Json<ContactScope>,
) -> R {
    emu.set_availability(&p, b.into_inner())?;
    json_ok(json!({"ok": true}))
}

async fn export(emu: web::Data<Emulator>, p: web::Path<String>) -> R {
    let e = emu.export(&p)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(e.to_json()))
}

async fn create_user(emu: web::Data<Emulator>, b: web::Json<NewUser>) -> R {
    json_ok(emu.create_user(b.into_inner())?)
}

async fn update_user(emu: web::Data<Emulator>, p: web::Path<String>, b: web::Json<UserPatch>) -> R {
    json_ok(emu.update_user(&p, b.into_inner())?)
}

async fn delete_user(emu: web::Data<Emulator>, p: web::Path<String>) -> R {
    emu.delete_user(&p)?;
    json_ok(json!({"ok": true}))
}

#[derive(Deserialize)]
struct MoveBody {
    department_ids: Vec<String>,
}

async fn move_user(emu: web::Data<Emulator>, p: web::Path<String>, b: web::Json<MoveBody>) -> R {
    json_ok(emu.move_user(&p, b.into_inner().department_ids)?)
}

#[derive(Deserialize)]
struct FreezeBody {
    #[serde(default = "yes")]
    frozen: bool,
}

fn yes() -> bool {
    true
}

async fn freeze_user(
    emu: web::Data<Emulator>,
    p: web::Path<String>,
    b: Option<web::Json<FreezeBody>>,
) -> R {
    let frozen = b.is_none_or(|b| b.frozen);
    json_ok(emu.freeze_user(&p, frozen)?)
}

async fn resign_user(emu: web::Data<Emulator>, p: web::Path<String>) -> R {
    json_ok(emu.resign_user(&p)?)
}

async fn create_department(emu: web::Data<Emulator>, b: web::Json<NewDepartment>) -> R {
    json_ok(emu.create_department(b.into_inner())?)
}

#[derive(Deserialize)]
struct DeptPatch {
    name: Option<String>,
    parent: Option<String>,
}

async fn update_department(
    emu: web::Data<Emulator>,
    p: web::Path<String>,
    b: web::Json<DeptPatch>,
) -> R {
    let b = b.into_inner();
    let mut out = None;
    if let Some(n) = b.name {
        out = Some(emu.rename_department(&p, &n)?);
    }
    if let Some(parent) = b.parent {
        out = Some(emu.move_department(&p, &parent)?);
    }
    let d = out.ok_or_else(|| EmulatorError::Invalid("give name and/or parent".into()))?;
    json_ok(d)
}

async fn delete_department(emu: web::Data<Emulator>, p: web::Path<String>) -> R {
    emu.delete_department(&p)?;
    json_ok(json!({"ok": true}))
}

#[derive(Deserialize)]
struct UserMessage {
    app_id: String,
    user_id: String,
    text: String,
    #[serde(default)]
    chat_id: Option<String>,
}

async fn user_message(emu: web::Data<Emulator>, b: web::Json<UserMessage>) -> R {
    let id = emu.user_messages_bot(&b.app_id, &b.user_id, &b.text)?;
    json_ok(json!({"message_id": id}))
}

async fn user_mention(emu: web::Data<Emulator>, b: web::Json<UserMessage>) -> R {
    let chat = b
        .chat_id
        .clone()
        .ok_or_else(|| EmulatorError::Invalid("chat_id is required".into()))?;
    let id = emu.user_mentions_bot(&b.app_id, &chat, &b.user_id, &b.text)?;
    json_ok(json!({"message_id": id}))
}

#[derive(Deserialize)]
struct Click {
    app_id: String,
    user_id: String,
    message_id: String,
    #[serde(default)]
    value: Value,
}

async fn card_click(emu: web::Data<Emulator>, b: web::Json<Click>) -> R {
    let b = b.into_inner();
    let answer = emu
        .click_card(&b.app_id, &b.user_id, &b.message_id, b.value)
        .await?;
    json_ok(json!({"response": answer}))
}

#[derive(Deserialize)]
struct AddBot {
    app_id: String,
    user_id: String,
    #[serde(default)]
    name: String,
}

async fn add_bot(emu: web::Data<Emulator>, p: web::Path<String>, b: web::Json<AddBot>) -> R {
    emu.add_bot_to_chat(&b.app_id, &p, &b.user_id, &b.name)?;
    json_ok(json!({"ok": true}))
}

#[derive(Deserialize)]
struct InboxQuery {
    app_id: Option<String>,
    user_id: Option<String>,
    chat_id: Option<String>,
}

async fn inbox(emu: web::Data<Emulator>, q: web::Query<InboxQuery>) -> R {
    let msgs: Vec<_> = emu
        .inbox()
        .into_iter()
        .filter(|m| q.app_id.as_ref().is_none_or(|a| *a == m.app_id))
        .filter(|m| q.user_id.is_none() || q.user_id == m.recipient_user_id)
        .filter(|m| q.chat_id.as_ref().is_none_or(|c| *c == m.chat_id))
        .collect();
    json_ok(msgs)
}

async fn push_log(emu: web::Data<Emulator>) -> R {
    json_ok(emu.push_log())
}

async fn events(emu: web::Data<Emulator>) -> R {
    json_ok(emu.events())
}

#[derive(Deserialize)]
struct QrUser {
    user_id: Option<String>,
    #[serde(default)]
    app_id: Option<String>,
}

async fn put_qr_auto_user(emu: web::Data<Emulator>, b: web::Json<QrUser>) -> R {
    emu.set_qr_auto_user(b.into_inner().user_id);
    json_ok(json!({"ok": true}))
}

async fn qr_scan(emu: web::Data<Emulator>, b: web::Json<QrUser>) -> R {
    let b = b.into_inner();
    let app = b.app_id.unwrap_or_default();
    let user = b
        .user_id
        .ok_or_else(|| EmulatorError::Invalid("user_id is required".into()))?;
    json_ok(json!({"tmp_code": emu.qr_scan(&app, &user)?}))
}

#[derive(Deserialize)]
struct SubscriptionBody {
    mode: crate::ws::Subscription,
}

async fn put_subscription(
    emu: web::Data<Emulator>,
    p: web::Path<String>,
    b: web::Json<SubscriptionBody>,
) -> R {
    emu.app(&p)
        .ok_or_else(|| EmulatorError::NotFound(format!("app {p}")))?;
    emu.set_subscription(&p, b.mode);
    json_ok(json!({"mode": emu.subscription(&p)}))
}

async fn get_connections(emu: web::Data<Emulator>, p: web::Path<String>) -> R {
    json_ok(json!({
        "connections": emu.connections(&p),
        "refused": emu.refused_connections(),
    }))
}

async fn get_ws_settings(emu: web::Data<Emulator>) -> R {
    json_ok(emu.ws_settings())
}

async fn put_ws_settings(emu: web::Data<Emulator>, s: web::Json<crate::ws::WsSettings>) -> R {
    emu.set_ws_settings(s.into_inner());
    json_ok(emu.ws_settings())
}

#[derive(Deserialize)]
struct KillBody {
    #[serde(default)]
    app_id: Option<String>,
}

async fn kill_connections(emu: web::Data<Emulator>, b: web::Json<KillBody>) -> R {
    json_ok(json!({"killed": emu.kill_connections(b.app_id.as_deref())}))
}
