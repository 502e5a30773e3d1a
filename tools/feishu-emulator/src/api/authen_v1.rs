//! Legacy code exchange with an app_access_token (openapi.md §5.4), still in the SDKs:
//! `authen/v1/oidc/access_token`, `authen/v1/oidc/refresh_access_token` and the older
//! `authen/v1/access_token` (which adds the user's fields). Envelope `{code, msg, data}`.

use actix_web::{web, HttpRequest, HttpResponse};
use rand::rngs::OsRng;
use serde_json::{json, Value};

use super::{gate, ok, Accepts, Caller};
use crate::emulator::Emulator;
use crate::error::ApiError;
use crate::ids::{self, random_alnum};
use crate::runtime::RefreshInfo;

pub const OIDC_TOKEN: &str = "authen.v1.oidc.access_token";
pub const OIDC_REFRESH: &str = "authen.v1.oidc.refresh_access_token";
pub const LEGACY_TOKEN: &str = "authen.v1.access_token";

const UAT_TTL_MS: i64 = 7200 * 1000;
const REFRESH_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/open-apis/authen/v1/oidc/access_token",
        web::post().to(oidc_token),
    )
    .route(
        "/open-apis/authen/v1/oidc/refresh_access_token",
        web::post().to(oidc_refresh),
    )
    .route(
        "/open-apis/authen/v1/access_token",
        web::post().to(legacy_token),
    );
}

fn field(body: &Value, k: &str) -> Result<String, ApiError> {
    body.get(k)
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| ApiError::new(400, 20001, format!("{k} is required")))
}

/// Redeems an authorization code for the calling app: (user_id, scope).
fn redeem(emu: &Emulator, caller: &Caller, body: &Value) -> Result<(String, String), ApiError> {
    if field(body, "grant_type")? != "authorization_code" {
        return Err(ApiError::new(400, 20036, "grant_type is not supported"));
    }
    let code = field(body, "code")?;
    let now = emu.clock().now_ms();
    let mut rt = emu.rt();
    let info = rt
        .codes
        .get_mut(&code)
        .ok_or_else(|| ApiError::new(400, 20003, "the code is not found"))?;
    if info.app_id != caller.app_id {
        return Err(ApiError::new(400, 20024, "the code belongs to another app"));
    }
    if info.used {
        return Err(ApiError::new(400, 20065, "the code has been used"));
    }
    if info.expires_ms <= now {
        return Err(ApiError::new(400, 20004, "the code has expired"));
    }
    info.used = true;
    Ok((info.user_id.clone(), info.scope.clone()))
}

/// Mints an access and a refresh token: the `data` of the oidc endpoints.
fn mint(emu: &Emulator, caller: &Caller, user_id: &str, scope: &str) -> Value {
    let now = emu.clock().now_ms();
    let mut rt = emu.rt();
    let access = rt.user_token(
        &caller.app_id,
        caller.tenant,
        user_id,
        scope,
        now,
        UAT_TTL_MS,
    );
    let refresh = format!("ur-{}", random_alnum(&mut OsRng, 40));
    rt.refresh.insert(
        refresh.clone(),
        RefreshInfo {
            app_id: caller.app_id.clone(),
            tenant: caller.tenant,
            user_id: user_id.to_string(),
            scope: scope.to_string(),
            expires_ms: now + REFRESH_TTL_MS,
            used: false,
        },
    );
    json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": UAT_TTL_MS / 1000,
        "refresh_token": refresh,
        "refresh_expires_in": REFRESH_TTL_MS / 1000,
        "scope": scope,
    })
}

fn parse(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|_| ApiError::new(400, 20063, "the request is malformed"))
}

async fn oidc_token(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, OIDC_TOKEN, Accepts::App).await?;
    let (user_id, scope) = redeem(&emu, &caller, &parse(&body)?)?;
    Ok(ok(mint(&emu, &caller, &user_id, &scope)))
}

async fn oidc_refresh(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, OIDC_REFRESH, Accepts::App).await?;
    let b = parse(&body)?;
    if field(&b, "grant_type")? != "refresh_token" {
        return Err(ApiError::new(400, 20036, "grant_type is not supported"));
    }
    let token = field(&b, "refresh_token")?;
    let now = emu.clock().now_ms();
    let (user_id, scope) = {
        let mut rt = emu.rt();
        let info = rt
            .refresh
            .get_mut(&token)
            .ok_or_else(|| ApiError::new(400, 20026, "the refresh token is invalid"))?;
        if info.app_id != caller.app_id {
            return Err(ApiError::new(
                400,
                20024,
                "the refresh token belongs to another app",
            ));
        }
        if info.used {
            return Err(ApiError::new(400, 20064, "the refresh token has been used"));
        }
        if info.expires_ms <= now {
            return Err(ApiError::new(400, 20037, "the refresh token has expired"));
        }
        info.used = true;
        (info.user_id.clone(), info.scope.clone())
    };
    Ok(ok(mint(&emu, &caller, &user_id, &scope)))
}

async fn legacy_token(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, LEGACY_TOKEN, Accepts::App).await?;
    let (user_id, scope) = redeem(&emu, &caller, &parse(&body)?)?;
    let mut data = mint(&emu, &caller, &user_id, &scope);
    let w = emu.read();
    if let Some(t) = w.state.tenants.get(caller.tenant) {
        if let Some(u) = t.users.get(&user_id) {
            let avatar = |size: &str| {
                format!(
                    "https://s1-imfile.feishucdn.com/static-resource/v1/{}~?image_size={size}",
                    u.avatar_key
                )
            };
            let extra = json!({
                "name": u.name, "en_name": u.en_name,
                "avatar_url": avatar("noop"), "avatar_thumb": avatar("72x72"),
                "avatar_middle": avatar("240x240"), "avatar_big": avatar("640x640"),
                "open_id": ids::open_id(&caller.app_id, &u.user_id), "union_id": t.union_id(&u.user_id),
                "email": u.email, "enterprise_email": u.enterprise_email, "user_id": u.user_id,
                "mobile": u.mobile, "tenant_key": t.tenant_key, "sid": "",
            });
            if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
                d.extend(e.clone());
            }
        }
    }
    drop(w);
    Ok(ok(data))
}
