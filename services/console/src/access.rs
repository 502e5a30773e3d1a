//! Who may use the console: the bootstrap admin token from the settings, or a session of an
//! app admin (Feishu's `is_user_admin`, recorded by auth). Anything else: 401 or 403.

use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use bridge_runtime::ApiError;
use bridge_session::Caller;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::Inner;

/// An admin, as the audit trail names them.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

pub async fn admin(inner: &Inner, req: &HttpRequest) -> Result<Actor, ApiError> {
    if let (Some(given), Some(token)) = (bridge_session::bearer(req), &inner.settings.admin_token) {
        if bool::from(token.expose_secret().as_bytes().ct_eq(given.as_bytes())) {
            return Ok(Actor("bootstrap-token".into()));
        }
    }
    match inner.gate.caller(req).await {
        Ok(Caller::Session(c)) if c.admin => Ok(Actor(format!("{} <{}@{}>", c.name, c.open_id, c.app_id))),
        Ok(Caller::Session(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            40330,
            "the console is for app admins; your Feishu account is not an admin of this app",
        )),
        Ok(Caller::Service) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            40331,
            "service tokens cannot use the console; log in as an app admin or use the bootstrap admin token",
        )),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            40130,
            "log in as an app admin (Feishu QR) or give the bootstrap admin token",
        )),
        Err(e) => Err(e),
    }
}
