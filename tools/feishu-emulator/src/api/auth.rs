//! `auth/v3/tenant_access_token/internal` and `auth/v3/app_access_token/internal`
//! (openapi.md §2.2–2.5): top-level fields, 2 h lifetime, reissue below 30 min.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{faults, log_id, rate_limit};
use crate::emulator::Emulator;
use crate::error::ApiError;
use crate::limits;
use crate::runtime::{Lifetime, TokenKind};

pub const TENANT_TOKEN: &str = "auth.tenant_access_token.internal";
pub const APP_TOKEN: &str = "auth.app_access_token.internal";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/open-apis/auth/v3/tenant_access_token/internal",
        web::post().to(tenant_access_token),
    )
    .route(
        "/open-apis/auth/v3/app_access_token/internal",
        web::post().to(app_access_token),
    );
}

#[derive(Deserialize)]
struct Creds {
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    app_secret: String,
}

/// Checks the credentials; errors are HTTP 200 with a code, as Feishu answers them.
fn check(emu: &Emulator, body: &[u8]) -> Result<(String, usize), ApiError> {
    let creds: Creds =
        serde_json::from_slice(body).map_err(|_| ApiError::new(200, 10003, "invalid param"))?;
    let w = emu.read();
    let tenant = w
        .state
        .tenant_of_app(&creds.app_id)
        .ok_or_else(|| ApiError::new(200, 10003, "invalid param"))?;
    let app = w.state.tenants[tenant]
        .app(&creds.app_id)
        .ok_or_else(|| ApiError::new(200, 10003, "invalid param"))?;
    if !bridge_feishu::crypto::secret_eq(&app.app_secret, &creds.app_secret) {
        return Err(ApiError::new(200, 10014, "app secret invalid"));
    }
    Ok((creds.app_id, tenant))
}

fn lifetime(emu: &Emulator) -> Lifetime {
    let s = emu.settings();
    Lifetime {
        lifetime_ms: s.token_lifetime_secs as i64 * 1000,
        reissue_below_ms: s.token_reissue_below_secs as i64 * 1000,
    }
}

async fn tenant_access_token(
    emu: web::Data<Emulator>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    faults(&emu, TENANT_TOKEN).await?;
    let (app_id, tenant) = check(&emu, &body)?;
    rate_limit(&emu, TENANT_TOKEN, &app_id, limits::tier(TENANT_TOKEN))?;
    let now = emu.clock().now_ms();
    let life = lifetime(&emu);
    let (tok, expire) = emu
        .rt()
        .app_token(&app_id, tenant, TokenKind::Tenant, now, life);
    Ok(HttpResponse::Ok()
        .insert_header(("X-Tt-Logid", log_id()))
        .json(json!({
            "code": 0, "msg": "ok", "tenant_access_token": tok, "expire": expire
        })))
}

async fn app_access_token(
    emu: web::Data<Emulator>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    faults(&emu, APP_TOKEN).await?;
    let (app_id, tenant) = check(&emu, &body)?;
    rate_limit(&emu, APP_TOKEN, &app_id, limits::tier(APP_TOKEN))?;
    let now = emu.clock().now_ms();
    let life = lifetime(&emu);
    let mut rt = emu.rt();
    let (aat, expire) = rt.app_token(&app_id, tenant, TokenKind::App, now, life);
    let (tat, _) = rt.app_token(&app_id, tenant, TokenKind::Tenant, now, life);
    drop(rt);
    Ok(HttpResponse::Ok()
        .insert_header(("X-Tt-Logid", log_id()))
        .json(json!({
            "code": 0, "msg": "ok", "app_access_token": aat, "expire": expire,
            "tenant_access_token": tat
        })))
}
