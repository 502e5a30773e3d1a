//! Test helpers: start an emulator, get tokens, call the API.

use std::time::{Duration, Instant};

use feishu_emulator::{demo, Emulator, GenerateSpec, RunningEmulator, Settings};
use serde_json::Value;

pub struct TestApp {
    pub emu: Emulator,
    pub server: RunningEmulator,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn generated(users: usize, departments: usize, seed: u64) -> Self {
        Self::with(Emulator::generate(GenerateSpec {
            users,
            departments,
            seed,
        }))
        .await
    }

    /// Starts `emu` with rate limits scaled up 1000x (tests of limits set their own scale).
    pub async fn with(emu: Emulator) -> Self {
        let settings = Settings {
            rate_limit_scale: 1000.0,
            event_time_factor: 0.001,
            ..emu.settings()
        };
        emu.set_settings(settings).unwrap();
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

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: std::collections::HashMap<String, String>,
    pub body: Vec<u8>,
}

/// A webhook receiver: answers url_verification, records every request, and can be made
/// to fail (HTTP 500) for the next `fail_next` requests.
pub struct Receiver {
    pub url: String,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    pub fail_next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl Receiver {
    /// `encrypt_key`: decrypt url_verification with it; `echo`: answer challenges.
    pub async fn start(encrypt_key: Option<&str>, echo: bool) -> Self {
        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
        use std::sync::atomic::Ordering;
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Received>::new()));
        let fail_next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (g, f) = (got.clone(), fail_next.clone());
        let key = encrypt_key.map(String::from);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(move || {
            let (g, f, key) = (g.clone(), f.clone(), key.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (g, f, key) = (g.clone(), f.clone(), key.clone());
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_lowercase(),
                                v.to_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect();
                    g.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    let plain = plaintext(key.as_deref(), &body);
                    if plain["type"] == "url_verification" {
                        if echo {
                            return HttpResponse::Ok()
                                .json(serde_json::json!({"challenge": plain["challenge"]}));
                        }
                        return HttpResponse::Ok().json(serde_json::json!({}));
                    }
                    if f.load(Ordering::SeqCst) > 0 {
                        f.fetch_sub(1, Ordering::SeqCst);
                        return HttpResponse::InternalServerError().finish();
                    }
                    if plain["header"]["event_type"] == "card.action.trigger" {
                        return HttpResponse::Ok().json(
                            serde_json::json!({"toast": {"type": "success", "content": "done"}}),
                        );
                    }
                    HttpResponse::Ok().json(serde_json::json!({"msg": "success"}))
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url: format!("http://{addr}/webhook"),
            got,
            fail_next,
            handle,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Decrypted event envelopes received so far (url_verification excluded).
    pub fn events(&self, key: Option<&str>) -> Vec<Value> {
        self.received()
            .iter()
            .map(|r| plaintext(key, &r.body))
            .filter(|v| v.get("schema").is_some())
            .collect()
    }
}

/// Decrypts `{"encrypt":...}` with `key` (or parses a plain body).
pub fn plaintext(key: Option<&str>, body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (key, v.get("encrypt").and_then(Value::as_str)) {
        (Some(k), Some(e)) => {
            let plain = bridge_feishu::EventCipher::new(k).decrypt(e).unwrap();
            serde_json::from_slice(&plain).unwrap()
        }
        _ => v,
    }
}
