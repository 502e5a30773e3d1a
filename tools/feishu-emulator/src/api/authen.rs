//! authen (openapi.md §5): the authorize page (accounts host path), codes valid 5 minutes
//! and single use, `authen/v2/oauth/token` with PKCE and refresh, `authen/v1/user_info`, and
//! the `tmp_code` step of the embedded QR flow (see [`super::qr`]).
//!
//! Test conveniences (not Feishu): `emulator_user=<user_id>` on the authorize URL picks that
//! user at once; `emulator_decline=1` answers `error=access_denied`.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use rand::rngs::OsRng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{faults, gate, ok, rate_limit, Accepts, Query};
use crate::emulator::Emulator;
use crate::error::ApiError;
use crate::ids::{self, random_alnum};
use crate::limits;
use crate::runtime::{CodeInfo, RefreshInfo, TokenKind};

pub const AUTHORIZE: &str = "authen.authorize";
pub const TOKEN: &str = "authen.v2.oauth.token";
pub const USER_INFO: &str = "authen.v1.user_info";

const CODE_TTL_MS: i64 = 5 * 60 * 1000;
const UAT_TTL_MS: i64 = 7200 * 1000;
const REFRESH_TTL_MS: i64 = 604_800 * 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/open-apis/authen/v1/authorize", web::get().to(authorize))
        .route("/suite/passport/oauth/authorize", web::get().to(authorize))
        .route("/open-apis/authen/v2/oauth/token", web::post().to(token))
        .route("/open-apis/authen/v1/user_info", web::get().to(user_info));
}

/// The part of a URL the allow-list compares: everything before `?` or `#`.
fn base_of(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

fn redirect_allowed(allow: &[String], redirect_uri: &str) -> bool {
    let b = base_of(redirect_uri);
    allow.iter().any(|a| base_of(a) == b)
}

/// `redirect_uri` with query parameters added; a `#fragment` moves after the query.
fn with_params(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let (base, frag) = match redirect_uri.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (redirect_uri, None),
    };
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut out = format!("{base}{sep}{}", ser.finish());
    if let Some(f) = frag {
        out.push('#');
        out.push_str(f);
    }
    out
}

fn error_page(status: u16, code: i64, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .json(json!({"code": code, "message": message}))
}

pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn authorize(emu: web::Data<Emulator>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    faults(&emu, AUTHORIZE).await?;
    let q = Query::parse(&req);
    let client_id = q
        .get("client_id")
        .or(q.get("app_id"))
        .unwrap_or("")
        .to_string();
    let redirect_uri = q.get("redirect_uri").unwrap_or("").to_string();
    let state = q.get("state").unwrap_or("").to_string();
    let scope = q.get("scope").unwrap_or("").to_string();
    let (tenant, app) = {
        let w = emu.read();
        match w.state.tenant_of_app(&client_id) {
            Some(t) => (t, w.state.tenants[t].app(&client_id).cloned()),
            None => (0, None),
        }
    };
    let Some(app) = app else {
        return Ok(error_page(400, 20048, "app not exist"));
    };
    rate_limit(&emu, AUTHORIZE, &client_id, limits::tier(AUTHORIZE))?;
    if !redirect_allowed(&app.redirect_urls, &redirect_uri) {
        return Ok(error_page(400, 2000, "redirect_uri unmatch"));
    }
    if q.get("response_type").is_some_and(|r| r != "code") {
        return Ok(error_page(400, 20001, "response_type must be code"));
    }
    if scope.split_whitespace().count() > 50 {
        return Ok(error_page(400, 20001, "too many scopes"));
    }
    if q.get("emulator_decline").is_some() {
        let to = with_params(
            &redirect_uri,
            &[("error", "access_denied"), ("state", &state)],
        );
        return Ok(HttpResponse::Found()
            .insert_header(("Location", to))
            .finish());
    }
    let now = emu.clock().now_ms();
    let picked = if let Some(tmp) = q.get("tmp_code") {
        let entry = emu.rt().tmp_codes.remove(tmp);
        match entry {
            Some((t, uid, exp)) if t == tenant && exp > now => Some(uid),
            _ => return Ok(error_page(400, 20003, "tmp_code invalid or expired")),
        }
    } else {
        q.get("emulator_user").map(String::from)
    };
    let Some(user_id) = picked else {
        return Ok(picker(&emu, tenant, &req));
    };
    let known = emu
        .read()
        .state
        .tenants
        .get(tenant)
        .is_some_and(|t| t.users.get(&user_id).is_some_and(|u| !u.status.is_resigned));
    if !known {
        return Ok(error_page(400, 20008, "user does not exist"));
    }
    let code = random_alnum(&mut OsRng, 64);
    emu.rt().codes.insert(
        code.clone(),
        CodeInfo {
            app_id: client_id,
            tenant,
            user_id,
            redirect_uri: redirect_uri.clone(),
            scope,
            code_challenge: q.get("code_challenge").map(String::from),
            code_challenge_method: q
                .get("code_challenge_method")
                .unwrap_or("plain")
                .to_string(),
            expires_ms: now + CODE_TTL_MS,
            used: false,
        },
    );
    let mut params = vec![("code", code.as_str())];
    if !state.is_empty() {
        params.push(("state", state.as_str()));
    }
    let to = with_params(&redirect_uri, &params);
    Ok(HttpResponse::Found()
        .insert_header(("Location", to))
        .finish())
}

/// The consent page: the tenant's users to sign in as (first 200).
fn picker(emu: &Emulator, tenant: usize, req: &HttpRequest) -> HttpResponse {
    let w = emu.read();
    let mut rows = String::new();
    if let Some(t) = w.state.tenants.get(tenant) {
        for u in t.users.values().filter(|u| !u.status.is_resigned).take(200) {
            let href = format!(
                "{}?{}&emulator_user={}",
                req.path(),
                req.query_string(),
                url::form_urlencoded::byte_serialize(u.user_id.as_bytes()).collect::<String>()
            );
            rows.push_str(&format!(
                "<li><a class=\"user\" data-user-id=\"{}\" href=\"{}\">{} &lt;{}&gt;</a></li>\n",
                html_escape(&u.user_id),
                html_escape(&href),
                html_escape(&u.name),
                html_escape(&u.email)
            ));
        }
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html><head><title>Feishu login (emulator)</title></head><body>\
         <h1>Sign in with Feishu (emulator)</h1><p>Pick the user to authorise as:</p>\
         <ul id=\"users\">{rows}</ul></body></html>"
        ))
}

/// Reads the token request (JSON, or a form as OAuth clients often send).
fn token_params(
    req: &HttpRequest,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let is_form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let v: Value = if is_form {
        Value::Object(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        )
    } else {
        serde_json::from_slice(body).map_err(|_| {
            ApiError::oauth(400, 20063, "invalid_request", "The request is malformed.")
        })?
    };
    v.as_object()
        .cloned()
        .ok_or_else(|| ApiError::oauth(400, 20063, "invalid_request", "The request is malformed."))
}

fn pkce_ok(info: &CodeInfo, verifier: Option<&str>) -> bool {
    let Some(challenge) = &info.code_challenge else {
        return true;
    };
    let Some(v) = verifier else { return false };
    let valid = (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !valid {
        return false;
    }
    match info.code_challenge_method.as_str() {
        "S256" => B64URL.encode(Sha256::digest(v.as_bytes())) == *challenge,
        _ => v == challenge,
    }
}

async fn token(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    faults(&emu, TOKEN).await?;
    let p = token_params(&req, &body)?;
    let s = |k: &str| p.get(k).and_then(Value::as_str).map(String::from);
    let missing =
        |k: &str| ApiError::oauth(400, 20001, "invalid_request", &format!("{k} is required"));
    let grant = s("grant_type").ok_or_else(|| missing("grant_type"))?;
    let client_id = s("client_id").ok_or_else(|| missing("client_id"))?;
    let secret = s("client_secret").ok_or_else(|| missing("client_secret"))?;
    let (tenant, app) = {
        let w = emu.read();
        let t = w.state.tenant_of_app(&client_id);
        (
            t,
            t.and_then(|t| w.state.tenants[t].app(&client_id).cloned()),
        )
    };
    let (Some(tenant), Some(app)) = (tenant, app) else {
        return Err(ApiError::oauth(
            400,
            20048,
            "invalid_client",
            "The app does not exist.",
        ));
    };
    rate_limit(&emu, TOKEN, &client_id, limits::tier(TOKEN))?;
    if !bridge_feishu::crypto::secret_eq(&app.app_secret, &secret) {
        return Err(ApiError::oauth(
            400,
            20002,
            "invalid_client",
            "The client secret is invalid.",
        ));
    }
    let now = emu.clock().now_ms();
    let (user_id, scope) = match grant.as_str() {
        "authorization_code" => {
            let code = s("code").ok_or_else(|| missing("code"))?;
            let mut rt = emu.rt();
            let info = rt.codes.get_mut(&code).ok_or_else(|| {
                ApiError::oauth(
                    400,
                    20003,
                    "invalid_grant",
                    "The authorization code is not found.",
                )
            })?;
            if info.app_id != client_id {
                return Err(ApiError::oauth(
                    400,
                    20024,
                    "invalid_grant",
                    "The code does not belong to this client.",
                ));
            }
            if info.used {
                return Err(ApiError::oauth(
                    400,
                    20065,
                    "invalid_grant",
                    "The authorization code has been used.",
                ));
            }
            if info.expires_ms <= now {
                return Err(ApiError::oauth(
                    400,
                    20004,
                    "invalid_grant",
                    "The authorization code has expired.",
                ));
            }
            if let Some(r) = s("redirect_uri") {
                if r != info.redirect_uri {
                    return Err(ApiError::oauth(
                        400,
                        20071,
                        "invalid_grant",
                        "redirect_uri does not match.",
                    ));
                }
            }
            if !pkce_ok(info, s("code_verifier").as_deref()) {
                return Err(ApiError::oauth(
                    400,
                    20049,
                    "invalid_grant",
                    "PKCE verification failed.",
                ));
            }
            info.used = true;
            (info.user_id.clone(), info.scope.clone())
        }
        "refresh_token" => {
            let rtok = s("refresh_token").ok_or_else(|| missing("refresh_token"))?;
            let mut rt = emu.rt();
            let info = rt.refresh.get_mut(&rtok).ok_or_else(|| {
                ApiError::oauth(400, 20026, "invalid_grant", "The refresh token is invalid.")
            })?;
            if info.app_id != client_id {
                return Err(ApiError::oauth(
                    400,
                    20024,
                    "invalid_grant",
                    "The refresh token does not belong to this client.",
                ));
            }
            if info.used {
                return Err(ApiError::oauth(
                    400,
                    20064,
                    "invalid_grant",
                    "The refresh token has been revoked (it can only be used once).",
                ));
            }
            if info.expires_ms <= now {
                return Err(ApiError::oauth(
                    400,
                    20037,
                    "invalid_grant",
                    "The refresh token has expired.",
                ));
            }
            info.used = true;
            let scope = s("scope").unwrap_or_else(|| info.scope.clone());
            (info.user_id.clone(), scope)
        }
        _ => {
            return Err(ApiError::oauth(
                400,
                20036,
                "unsupported_grant_type",
                "The grant_type is not supported.",
            ))
        }
    };
    let allowed = {
        let w = emu.read();
        w.index
            .get(tenant)
            .and_then(|ix| ix.availability.get(&client_id))
            .is_some_and(|a| a.user(&user_id))
    };
    if !allowed {
        return Err(ApiError::oauth(
            400,
            20010,
            "access_denied",
            "The user has no permission to use the app.",
        ));
    }
    let mut rt = emu.rt();
    let access = rt.user_token(&client_id, tenant, &user_id, &scope, now, UAT_TTL_MS);
    let mut out = json!({
        "code": 0,
        "access_token": access,
        "expires_in": UAT_TTL_MS / 1000,
        "token_type": "Bearer",
        "scope": scope,
    });
    if scope.split_whitespace().any(|s| s == "offline_access") {
        let refresh = rt.user_token(&client_id, tenant, &user_id, &scope, now, REFRESH_TTL_MS);
        rt.tokens.remove(&refresh);
        rt.refresh.insert(
            refresh.clone(),
            RefreshInfo {
                app_id: client_id.clone(),
                tenant,
                user_id,
                scope,
                expires_ms: now + REFRESH_TTL_MS,
                used: false,
            },
        );
        out["refresh_token"] = json!(refresh);
        out["refresh_token_expires_in"] = json!(REFRESH_TTL_MS / 1000);
    }
    Ok(HttpResponse::Ok().json(out))
}

async fn user_info(emu: web::Data<Emulator>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, USER_INFO, Accepts::User).await?;
    let TokenKind::User { user_id, .. } = &caller.kind else {
        return Err(ApiError::new(
            400,
            99991668,
            "Invalid access token for authorization.",
        ));
    };
    let w = emu.read();
    let t = w
        .state
        .tenants
        .get(caller.tenant)
        .ok_or_else(|| ApiError::new(400, 20008, "user does not exist"))?;
    let u = t
        .users
        .get(user_id)
        .ok_or_else(|| ApiError::new(400, 20008, "user does not exist"))?;
    let avatar = |size: &str| {
        format!(
            "https://s1-imfile.feishucdn.com/static-resource/v1/{}~?image_size={size}",
            u.avatar_key
        )
    };
    let data = json!({
        "name": u.name,
        "en_name": u.en_name,
        "avatar_url": avatar("noop"),
        "avatar_thumb": avatar("72x72"),
        "avatar_middle": avatar("240x240"),
        "avatar_big": avatar("640x640"),
        "open_id": ids::open_id(&caller.app_id, &u.user_id),
        "union_id": t.union_id(&u.user_id),
        "email": u.email,
        "enterprise_email": u.enterprise_email,
        "user_id": u.user_id,
        "mobile": u.mobile,
        "tenant_key": t.tenant_key,
        "employee_no": u.employee_no,
    });
    drop(w);
    Ok(ok(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_matching_ignores_query_and_fragment() {
        let allow = vec!["http://a.example/cb".to_string()];
        assert!(redirect_allowed(&allow, "http://a.example/cb?x=1"));
        assert!(redirect_allowed(&allow, "http://a.example/cb#/x"));
        assert!(!redirect_allowed(&allow, "http://a.example/cb2"));
        assert!(!redirect_allowed(&allow, "http://evil.example/cb"));
        assert_eq!(
            with_params("http://a/cb#frag", &[("code", "c")]),
            "http://a/cb?code=c#frag"
        );
    }
}
