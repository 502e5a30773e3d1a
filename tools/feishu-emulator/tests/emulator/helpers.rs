//! Test helpers: start an emulator, get tokens, call the API.

use std::time::{Duration, Instant};

use feishu_emulator::{demo, Emulator, GenerateSpec, RunningEmulator};
use serde_json::Value;

pub struct TestApp {
    pub emu: Emulator,
    pub server: RunningEmulator,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn generated(users: usize, departments: usize, seed: u64) -> Self {
        Self::with(Emulator::generate(GenerateSpec { users, departments, seed })).await
    }

    pub async fn with(emu: Emulator) -> Self {
        let server = emu.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        TestApp { emu, server, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.base_url(), path)
    }

    pub async fn tenant_token_for(&self, app_id: &str, secret: &str) -> String {
        let v: Value = self
            .http
            .post(self.url("/open-apis/auth/v3/tenant_access_token/internal"))
            .json(&serde_json::json!({"app_id": app_id, "app_secret": secret}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["code"], 0, "{v}");
        v["tenant_access_token"].as_str().unwrap().to_string()
    }

    pub async fn tenant_token(&self) -> String {
        self.tenant_token_for(demo::APP_ID, demo::APP_SECRET).await
    }

    /// GET with a bearer token; returns (status, body).
    pub async fn get(&self, token: &str, path_and_query: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path_and_query))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }
}

/// Polls `f` until it returns Some, or panics after `within`.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
