//! The login flows: the login page (QR code and link), Feishu's callback, and the code from
//! the Feishu client; then the checks against the directory and the session.

use std::collections::HashSet;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use bridge_directory_sync::apply::{Applier, Cause};
use bridge_feishu::api::authen::{UserInfo, CODE_REFUSED, PKCE_FAILED, USER_REFUSED};
use bridge_feishu::api::{AppCredentials, FeishuError};
use bridge_store::entity::{auth_login_state, user};
use bridge_store::AppBinding;
use chrono::Utc;
use hmac::{Hmac, Mac};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Refusal;
use crate::sessions::{self, random_token, Identity, Issued};
use crate::Inner;

pub type Data = web::Data<std::sync::Arc<Inner>>;

/// The contact API's answer for a user outside the app's contact scope.
const OUT_OF_SCOPE: &[i64] = &[41050, 40013, 99992351, 99992361];

fn state_cookie_name(app_id: &str) -> String {
    format!("fb_login_{app_id}")
}

fn mac(inner: &Inner, app_id: &str, state: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&inner.cookie_key)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    m.update(app_id.as_bytes());
    m.update(b"|");
    m.update(state.as_bytes());
    B64URL.encode(&m.finalize().into_bytes()[..16])
}

/// The app, bound and enabled, or the page that says why not.
fn binding(inner: &Inner, app_id: &str) -> Result<std::sync::Arc<AppBinding>, Refusal> {
    match inner.apps.get(app_id) {
        None => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            40420,
            "Unknown app",
            format!("no Feishu app {app_id} is bound to this platform"),
        )),
        Some(b) if !b.enabled => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            40320,
            "Feishu login is disabled",
            "the Feishu app binding is disabled; ask the platform's administrator",
        )),
        Some(b) => Ok(b),
    }
}

fn credentials(inner: &Inner, app_id: &str) -> Result<AppCredentials, Refusal> {
    inner.credentials(app_id).ok_or_else(|| {
        Refusal::new(
            StatusCode::FORBIDDEN,
            40320,
            "Feishu login is disabled",
            "the Feishu app binding is disabled",
        )
    })
}

/// A relative path of this site, or a URL on an allowed origin; anything else is refused
/// (no open redirect).
pub fn safe_redirect(target: &str, allowed: &[String]) -> Option<String> {
    if target.is_empty() {
        return Some("/".into());
    }
    if target.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    if target.starts_with('/') && !target.starts_with("//") {
        return Some(target.to_string());
    }
    let u = url::Url::parse(target).ok()?;
    if !matches!(u.scheme(), "http" | "https") || !u.username().is_empty() || u.password().is_some()
    {
        return None;
    }
    let origin = u.origin().ascii_serialization();
    allowed.contains(&origin).then(|| u.to_string())
}

pub fn callback_url(inner: &Inner, req: &HttpRequest, app_id: &str) -> String {
    format!(
        "{}/auth/feishu/{app_id}/callback",
        bridge_runtime::server::public_base(inner.public_base_url.as_ref(), req).0
    )
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    redirect: String,
}

/// `GET /auth/feishu/{app_id}/login?redirect=PATH`
pub async fn login(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<LoginQuery>,
) -> HttpResponse {
    let app_id = path.into_inner();
    match start(&inner, &req, &app_id, &q.redirect).await {
        Ok(r) => r,
        Err(e) => e.page(),
    }
}

async fn start(
    inner: &Inner,
    req: &HttpRequest,
    app_id: &str,
    redirect: &str,
) -> Result<HttpResponse, Refusal> {
    let b = binding(inner, app_id)?;
    if !b.qr_login_enabled {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            40321,
            "Feishu QR login is switched off",
            "the administrator has not enabled \"scan with Feishu\" for this platform",
        ));
    }
    let Some(redirect) = safe_redirect(redirect, &inner.settings.allowed_redirect_origins) else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            40020,
            "Redirect refused",
            "after login the browser can only go to a page of this platform",
        ));
    };
    let state = random_token(24);
    let verifier = random_token(48);
    let challenge = B64URL.encode(Sha256::digest(verifier.as_bytes()));
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(inner.settings.login_ttl).unwrap_or_default();
    auth_login_state::Entity::insert(auth_login_state::ActiveModel {
        state: Set(state.clone()),
        app_id: Set(app_id.to_string()),
        code_verifier: Set(verifier),
        redirect: Set(redirect),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        used_at: Set(None),
    })
    .exec(&inner.db)
    .await?;
    let mut authorize = url::Url::parse(&format!(
        "{}/open-apis/authen/v1/authorize",
        inner.authorize_base(b.domain)
    ))
    .map_err(|e| Refusal::unavailable("the authorize URL", e))?;
    authorize
        .query_pairs_mut()
        .append_pair("client_id", app_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &callback_url(inner, req, app_id))
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let cookie = Cookie::build(
        state_cookie_name(app_id),
        format!("{state}.{}", mac(inner, app_id, &state)),
    )
    .path(format!("/auth/feishu/{app_id}/"))
    .http_only(true)
    .secure(inner.cookie_secure())
    .same_site(SameSite::Lax)
    .max_age(actix_web::cookie::time::Duration::seconds(
        ttl.num_seconds(),
    ))
    .finish();
    let mut resp = crate::page::login_page(
        &b.team_name,
        authorize.as_str(),
        &inner.qr_sdk_url(b.domain),
    );
    resp.add_cookie(&cookie)
        .map_err(|e| Refusal::unavailable("the login cookie", e))?;
    Ok(resp)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /auth/feishu/{app_id}/callback?code&state`
pub async fn callback(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<CallbackQuery>,
) -> HttpResponse {
    let app_id = path.into_inner();
    let clear = Cookie::build(state_cookie_name(&app_id), "")
        .path(format!("/auth/feishu/{app_id}/"))
        .max_age(actix_web::cookie::time::Duration::ZERO)
        .finish();
    let mut resp = match finish(&inner, &req, &app_id, q.into_inner()).await {
        Ok((issued, redirect)) => {
            let mut r = HttpResponse::SeeOther()
                .insert_header(("Location", redirect))
                .insert_header(("Cache-Control", "no-store"))
                .finish();
            crate::api::set_session_cookies(&inner, &mut r, &issued);
            r
        }
        Err(e) => {
            tracing::info!(app_id = %app_id, code = e.code, detail = %e.detail, "login refused");
            e.page()
        }
    };
    let _ = resp.add_cookie(&clear);
    resp
}

async fn finish(
    inner: &Inner,
    req: &HttpRequest,
    app_id: &str,
    q: CallbackQuery,
) -> Result<(Issued, String), Refusal> {
    binding(inner, app_id)?;
    let bad_state = |detail: &str| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            40021,
            "Login expired or not started here",
            detail.to_string(),
        )
    };
    let state = q
        .state
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad_state("the login answer carries no state; start the login again"))?;
    let cookie = req.cookie(&state_cookie_name(app_id)).ok_or_else(|| {
        bad_state("this browser did not start this login (no login cookie); start again")
    })?;
    let (c_state, c_mac) = cookie
        .value()
        .split_once('.')
        .ok_or_else(|| bad_state("the login cookie is malformed; start again"))?;
    let mac_ok: bool = mac(inner, app_id, c_state)
        .as_bytes()
        .ct_eq(c_mac.as_bytes())
        .into();
    let same: bool = c_state.as_bytes().ct_eq(state.as_bytes()).into();
    if !mac_ok || !same {
        return Err(bad_state(
            "the login was started in another browser; start again here",
        ));
    }
    // Single use: only the first answer with this state gets past here.
    let now = Utc::now();
    let txn = inner.db.begin().await?;
    let taken = auth_login_state::Entity::update_many()
        .col_expr(
            auth_login_state::Column::UsedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(auth_login_state::Column::State.eq(state.clone()))
        .filter(auth_login_state::Column::AppId.eq(app_id))
        .filter(auth_login_state::Column::UsedAt.is_null())
        .filter(auth_login_state::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?;
    let row = auth_login_state::Entity::find_by_id(state)
        .one(&txn)
        .await?;
    txn.commit().await?;
    let row = match row {
        Some(r) if taken.rows_affected == 1 => r,
        _ => {
            return Err(bad_state(
                "this login was already completed or has expired; start again",
            ))
        }
    };
    if let Some(err) = q.error {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            40322,
            "Login cancelled",
            format!("Feishu did not authorise the login ({err})"),
        ));
    }
    let code = q.code.filter(|c| !c.is_empty()).ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            40022,
            "Login failed",
            "Feishu's answer carries no code",
        )
    })?;
    let redirect_uri = callback_url(inner, req, app_id);
    let who = exchange(
        inner,
        app_id,
        &code,
        Some(&redirect_uri),
        Some(&row.code_verifier),
        "qr",
    )
    .await?;
    let issued = sessions::create(inner, &who).await?;
    crate::events::login(inner, &who, &issued.session_id, issued.user.exp).await;
    Ok((issued, row.redirect))
}

#[derive(Deserialize)]
pub struct CodeBody {
    code: String,
}

/// `POST /auth/feishu/{app_id}/code` `{"code": ...}` from a page inside the Feishu client.
pub async fn code(
    inner: Data,
    path: web::Path<String>,
    body: web::Json<CodeBody>,
) -> Result<HttpResponse, bridge_runtime::ApiError> {
    let app_id = path.into_inner();
    let run = async {
        binding(&inner, &app_id)?;
        if body.code.is_empty() || body.code.len() > 512 {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                40022,
                "Login failed",
                "`code` is missing or malformed",
            ));
        }
        let who = exchange(&inner, &app_id, &body.code, None, None, "in_client").await?;
        let issued = sessions::create(&inner, &who).await?;
        crate::events::login(&inner, &who, &issued.session_id, issued.user.exp).await;
        Ok(issued)
    };
    match run.await {
        Ok(issued) => {
            let mut r = HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .json(&issued);
            crate::api::set_session_cookies(&inner, &mut r, &issued);
            Ok(r)
        }
        Err(e) => {
            tracing::info!(app_id = %app_id, code = e.code, detail = %e.detail, "in-client login refused");
            Err(e.json())
        }
    }
}

fn feishu_refusal(e: FeishuError) -> Refusal {
    match e.code() {
        Some(c) if CODE_REFUSED.contains(&c) => Refusal::new(
            StatusCode::BAD_REQUEST,
            40023,
            "Login code refused",
            format!("Feishu refused the login code (code {c}: it expired, was used already, or belongs to another app); start again"),
        ),
        Some(PKCE_FAILED) => Refusal::new(
            StatusCode::BAD_REQUEST,
            40024,
            "Login check failed",
            "the login's proof key did not match (PKCE); start again",
        ),
        Some(c) if USER_REFUSED.contains(&c) => Refusal::new(
            StatusCode::FORBIDDEN,
            40323,
            "Not allowed to use this app",
            format!("Feishu says this account may not use the app (code {c})"),
        ),
        _ if e.is_transient() => Refusal::unavailable("Feishu", e),
        _ => {
            tracing::warn!(error = %e, "login exchange failed");
            Refusal::new(StatusCode::BAD_GATEWAY, 50220, "Login failed", format!("Feishu answered: {e}"))
        }
    }
}

/// Code -> user token -> identity -> directory checks.
async fn exchange(
    inner: &Inner,
    app_id: &str,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    method: &'static str,
) -> Result<Identity, Refusal> {
    let creds = credentials(inner, app_id)?;
    let token = inner
        .client
        .exchange_code(&creds, code, redirect_uri, verifier)
        .await
        .map_err(feishu_refusal)?;
    let info = inner
        .client
        .user_info(&creds, &token.access_token)
        .await
        .map_err(feishu_refusal)?;
    admit(inner, &creds, info, method).await
}

fn outside_scope() -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        40324,
        "Not in this platform's organisation",
        "this account is outside the Feishu app's contact scope; ask an administrator to add it",
    )
}

/// The checks every login passes: the person is in the synced directory (or, when
/// directory-sync has not seen them yet, visible to the app through the contact API, and then
/// recorded), neither resigned nor frozen; and whether they administer the app.
async fn admit(
    inner: &Inner,
    creds: &AppCredentials,
    info: UserInfo,
    method: &'static str,
) -> Result<Identity, Refusal> {
    let app_id = creds.app_id.as_str();
    let mut row = user::Entity::find()
        .filter(user::Column::AppId.eq(app_id))
        .filter(user::Column::OpenId.eq(info.open_id.clone()))
        .one(&inner.db)
        .await?;
    if row.is_none() {
        if let Some(union) = info.union_id.as_deref().filter(|u| !u.is_empty()) {
            row = user::Entity::find()
                .filter(user::Column::AppId.eq(app_id))
                .filter(user::Column::UnionId.eq(union))
                .one(&inner.db)
                .await?;
        }
    }
    let row = match row {
        Some(r) if r.deleted => return Err(outside_scope()),
        Some(r) => r,
        None => record_unseen(inner, creds, &info.open_id).await?,
    };
    if row.is_resigned {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            40325,
            "Account resigned",
            "this account has resigned from the organisation",
        ));
    }
    if row.is_frozen {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            40326,
            "Account frozen",
            "this account is frozen in Feishu; ask an administrator",
        ));
    }
    let admin = match inner.client.is_user_admin(creds, &row.open_id).await {
        Ok(a) => a,
        Err(e) => {
            // Without the admin-check scope nobody is an admin; the login itself goes on.
            tracing::warn!(error = %e, app_id, "cannot check whether the user is an app admin; treating as not admin");
            false
        }
    };
    Ok(Identity {
        app_id: app_id.to_string(),
        tenant_key: info.tenant_key,
        open_id: row.open_id.clone(),
        union_id: row.union_id.clone().or(info.union_id),
        name: row
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or(info.name),
        admin,
        method,
    })
}

/// Fetches a person directory-sync has not recorded yet and records them at the lowest
/// version, so its next event or reconcile owns the row.
async fn record_unseen(
    inner: &Inner,
    creds: &AppCredentials,
    open_id: &str,
) -> Result<user::Model, Refusal> {
    let u = match inner.client.user(creds, open_id).await {
        Ok(u) => u,
        Err(e) if e.code().is_some_and(|c| OUT_OF_SCOPE.contains(&c)) => {
            return Err(outside_scope())
        }
        Err(e) if e.is_transient() => return Err(Refusal::unavailable("Feishu's contact API", e)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the user from the contact API");
            return Err(outside_scope());
        }
    };
    let txn = inner.db.begin().await?;
    let mut applier = Applier::new(&txn, &creds.app_id, 1, Cause::Sync("auth-login".into()));
    applier
        .sync_users(std::slice::from_ref(&u), &HashSet::new())
        .await?;
    txn.commit().await?;
    user::Entity::find()
        .filter(user::Column::AppId.eq(creds.app_id.as_str()))
        .filter(user::Column::OpenId.eq(open_id))
        .one(&inner.db)
        .await?
        .ok_or_else(|| Refusal::unavailable("the directory", "the recorded user is not readable"))
}

#[cfg(test)]
mod tests {
    use super::safe_redirect;

    #[test]
    fn redirects_stay_on_the_platform() {
        let allowed = vec!["https://platform.example.com".to_string()];
        assert_eq!(safe_redirect("", &allowed).as_deref(), Some("/"));
        assert_eq!(
            safe_redirect("/app/home?x=1", &allowed).as_deref(),
            Some("/app/home?x=1")
        );
        assert_eq!(
            safe_redirect("https://platform.example.com/a", &allowed).as_deref(),
            Some("https://platform.example.com/a")
        );
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "https://platform.example.com.evil.example/",
            "https://user@platform.example.com/",
            "javascript:alert(1)",
            "http://platform.example.com/",
            "evil.example",
            "/ok\nLocation: x",
        ] {
            assert_eq!(safe_redirect(bad, &allowed), None, "{bad}");
        }
    }
}
