//! Tenant token cache: per app, renewed `token_margin` before expiry (never earlier than half
//! the lifetime), one renewal at a time per app, and dropped for real when Feishu says the
//! token is no longer valid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::time::Instant;

use super::{AppCredentials, FeishuClient, FeishuError, CREDENTIAL_CODES};

#[derive(Clone)]
struct Cached {
    token: String,
    refresh_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

#[derive(Clone, Default)]
pub(crate) struct TokenCache {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    tenant_access_token: String,
    #[serde(default)]
    expire: u64,
}

impl TokenCache {
    fn slot(&self, app_id: &str) -> Slot {
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots.entry(app_id.to_string()).or_default().clone()
    }

    pub(crate) async fn get(
        &self,
        client: &FeishuClient,
        app: &AppCredentials,
    ) -> Result<String, FeishuError> {
        let slot = self.slot(&app.app_id);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let (token, expire) = fetch(client, app).await?;
        let lifetime = Duration::from_secs(expire);
        let margin = client.opts.token_margin.min(lifetime / 2);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        Ok(token)
    }

    /// Drops `token` if it is still the cached one (another caller may have renewed it).
    pub(crate) async fn invalidate(&self, app_id: &str, token: &str) {
        let slot = self.slot(app_id);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == token) {
            *cached = None;
        }
    }
}

async fn fetch(client: &FeishuClient, app: &AppCredentials) -> Result<(String, u64), FeishuError> {
    const API: &str = "auth.tenant_access_token";
    let url = app
        .base_url
        .join("/open-apis/auth/v3/tenant_access_token/internal")
        .map_err(|e| FeishuError::Decode {
            api: API,
            detail: e.to_string(),
        })?;
    let body =
        serde_json::json!({"app_id": app.app_id, "app_secret": app.app_secret.expose_secret()});
    let mut failures = 0;
    loop {
        client
            .limiter
            .acquire(API, &app.app_id, super::DEFAULT_TIER)
            .await;
        let answer = client.http.post(url.clone()).json(&body).send().await;
        let retry = match answer {
            Ok(resp) if resp.status().is_server_error() => format!("http {}", resp.status()),
            Ok(resp) if resp.status().as_u16() == 429 => {
                let wait = resp
                    .headers()
                    .get("x-ogw-ratelimit-reset")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(1.0);
                tokio::time::sleep(Duration::from_secs_f64(wait.clamp(0.0, 300.0))).await;
                continue;
            }
            Ok(resp) => {
                let a: TokenAnswer = resp.json().await.map_err(|e| FeishuError::Decode {
                    api: API,
                    detail: e.to_string(),
                })?;
                if a.code == 0 && !a.tenant_access_token.is_empty() {
                    metrics::counter!("feishu_token_fetches_total", "outcome" => "ok").increment(1);
                    return Ok((a.tenant_access_token, a.expire.max(1)));
                }
                metrics::counter!("feishu_token_fetches_total", "outcome" => "refused")
                    .increment(1);
                if CREDENTIAL_CODES.contains(&a.code) {
                    return Err(FeishuError::Credentials {
                        app_id: app.app_id.clone(),
                        code: a.code,
                        msg: a.msg,
                    });
                }
                return Err(FeishuError::Api {
                    api: API,
                    code: a.code,
                    msg: a.msg,
                    status: 200,
                    log_id: None,
                });
            }
            Err(e) => e.to_string(),
        };
        failures += 1;
        if failures >= client.opts.max_attempts {
            return Err(FeishuError::Unavailable {
                api: API,
                detail: retry,
                attempts: failures,
            });
        }
        tokio::time::sleep(client.backoff(failures)).await;
    }
}
