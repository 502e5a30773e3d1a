//! The Feishu Open API client every service reuses: a tenant token cache per app (early
//! refresh, single-flight renewal, forced refresh on 99991663/99991661), client-side rate
//! limits per API and app, waiting `x-ogw-ratelimit-reset` on 99991400/429, jittered retries
//! for 5xx and network errors, a timeout on every call, and typed errors for Feishu's codes.

pub mod application;
pub mod authen;
pub mod contact;
pub mod im;
pub mod limit;
mod token;
pub mod ws;

use std::time::Duration;

use reqwest::Method;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

pub use limit::{RateLimiter, Tier, DEFAULT_TIER, SPECIAL_TIER};
use token::TokenCache;

/// Feishu's OpenAPI host for China, and Lark's for everywhere else.
pub const FEISHU_BASE: &str = "https://open.feishu.cn";
pub const LARK_BASE: &str = "https://open.larksuite.com";

/// Who calls: one self-built app, on its platform's host (or the emulator's).
#[derive(Clone, Debug)]
pub struct AppCredentials {
    pub app_id: String,
    pub app_secret: SecretString,
    /// `https://open.feishu.cn`, `https://open.larksuite.com`, or an emulator's base URL.
    pub base_url: Url,
}

/// Tuning, with production defaults.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Whole-request timeout (Feishu's SDKs have none; we always set one).
    pub timeout: Duration,
    /// Attempts for 5xx and network errors.
    pub max_attempts: u32,
    /// Attempts after 99991400 answers before giving up.
    pub max_rate_limited: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Refresh a tenant token this long before it expires (Feishu's SDKs use 3-10 min).
    pub token_margin: Duration,
    /// Multiplies the client-side tiers (use the emulator's factor in tests).
    pub rate_scale: f64,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            max_rate_limited: 20,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            token_margin: Duration::from_secs(5 * 60),
            rate_scale: 1.0,
            user_agent: concat!("feishu-bridge/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// What a call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FeishuError {
    /// Feishu answered with a non-zero code.
    #[error("feishu {api}: code {code}: {msg} (http {status})")]
    Api {
        api: &'static str,
        code: i64,
        msg: String,
        status: u16,
        log_id: Option<String>,
    },
    /// App ID or App Secret is wrong, or the app is disabled: do not retry.
    #[error("feishu credentials refused for {app_id}: code {code}: {msg}")]
    Credentials {
        app_id: String,
        code: i64,
        msg: String,
    },
    #[error("feishu {api}: still rate limited after {attempts} attempts")]
    RateLimited { api: &'static str, attempts: u32 },
    #[error("feishu {api}: {detail} after {attempts} attempts")]
    Unavailable {
        api: &'static str,
        detail: String,
        attempts: u32,
    },
    #[error("feishu {api}: unexpected answer: {detail}")]
    Decode { api: &'static str, detail: String },
    /// An at-most-once call (no idempotency key on Feishu's side) failed after the request
    /// may have reached Feishu: it may or may not have taken effect, so it was not repeated.
    #[error("feishu {api}: outcome unknown ({detail}); not repeated")]
    OutcomeUnknown { api: &'static str, detail: String },
}

/// Codes meaning "the app's configuration is wrong" at the token endpoint (openapi.md §2.5).
const CREDENTIAL_CODES: &[i64] = &[10003, 10014, 10015, 20002, 99991543, 99991662, 99991673];
/// Codes meaning "the token is not valid (any more)".
const TOKEN_CODES: &[i64] = &[99991663, 99991661, 99991671, 99991664];
const RATE_LIMITED: i64 = 99991400;

impl FeishuError {
    /// Feishu's code, when Feishu answered with one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } | Self::Credentials { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Worth trying again later (the sync or the message as a whole).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable { .. })
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    msg: String,
    data: Option<T>,
}

/// The OAuth endpoints answer flat: `{"code":0,"access_token":...}` or
/// `{"code":20003,"error":"invalid_grant","error_description":"..."}`.
#[derive(Deserialize)]
struct FlatEnvelope {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// Which token a call carries.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// The app's tenant_access_token (cached, refreshed).
    Tenant,
    /// A user_access_token.
    User(&'a str),
    /// None: the OAuth token endpoint authenticates with the client secret in the body.
    Anonymous,
}

/// Whether a call may be repeated after a failure that leaves its outcome unknown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Reads, and writes Feishu deduplicates (a `uuid`): retried on any transient failure.
    Safe,
    /// A write Feishu cannot deduplicate (`batch_send`): retried only when the request surely
    /// did not take effect (no connection, 502/503, rate limits); otherwise
    /// [`FeishuError::OutcomeUnknown`].
    AtMostOnce,
}

/// Where the answer's payload is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `{"code":0,"msg":"ok","data":{...}}`
    Data,
    /// The whole body (OAuth endpoints).
    Flat,
}

/// One page of a paginated list.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub page_token: Option<String>,
}

/// The client. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct FeishuClient {
    http: reqwest::Client,
    tokens: TokenCache,
    limiter: RateLimiter,
    opts: ClientOptions,
}

impl FeishuClient {
    pub fn new(opts: ClientOptions) -> Result<Self, FeishuError> {
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(Duration::from_secs(5).min(opts.timeout))
            .user_agent(opts.user_agent.clone())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| FeishuError::Unavailable {
                api: "client",
                detail: e.to_string(),
                attempts: 0,
            })?;
        Ok(Self {
            http,
            tokens: TokenCache::default(),
            limiter: RateLimiter::new(opts.rate_scale),
            opts,
        })
    }

    /// A valid tenant_access_token for the app (cached; renewed once for all callers).
    pub async fn tenant_token(&self, app: &AppCredentials) -> Result<String, FeishuError> {
        self.tokens.get(self, app).await
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.opts.backoff_base.saturating_mul(1 << attempt.min(10));
        let capped = exp.min(self.opts.backoff_max);
        // Full jitter between half and all of the capped delay.
        let half = capped / 2;
        half + Duration::from_millis(rand::random::<u64>() % (half.as_millis() as u64 + 1))
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        app: &AppCredentials,
        api: &'static str,
        tier: Tier,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, FeishuError> {
        self.call::<(), T>(
            app,
            api,
            tier,
            (Auth::Tenant, Shape::Data, Repeat::Safe),
            Method::GET,
            path,
            query,
            None,
        )
        .await
    }

    #[allow(dead_code)] // the im calls come with the notifier
    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        app: &AppCredentials,
        api: &'static str,
        tier: Tier,
        path: &str,
        query: &[(&str, String)],
        body: &B,
    ) -> Result<T, FeishuError> {
        self.call(
            app,
            api,
            tier,
            (Auth::Tenant, Shape::Data, Repeat::Safe),
            Method::POST,
            path,
            query,
            Some(body),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        app: &AppCredentials,
        api: &'static str,
        tier: Tier,
        (auth, shape, repeat): (Auth<'_>, Shape, Repeat),
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, FeishuError> {
        let url = app.base_url.join(path).map_err(|e| FeishuError::Decode {
            api,
            detail: format!("bad path {path}: {e}"),
        })?;
        let mut failures = 0u32;
        let mut limited = 0u32;
        let mut refreshed = false;
        loop {
            self.limiter.acquire(api, &app.app_id, tier).await;
            let token = match auth {
                Auth::Tenant => Some(self.tenant_token(app).await?),
                Auth::User(t) => Some(t.to_string()),
                Auth::Anonymous => None,
            };
            let mut req = self.http.request(method.clone(), url.clone()).query(query);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let outcome: Result<_, (String, bool)> = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let reset = resp
                        .headers()
                        .get("x-ogw-ratelimit-reset")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok());
                    let log_id = resp
                        .headers()
                        .get("x-tt-logid")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    match resp.bytes().await {
                        Ok(bytes) => Ok((status, reset, log_id, bytes)),
                        Err(e) => Err((e.to_string(), false)),
                    }
                }
                Err(e) => Err((e.to_string(), e.is_connect())),
            };
            let (status, reset, log_id, bytes) = match outcome {
                Ok(x) => x,
                Err((detail, not_sent)) => {
                    if repeat == Repeat::AtMostOnce && !not_sent {
                        metrics::counter!("feishu_api_calls_total", "api" => api, "outcome" => "unknown").increment(1);
                        return Err(FeishuError::OutcomeUnknown { api, detail });
                    }
                    failures += 1;
                    metrics::counter!("feishu_api_calls_total", "api" => api, "outcome" => "network").increment(1);
                    if failures >= self.opts.max_attempts {
                        return Err(FeishuError::Unavailable {
                            api,
                            detail,
                            attempts: failures,
                        });
                    }
                    tokio::time::sleep(self.backoff(failures)).await;
                    continue;
                }
            };
            if shape == Shape::Flat {
                match self.flat(api, status, reset, &bytes)? {
                    FlatOutcome::Done(v) => return Ok(v),
                    FlatOutcome::RateLimited(wait) => {
                        limited += 1;
                        if limited >= self.opts.max_rate_limited {
                            return Err(FeishuError::RateLimited {
                                api,
                                attempts: limited,
                            });
                        }
                        self.limiter.penalise(api, &app.app_id, wait);
                        tokio::time::sleep(wait).await;
                    }
                    FlatOutcome::Transient(detail) => {
                        failures += 1;
                        if failures >= self.opts.max_attempts {
                            return Err(FeishuError::Unavailable {
                                api,
                                detail,
                                attempts: failures,
                            });
                        }
                        tokio::time::sleep(self.backoff(failures)).await;
                    }
                }
                continue;
            }
            let env: Option<Envelope<T>> = serde_json::from_slice(&bytes).ok();
            let code = env.as_ref().map(|e| e.code);
            if status == 429 || code == Some(RATE_LIMITED) {
                limited += 1;
                metrics::counter!("feishu_api_calls_total", "api" => api, "outcome" => "rate_limited").increment(1);
                if limited >= self.opts.max_rate_limited {
                    return Err(FeishuError::RateLimited {
                        api,
                        attempts: limited,
                    });
                }
                let wait = Duration::from_secs_f64(reset.unwrap_or(1.0).clamp(0.0, 300.0));
                tracing::debug!(api, app_id = %app.app_id, wait = ?wait, "feishu rate limit; waiting for the reset");
                self.limiter.penalise(api, &app.app_id, wait);
                tokio::time::sleep(wait).await;
                continue;
            }
            if status >= 500 || (env.is_none() && status != 200) {
                if repeat == Repeat::AtMostOnce && !matches!(status, 502 | 503) {
                    metrics::counter!("feishu_api_calls_total", "api" => api, "outcome" => "unknown").increment(1);
                    return Err(FeishuError::OutcomeUnknown {
                        api,
                        detail: format!("http {status}"),
                    });
                }
                failures += 1;
                metrics::counter!("feishu_api_calls_total", "api" => api, "outcome" => "server_error").increment(1);
                if failures >= self.opts.max_attempts {
                    return Err(FeishuError::Unavailable {
                        api,
                        detail: format!("http {status}"),
                        attempts: failures,
                    });
                }
                tokio::time::sleep(self.backoff(failures)).await;
                continue;
            }
            let Some(env) = env else {
                return Err(FeishuError::Decode {
                    api,
                    detail: format!(
                        "http {status}: {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    ),
                });
            };
            if let (Auth::Tenant, Some(token)) = (auth, &token) {
                if TOKEN_CODES.contains(&env.code) && !refreshed {
                    // The cached token was revoked or expired early: drop it for real, once.
                    refreshed = true;
                    self.tokens.invalidate(&app.app_id, token).await;
                    continue;
                }
            }
            if env.code != 0 {
                metrics::counter!("feishu_api_calls_total", "api" => api, "outcome" => "error")
                    .increment(1);
                return Err(FeishuError::Api {
                    api,
                    code: env.code,
                    msg: env.msg,
                    status,
                    log_id,
                });
            }
            metrics::counter!("feishu_api_calls_total", "api" => api, "outcome" => "ok")
                .increment(1);
            return match env.data {
                Some(d) => Ok(d),
                // Some APIs answer code 0 without data; let T decide whether that is fine.
                None => serde_json::from_value(serde_json::Value::Object(Default::default()))
                    .map_err(|e| FeishuError::Decode {
                        api,
                        detail: format!("no data: {e}"),
                    }),
            };
        }
    }
}

enum FlatOutcome<T> {
    Done(T),
    RateLimited(Duration),
    Transient(String),
}

impl FeishuClient {
    /// Reads a flat OAuth answer: the value, a rate limit to wait out, a transient failure
    /// (5xx, 20050 server error, 20072 temporarily unavailable), or Feishu's error.
    fn flat<T: DeserializeOwned>(
        &self,
        api: &'static str,
        status: u16,
        reset: Option<f64>,
        bytes: &[u8],
    ) -> Result<FlatOutcome<T>, FeishuError> {
        let env: Option<FlatEnvelope> = serde_json::from_slice(bytes).ok();
        let code = env.as_ref().map(|e| e.code);
        if status == 429 || code == Some(RATE_LIMITED) {
            metrics::counter!("feishu_api_calls_total", "api" => api, "outcome" => "rate_limited")
                .increment(1);
            let wait = Duration::from_secs_f64(reset.unwrap_or(1.0).clamp(0.0, 300.0));
            return Ok(FlatOutcome::RateLimited(wait));
        }
        let env = match env {
            Some(e) if status < 500 && !matches!(e.code, 20050 | 20072) => e,
            _ => {
                metrics::counter!("feishu_api_calls_total", "api" => api, "outcome" => "server_error")
                    .increment(1);
                return Ok(FlatOutcome::Transient(format!(
                    "http {status} code {}",
                    code.unwrap_or(-1)
                )));
            }
        };
        if env.code != 0 {
            metrics::counter!("feishu_api_calls_total", "api" => api, "outcome" => "error")
                .increment(1);
            return Err(FeishuError::Api {
                api,
                code: env.code,
                msg: env.error_description.or(env.msg).unwrap_or_default(),
                status,
                log_id: None,
            });
        }
        metrics::counter!("feishu_api_calls_total", "api" => api, "outcome" => "ok").increment(1);
        serde_json::from_slice(bytes)
            .map(FlatOutcome::Done)
            .map_err(|e| FeishuError::Decode {
                api,
                detail: e.to_string(),
            })
    }
}
