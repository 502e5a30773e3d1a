//! Long-connection endpoint discovery (events.md §7.2): `POST /callback/ws/endpoint` with the
//! app's credentials answers a one-time WebSocket URL and the client's settings. The URL
//! carries a ticket: it is kept out of `Debug` and never logged.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::{AppCredentials, FeishuClient, FeishuError};

const API: &str = "callback.ws.endpoint";
/// Codes the SDKs treat as "try again later" (G-ws/P-ws/N-ws const): system busy, internal error.
const RETRYABLE_CODES: &[i64] = &[1, 1000040343];

/// The client settings Feishu sends with the endpoint and in pong payloads (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientConfig {
    /// Attempts before giving up; negative means unlimited.
    #[serde(default = "unlimited")]
    pub reconnect_count: i64,
    #[serde(default = "default_interval")]
    pub reconnect_interval: u64,
    /// Jitter before the first reconnect attempt: a random delay in `[0, nonce)` seconds.
    #[serde(default = "default_nonce")]
    pub reconnect_nonce: u64,
    #[serde(default = "default_interval")]
    pub ping_interval: u64,
}

fn unlimited() -> i64 {
    -1
}
fn default_interval() -> u64 {
    120
}
fn default_nonce() -> u64 {
    30
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            reconnect_count: -1,
            reconnect_interval: 120,
            reconnect_nonce: 30,
            ping_interval: 120,
        }
    }
}

impl ClientConfig {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval)
    }

    pub fn reconnect_interval(&self) -> Duration {
        Duration::from_secs(self.reconnect_interval)
    }

    pub fn reconnect_nonce(&self) -> Duration {
        Duration::from_secs(self.reconnect_nonce)
    }
}

/// Where to dial, and how to behave.
pub struct WsEndpoint {
    /// `wss://...?device_id=...&service_id=...&ticket=...`: a secret.
    pub url: SecretString,
    pub config: ClientConfig,
    /// `service_id` from the URL, written into every frame's `service` field.
    pub service_id: i32,
    /// `device_id` from the URL: the connection's id in logs.
    pub device_id: String,
}

impl std::fmt::Debug for WsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsEndpoint")
            .field("config", &self.config)
            .field("service_id", &self.service_id)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    msg: String,
    data: Option<ReplyData>,
}

#[derive(Deserialize)]
struct ReplyData {
    #[serde(rename = "URL", default)]
    url: String,
    #[serde(rename = "ClientConfig", default)]
    client_config: Option<ClientConfig>,
}

impl FeishuClient {
    /// Asks for a long-connection endpoint. `Credentials` for client errors (wrong App ID or
    /// Secret, not allowed: never retried), `Unavailable` for what may pass (HTTP errors,
    /// codes 1 and 1000040343, network).
    pub async fn ws_endpoint(
        &self,
        app: &AppCredentials,
        timeout: Duration,
    ) -> Result<WsEndpoint, FeishuError> {
        let url = app
            .base_url
            .join("/callback/ws/endpoint")
            .map_err(|e| FeishuError::Decode {
                api: API,
                detail: e.to_string(),
            })?;
        let unavailable = |detail: String| FeishuError::Unavailable {
            api: API,
            detail,
            attempts: 1,
        };
        let resp = self
            .http
            .post(url)
            .timeout(timeout)
            .header("locale", "zh")
            .json(&json!({"AppID": app.app_id, "AppSecret": app.app_secret.expose_secret()}))
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(unavailable(format!("http {status}")));
        }
        let reply: Reply = resp.json().await.map_err(|e| FeishuError::Decode {
            api: API,
            detail: e.without_url().to_string(),
        })?;
        if reply.code != 0 {
            if RETRYABLE_CODES.contains(&reply.code) {
                return Err(FeishuError::Api {
                    api: API,
                    code: reply.code,
                    msg: reply.msg,
                    status,
                    log_id: None,
                });
            }
            return Err(FeishuError::Credentials {
                app_id: app.app_id.clone(),
                code: reply.code,
                msg: reply.msg,
            });
        }
        let data = reply.data.ok_or_else(|| FeishuError::Decode {
            api: API,
            detail: "no data".into(),
        })?;
        let parsed = url::Url::parse(&data.url).map_err(|_| FeishuError::Decode {
            api: API,
            detail: "URL is not a URL".into(),
        })?;
        let query = |k: &str| {
            parsed
                .query_pairs()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.into_owned())
        };
        let service_id = query("service_id")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let device_id = query("device_id").unwrap_or_default();
        Ok(WsEndpoint {
            url: SecretString::from(data.url),
            config: data.client_config.unwrap_or_default(),
            service_id,
            device_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_reads_feishu_names_and_defaults_missing_ones() {
        let c: ClientConfig =
            serde_json::from_str(r#"{"ReconnectCount":3,"PingInterval":5}"#).unwrap();
        assert_eq!(c.reconnect_count, 3);
        assert_eq!(c.ping_interval(), Duration::from_secs(5));
        assert_eq!(c.reconnect_interval, 120);
        assert_eq!(c.reconnect_nonce, 30);
    }
}
