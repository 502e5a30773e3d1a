//! The Open API surface under `/open-apis/`, as Feishu serves it, plus the accounts pages.
//!
//! Every handler starts with [`gate`]: injected faults, then the bearer token, then the rate
//! limit of (API, app).

pub mod application;
pub mod auth;
pub mod authen;
pub mod authen_v1;
pub mod batch;
pub mod bot;
pub mod card;
pub mod contact;
pub mod im;
pub mod page;
pub mod qr;
pub mod view;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::emulator::{lock, Emulator};
use crate::error::ApiError;
use crate::faults::FaultKind;
use crate::limits;
use crate::runtime::{TokenInfo, TokenKind};

/// Registers every Open API route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    auth::routes(cfg);
    contact::routes(cfg);
    authen::routes(cfg);
    authen_v1::routes(cfg);
    qr::routes(cfg);
    application::routes(cfg);
    im::routes(cfg);
    batch::routes(cfg);
    bot::routes(cfg);
    card::routes(cfg);
}

/// A random log id for `X-Tt-Logid`.
pub fn log_id() -> String {
    let mut rng = rand::thread_rng();
    format!("2026{}", crate::ids::random_hex(&mut rng, 28))
}

/// `{"code":0,"msg":"success","data":...}`.
pub fn ok(data: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("X-Tt-Logid", log_id()))
        .json(json!({"code": 0, "msg": "success", "data": data}))
}

/// The token kinds an API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    Tenant,
    User,
    TenantOrUser,
    /// app_access_token (legacy authen v1 exchange).
    App,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub app_id: String,
    pub tenant: usize,
    pub kind: TokenKind,
}

/// Applies injected faults for `api`; latency is awaited without any lock held.
pub async fn faults(emu: &Emulator, api: &str) -> Result<(), ApiError> {
    let fired = lock(&emu.inner.faults).fire(api);
    for f in fired {
        match f {
            FaultKind::Latency { ms } => {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            FaultKind::Status { status } => {
                return Err(ApiError::new(status, 1, "internal error (injected fault)"));
            }
            FaultKind::Drop => return Err(ApiError::dropped()),
            FaultKind::RateLimit => {
                let t = limits::tier(api);
                return Err(ApiError::rate_limited(t.per_sec, 1));
            }
        }
    }
    Ok(())
}

/// Reads and checks the bearer token.
pub fn authenticate(
    emu: &Emulator,
    req: &HttpRequest,
    accepts: Accepts,
) -> Result<Caller, ApiError> {
    let header = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = header.strip_prefix("Bearer ").map(str::trim).unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::new(
            400,
            99991661,
            "Missing access token for authorization. Please make a request with token attached.",
        ));
    }
    let info: Option<TokenInfo> = emu.rt().tokens.get(token).cloned();
    let now = emu.clock().now_ms();
    let wants_user = accepts == Accepts::User;
    let Some(info) = info.filter(|i| i.expires_ms > now) else {
        if !(token.starts_with("t-")
            || token.starts_with("u-")
            || token.starts_with("eyJ")
            || token.starts_with("a-"))
        {
            return Err(ApiError::new(
                400,
                99991671,
                "Invalid token format, please check",
            ));
        }
        return Err(
            if wants_user || token.starts_with("eyJ") || token.starts_with("u-") {
                ApiError::new(400, 99991668, "Invalid access token for authorization. Please make a request with token attached.")
            } else {
                ApiError::new(400, 99991663, "Invalid access token for authorization. Please make a request with token attached.")
            },
        );
    };
    let fits = matches!(
        (&info.kind, accepts),
        (TokenKind::Tenant, Accepts::Tenant | Accepts::TenantOrUser)
            | (TokenKind::App, Accepts::App)
            | (
                TokenKind::User { .. },
                Accepts::User | Accepts::TenantOrUser
            )
    );
    if !fits {
        return Err(match accepts {
            Accepts::User => ApiError::new(400, 99991668, "Invalid access token for authorization. Please make a request with token attached."),
            Accepts::App => ApiError::new(400, 99991664, "Invalid app access token."),
            _ => ApiError::new(400, 99991663, "Invalid access token for authorization. Please make a request with token attached."),
        });
    }
    Ok(Caller {
        app_id: info.app_id,
        tenant: info.tenant,
        kind: info.kind,
    })
}

/// Takes one call from the (api, key) buckets.
pub fn rate_limit(
    emu: &Emulator,
    api: &str,
    key: &str,
    tier: limits::Tier,
) -> Result<(), ApiError> {
    let scale = emu.read().state.settings.rate_limit_scale;
    let now = emu.clock().now_ms();
    lock(&emu.inner.limiter)
        .check(api, key, tier, scale, now)
        .map_err(|r| ApiError::rate_limited(r.limit, r.reset_secs))
}

/// Faults, authentication and the API's rate limit, in that order.
pub async fn gate(
    emu: &Emulator,
    req: &HttpRequest,
    api: &str,
    accepts: Accepts,
) -> Result<Caller, ApiError> {
    faults(emu, api).await?;
    let caller = authenticate(emu, req, accepts)?;
    rate_limit(emu, api, &caller.app_id, limits::tier(api))?;
    Ok(caller)
}

/// Query parameters as ordered pairs (repeated keys such as `user_ids=a&user_ids=b`).
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(req: &HttpRequest) -> Self {
        Query(
            url::form_urlencoded::parse(req.query_string().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn bool(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(ApiError::field(key, v, "must be true or false")),
        }
    }
}
