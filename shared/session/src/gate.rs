//! The check at the door of every internal API.

use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use bridge_runtime::ApiError;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::verifier::{Claims, Verifier, VerifyError};

/// The cookie that carries the access token in a browser.
pub const SESSION_COOKIE: &str = "fb_session";

/// The `Authorization: Bearer` token of a request, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The session's access token: a JWT in `Authorization: Bearer`, else the `fb_session` cookie.
pub fn session_token(req: &HttpRequest) -> Option<String> {
    bearer(req)
        .filter(|b| b.matches('.').count() == 2)
        .map(str::to_string)
        .or_else(|| req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()))
        .filter(|t| !t.is_empty())
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A platform service with a token from `api.tokens`.
    Service,
    /// A person logged in through auth.
    Session(Box<Claims>),
}

impl Caller {
    /// A service, a session of `app_id`, or a platform admin (an admin of any bound app: the
    /// console lets them manage every binding, so their reach is the same here); 403 for
    /// anyone else's session.
    pub fn require_app(&self, app_id: &str) -> Result<(), ApiError> {
        match self {
            Caller::Service => Ok(()),
            Caller::Session(c) if c.app_id == app_id || c.admin => Ok(()),
            Caller::Session(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                40310,
                format!("this session is not for app {app_id}"),
            )),
        }
    }

    /// A service, or a platform admin's session.
    pub fn require_admin(&self, app_id: &str) -> Result<(), ApiError> {
        self.require_app(app_id)?;
        match self {
            Caller::Session(c) if !c.admin => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                40311,
                format!("an admin of app {app_id} is required"),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Claims;

    fn session(app: &str, admin: bool) -> Caller {
        Caller::Session(Box::new(Claims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "ou_1".into(),
            sid: "s".into(),
            app_id: app.into(),
            tenant_key: "t".into(),
            open_id: "ou_1".into(),
            union_id: None,
            name: "n".into(),
            admin,
            iat: 0,
            exp: 0,
            jti: "j".into(),
        }))
    }

    #[test]
    fn who_reaches_what() {
        assert!(Caller::Service.require_admin("cli_a").is_ok());
        assert!(session("cli_a", false).require_app("cli_a").is_ok());
        assert_eq!(
            session("cli_a", false)
                .require_app("cli_b")
                .unwrap_err()
                .code,
            40310
        );
        assert_eq!(
            session("cli_a", false)
                .require_admin("cli_a")
                .unwrap_err()
                .code,
            40311
        );
        assert!(session("cli_a", true).require_admin("cli_b").is_ok());
    }
}

/// Accepts service tokens and, when a verifier is given, auth sessions (`Authorization:
/// Bearer <jwt>` or the `fb_session` cookie).
#[derive(Clone)]
pub struct Gate {
    tokens: Vec<SecretString>,
    verifier: Option<Verifier>,
}

fn unauthorized(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, 40110, msg)
}

impl Gate {
    pub fn new(tokens: Vec<SecretString>, verifier: Option<Verifier>) -> Self {
        Self { tokens, verifier }
    }

    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// Whether `given` is one of the service tokens (compared in constant time).
    pub fn is_service_token(&self, given: &str) -> bool {
        !given.is_empty()
            && self.tokens.iter().fold(false, |acc, t| {
                acc | bool::from(t.expose_secret().as_bytes().ct_eq(given.as_bytes()))
            })
    }

    /// The caller of `req`, or 401 with what is missing or wrong.
    pub async fn caller(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        let bearer = bearer(req);
        if bearer.is_some_and(|b| self.is_service_token(b)) {
            return Ok(Caller::Service);
        }
        match (session_token(req), &self.verifier) {
            (Some(jwt), Some(v)) => match v.verify(&jwt).await {
                Ok(c) => Ok(Caller::Session(Box::new(c))),
                Err(VerifyError::KeysUnavailable(e)) => {
                    tracing::warn!(error = %e, "cannot load session keys");
                    Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        50310,
                        "sessions cannot be verified right now",
                    ))
                }
                Err(e) => Err(unauthorized(format!("session refused: {e}"))),
            },
            _ if bearer.is_some() => Err(unauthorized("the bearer token is not valid here")),
            _ if self.verifier.is_some() => Err(unauthorized(
                "a service token or a session (Authorization: Bearer ...) is required",
            )),
            _ => Err(unauthorized(
                "a service token (Authorization: Bearer ...) is required",
            )),
        }
    }
}
