//! The routes: login flows, `/auth/me`, `/auth/logout`, `/auth/refresh`, and the JWKS.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bridge_runtime::{ApiError, Mount};
use bridge_session::{Verifier, SESSION_COOKIE};
use serde::Deserialize;

use crate::error::Refusal;
use crate::login::{self, Data};
use crate::sessions::{self, Issued};
use crate::Inner;

pub const REFRESH_COOKIE: &str = "fb_refresh";

pub fn mount(inner: std::sync::Arc<Inner>) -> Mount {
    std::sync::Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.service(
            web::scope("/auth")
                .app_data(web::Data::new(inner.clone()))
                .app_data(
                    web::JsonConfig::default()
                        .limit(16 * 1024)
                        .error_handler(|e, _| {
                            ApiError::new(
                                StatusCode::BAD_REQUEST,
                                40025,
                                format!("bad request body: {e}"),
                            )
                            .into()
                        }),
                )
                .route("/feishu/{app_id}/login", web::get().to(login::login))
                .route("/feishu/{app_id}/callback", web::get().to(login::callback))
                .route("/feishu/{app_id}/code", web::post().to(login::code))
                .route("/me", web::get().to(me))
                .route("/logout", web::post().to(logout))
                .route("/refresh", web::post().to(refresh)),
        )
        .service(
            web::resource("/.well-known/jwks.json")
                .app_data(web::Data::new(inner.clone()))
                .route(web::get().to(jwks)),
        );
    })
}

/// Sets the access-token cookie (every path) and the refresh cookie (only `/auth`).
pub fn set_session_cookies(inner: &Inner, resp: &mut HttpResponse, issued: &Issued) {
    let secure = inner.cookie_secure();
    let access = Cookie::build(SESSION_COOKIE, issued.access_token.clone())
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(
            issued.expires_in,
        ))
        .finish();
    let refresh = Cookie::build(REFRESH_COOKIE, issued.refresh_token.clone())
        .path("/auth")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(
            issued.refresh_expires_in,
        ))
        .finish();
    let _ = resp.add_cookie(&access);
    let _ = resp.add_cookie(&refresh);
}

fn clear_session_cookies(resp: &mut HttpResponse) {
    for (name, path) in [(SESSION_COOKIE, "/"), (REFRESH_COOKIE, "/auth")] {
        let c = Cookie::build(name, "")
            .path(path)
            .max_age(actix_web::cookie::time::Duration::ZERO)
            .finish();
        let _ = resp.add_cookie(&c);
    }
}

async fn verified(v: &Verifier, req: &HttpRequest) -> Result<bridge_session::Claims, ApiError> {
    let t = bridge_session::session_token(req).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, 40121, "no session: log in first")
    })?;
    v.verify(&t).await.map_err(|e| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            40122,
            format!("session refused: {e}"),
        )
    })
}

/// `GET /auth/me`: the session's claims.
async fn me(inner: Data, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let c = verified(&inner.verifier, &req).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(c))
}

#[derive(Deserialize, Default)]
struct RefreshBody {
    #[serde(default)]
    refresh_token: Option<String>,
}

fn refresh_token(req: &HttpRequest, body: &Option<web::Json<RefreshBody>>) -> Option<String> {
    body.as_ref()
        .and_then(|b| b.refresh_token.clone())
        .or_else(|| req.cookie(REFRESH_COOKIE).map(|c| c.value().to_string()))
        .filter(|t| !t.is_empty())
}

/// `POST /auth/refresh` with the refresh cookie or `{"refresh_token": ...}`.
async fn refresh(
    inner: Data,
    req: HttpRequest,
    body: Option<web::Json<RefreshBody>>,
) -> Result<HttpResponse, ApiError> {
    let token = refresh_token(&req, &body)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, 40123, "no refresh token given"))?;
    match sessions::refresh(&inner, &token).await {
        Ok(issued) => {
            let mut r = HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .json(&issued);
            set_session_cookies(&inner, &mut r, &issued);
            Ok(r)
        }
        Err(e) => Err(e.json()),
    }
}

/// `POST /auth/logout`: revokes the session everywhere, identified by its access token (even
/// an expired one) or its refresh token.
async fn logout(
    inner: Data,
    req: HttpRequest,
    body: Option<web::Json<RefreshBody>>,
) -> Result<HttpResponse, ApiError> {
    let mut sid = None;
    if let Some(t) = bridge_session::session_token(&req) {
        match inner.verifier.verify(&t).await {
            Ok(c) => sid = Some(c.sid),
            Err(bridge_session::VerifyError::Expired | bridge_session::VerifyError::Revoked) => {}
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    40122,
                    format!("session refused: {e}"),
                ))
            }
        }
    }
    if sid.is_none() {
        if let Some(rt) = refresh_token(&req, &body) {
            sid = sessions::session_of_refresh(&inner, &rt)
                .await
                .map_err(|e| e.json())?;
        }
    }
    let Some(sid) = sid else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            40121,
            "no session to log out",
        ));
    };
    sessions::revoke(&inner, &sid, "logout")
        .await
        .map_err(|e: Refusal| e.json())?;
    let mut r = HttpResponse::Ok().json(serde_json::json!({"session_id": sid, "revoked": true}));
    clear_session_cookies(&mut r);
    Ok(r)
}

/// `GET /.well-known/jwks.json`: the public keys that verify access tokens.
async fn jwks(inner: Data) -> Result<HttpResponse, ApiError> {
    let set = Verifier::database_keys(&inner.db, inner.key_grace())
        .await
        .map_err(|e| Refusal::from(e).json())?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=60"))
        .json(set))
}
