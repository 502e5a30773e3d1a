//! Typed, layered settings: built-in defaults < a TOML file (`--config`) < environment
//! variables `BRIDGE__SECTION__KEY`. Unknown keys are rejected, and every error names the key.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Load(String),
    #[error("settings: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// The process's settings. Sections belong to the services that read them.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub broker: BrokerSettings,
    pub security: SecuritySettings,
    /// The externally visible base URL of this deployment (what Feishu and browsers reach).
    pub public_base_url: Option<Url>,
    pub telemetry: TelemetrySettings,
    pub ingress: IngressSettings,
    pub api: ApiSettings,
    pub feishu: FeishuSettings,
    pub directory: DirectorySettings,
    pub auth: AuthSettings,
    pub console: ConsoleSettings,
    pub notifier: NotifierSettings,
    /// App bindings provisioned from the file (secrets from here are stored encrypted).
    pub apps: Vec<AppProvision>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Worker threads for the HTTP server; 0 = one per core.
    pub workers: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            workers: 0,
            shutdown_grace: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://...` or `sqlite://path?mode=rwc`. Empty: in `all` mode a SQLite file under
    /// `data_dir`; elsewhere an error.
    pub url: Option<SecretString>,
    pub auto_migrate: bool,
    pub max_connections: u32,
    /// Where `all` mode keeps its SQLite database and generated master key.
    pub data_dir: std::path::PathBuf,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            auto_migrate: true,
            max_connections: 10,
            data_dir: "data".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// `amqp://user:pass@host:port/vhost`, or `embedded` (only for `all`). Unset: `embedded`
    /// in `all`, an error elsewhere.
    pub url: Option<SecretString>,
    /// How long a publish may wait for the broker's confirm.
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
    /// Delay before the first reconnect attempt; doubles up to `reconnect_max`.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Publisher channels used round-robin (confirms are pipelined on each).
    pub publish_channels: usize,
    /// Unacked deliveries per consumer (basic_qos prefetch).
    pub prefetch: u16,
    /// Prefixed to consumer queue names, so several deployments (or test runs) can share one
    /// broker without taking each other's messages.
    pub queue_prefix: String,
    /// Lets consumer queues expire when unused for this long (test runs; leave unset in
    /// production).
    #[serde(with = "humantime_serde")]
    pub queue_expires: Option<Duration>,
    /// Consumer queues are quorum queues (default). `false` gives classic, non-durable
    /// queues: only for test runs and throwaway development brokers.
    pub quorum_queues: bool,
    /// The ingress's HTTP workers publish over a connection each of their own (plain
    /// `amqp://`), not through lapin's shared connection: no hop between threads per event.
    pub worker_connections: bool,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            url: None,
            confirm_timeout: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            publish_channels: 4,
            prefetch: 64,
            queue_prefix: String::new(),
            queue_expires: None,
            quorum_queues: true,
            worker_connections: true,
        }
    }
}

impl BrokerSettings {
    /// Whether the embedded bus is asked for (explicitly, or by leaving the URL unset).
    pub fn is_embedded(&self) -> bool {
        self.url
            .as_ref()
            .is_none_or(|u| u.expose_secret() == "embedded")
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// 32 bytes, base64: the key secrets are encrypted with at rest.
    pub master_key: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// OTLP/gRPC endpoint (e.g. http://otel-collector:4317); traces are exported when set.
    pub otlp_endpoint: Option<Url>,
    /// `json` (default) or `pretty`.
    pub log_format: LogFormat,
    /// An EnvFilter directive, e.g. `info,sqlx=warn`.
    pub log_level: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            log_format: LogFormat::Json,
            log_level: "info,sqlx=warn,sea_orm=warn,lapin=warn".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressSettings {
    /// Bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// How long the ingress waits for the broker's confirm before answering 503 (Feishu gives
    /// up after 3 s).
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// How long a published event id is remembered to answer Feishu's duplicates without
    /// publishing again.
    #[serde(with = "humantime_serde")]
    pub dedupe_ttl: Duration,
    /// How many event ids the duplicate cache keeps.
    pub dedupe_capacity: u64,
    /// Long-connection mode (Feishu's WebSocket), for bindings whose delivery asks for it.
    pub long_connection: LongConnectionSettings,
}

/// The long-connection client's knobs; Feishu's server sends the rest (ping interval,
/// reconnect interval and jitter) in the endpoint reply and in pongs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LongConnectionSettings {
    /// Connections this replica keeps per app.
    pub connections_per_app: u32,
    /// Connections per app across every replica (Feishu allows 50): each connection holds
    /// one of this many slots (a PostgreSQL lease); a replica finding none free waits.
    pub max_connections_per_app: u32,
    /// Pings are sent at Feishu's `PingInterval`, but at least this often.
    #[serde(with = "humantime_serde")]
    pub max_ping_interval: Duration,
    /// The watchdog: a connection that received nothing (pong or data) this long after a
    /// ping is closed and dialled again.
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// Timeout of the endpoint discovery call and of the WebSocket dial.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A partly received multi-part message is dropped this long after its last fragment
    /// (Feishu's SDKs: 5 s); Feishu re-pushes it, since it was never acknowledged.
    #[serde(with = "humantime_serde")]
    pub fragment_ttl: Duration,
    /// Multi-part messages reassembled at once per connection; the oldest is dropped beyond.
    pub max_pending_messages: usize,
    /// Delay between reconnect attempts never exceeds this, whatever the server says.
    #[serde(with = "humantime_serde")]
    pub max_reconnect_interval: Duration,
}

impl Default for LongConnectionSettings {
    fn default() -> Self {
        Self {
            connections_per_app: 1,
            max_connections_per_app: 50,
            max_ping_interval: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(15),
            fragment_ttl: Duration::from_secs(5),
            max_pending_messages: 64,
            max_reconnect_interval: Duration::from_secs(120),
        }
    }
}

impl Default for IngressSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            publish_timeout: Duration::from_secs(2),
            dedupe_ttl: Duration::from_secs(8 * 3600),
            dedupe_capacity: 200_000,
            long_connection: LongConnectionSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Service tokens accepted on the internal APIs (`Authorization: Bearer ...`).
    pub tokens: Vec<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeishuSettings {
    /// Overrides the Open API host of every app (the emulator in tests and `make demo`).
    pub base_url: Option<Url>,
    /// Timeout of one Open API call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Multiplies the client-side rate-limit tiers (only for an emulator scaled the same way).
    pub rate_scale: f64,
}

impl Default for FeishuSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            timeout: Duration::from_secs(10),
            rate_scale: 1.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectorySettings {
    /// How often every app's organisation is reconciled with Feishu.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// A reconcile that would delete more than this share of the users is refused unless
    /// forced.
    pub max_delete_share: f64,
    /// Deliveries applied in one transaction.
    pub batch_size: usize,
    /// Concurrent Open API calls during a full sync (the rate limiter paces them).
    pub sync_concurrency: usize,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        Self {
            reconcile_interval: Duration::from_secs(6 * 3600),
            max_delete_share: 0.2,
            batch_size: 100,
            sync_concurrency: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Lifetime of an access token (a JWT other services verify offline).
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    /// A session can be refreshed until this long after the login.
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    /// How long a started login (its state and PKCE verifier) stays valid.
    #[serde(with = "humantime_serde")]
    pub login_ttl: Duration,
    /// The `iss` of access tokens.
    pub issuer: String,
    /// Origins (`https://platform.example.com`) a login may redirect to besides this
    /// service's own relative paths.
    pub allowed_redirect_origins: Vec<String>,
    /// Mark cookies `Secure`; by default when `public_base_url` is https.
    pub cookie_secure: Option<bool>,
    /// Overrides Feishu's accounts host (the authorize page), e.g. the emulator; by default
    /// `feishu.base_url` when set, else accounts.feishu.cn or accounts.larksuite.com.
    pub authorize_base: Option<Url>,
    /// Overrides the QR-login SDK script URL; by default derived like `authorize_base`.
    pub qr_sdk_url: Option<Url>,
    /// How often each process reads session revocations (logouts) from the database.
    #[serde(with = "humantime_serde")]
    pub revocation_poll: Duration,
    /// Verify sessions against this JWKS instead of the shared database's keys.
    pub jwks_url: Option<Url>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            login_ttl: Duration::from_secs(10 * 60),
            issuer: "feishu-bridge".into(),
            allowed_redirect_origins: Vec::new(),
            cookie_secure: None,
            authorize_base: None,
            qr_sdk_url: None,
            revocation_poll: Duration::from_secs(1),
            jwks_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// The bootstrap admin token (`Authorization: Bearer`), for the first binding and when no
    /// Feishu admin can log in. SECRET.
    pub admin_token: Option<SecretString>,
    /// The web app's home pages the checklist tells the operator to enter in Feishu's console
    /// (paths on `public_base_url`).
    pub desktop_home_path: String,
    pub mobile_home_path: String,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            admin_token: None,
            desktop_home_path: "/".into(),
            mobile_home_path: "/".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifierSettings {
    /// Folder of message templates (`<name>.text.j2`, `<name>.post.json.j2`,
    /// `<name>.card.json.j2`); none configured = no templates.
    pub templates_dir: Option<std::path::PathBuf>,
    /// Notification requests handled at once by one replica.
    pub concurrency: usize,
    /// Single sends of one notification in flight at once.
    pub sends_per_notification: usize,
    /// More user recipients than this go through `message/v4/batch_send` (departments always).
    pub batch_threshold: usize,
    /// Share of Feishu's rate limits the shared budget hands out (headroom for clock jitter).
    pub rate_headroom: f64,
    /// How often batch progress is polled and finished notifications are reported.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Give up following a batch's progress after this long (it is then reported as sent).
    #[serde(with = "humantime_serde")]
    pub progress_timeout: Duration,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            templates_dir: None,
            concurrency: 32,
            sends_per_notification: 8,
            batch_threshold: 20,
            rate_headroom: 0.95,
            poll_interval: Duration::from_secs(2),
            progress_timeout: Duration::from_secs(600),
        }
    }
}

/// An app binding provisioned from the settings file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppProvision {
    pub app_id: String,
    pub app_secret: SecretString,
    #[serde(default)]
    pub encrypt_key: Option<SecretString>,
    pub verification_token: SecretString,
    #[serde(default)]
    pub team_name: String,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub qr_login_enabled: bool,
    /// How Feishu delivers the app's events: pushed to the webhook, over the long
    /// connection, or both.
    #[serde(default)]
    pub delivery: DeliveryMode,
}

/// `[[apps]] delivery = "webhook" | "long_connection" | "both"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    #[default]
    Webhook,
    LongConnection,
    Both,
}

fn yes() -> bool {
    true
}

impl Settings {
    /// Loads defaults, then `file` (if any), then `BRIDGE__*` from the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Settings::load`], with the environment given (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(SettingsError::Load(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("BRIDGE__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("BRIDGE")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("api.tokens")
                .with_list_parse_key("auth.allowed_redirect_origins")
                .try_parsing(true)
                .source(Some(env)),
        );
        let raw = builder
            .build()
            .map_err(|e| SettingsError::Load(e.to_string()))?;
        let settings: Settings = raw
            .try_deserialize()
            .map_err(|e| SettingsError::Load(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key, problem: &str| SettingsError::Invalid {
            key,
            problem: problem.into(),
        };
        if self.ingress.max_body_bytes < 1024 {
            return Err(invalid("ingress.max_body_bytes", "must be at least 1024"));
        }
        if self.ingress.publish_timeout >= Duration::from_secs(3) {
            return Err(invalid(
                "ingress.publish_timeout",
                "must be under 3s, Feishu's deadline for an answer",
            ));
        }
        let lc = &self.ingress.long_connection;
        if !(1..=50).contains(&lc.connections_per_app) {
            return Err(invalid(
                "ingress.long_connection.connections_per_app",
                "must be between 1 and 50, Feishu's limit per app",
            ));
        }
        if !(1..=50).contains(&lc.max_connections_per_app) {
            return Err(invalid(
                "ingress.long_connection.max_connections_per_app",
                "must be between 1 and 50, Feishu's limit per app across replicas",
            ));
        }
        if lc.pong_timeout.is_zero() || lc.max_ping_interval.is_zero() {
            return Err(invalid(
                "ingress.long_connection.pong_timeout",
                "pong_timeout and max_ping_interval must be positive",
            ));
        }
        if lc.max_pending_messages == 0 {
            return Err(invalid(
                "ingress.long_connection.max_pending_messages",
                "must be at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.directory.max_delete_share) {
            return Err(invalid(
                "directory.max_delete_share",
                "must be between 0 and 1",
            ));
        }
        if self.directory.batch_size == 0 || self.directory.sync_concurrency == 0 {
            return Err(invalid(
                "directory.batch_size",
                "batch_size and sync_concurrency must be at least 1",
            ));
        }
        if self.notifier.concurrency == 0 || self.notifier.sends_per_notification == 0 {
            return Err(invalid(
                "notifier.concurrency",
                "concurrency and sends_per_notification must be at least 1",
            ));
        }
        if !(self.notifier.rate_headroom > 0.0 && self.notifier.rate_headroom <= 1.0) {
            return Err(invalid(
                "notifier.rate_headroom",
                "must be above 0 and at most 1",
            ));
        }
        if self.feishu.rate_scale <= 0.0 {
            return Err(invalid("feishu.rate_scale", "must be positive"));
        }
        if self.broker.publish_channels == 0 {
            return Err(invalid("broker.publish_channels", "must be at least 1"));
        }
        if let Some(url) = &self.broker.url {
            let url = url.expose_secret();
            if !(url == "embedded" || url.starts_with("amqp://") || url.starts_with("amqps://")) {
                return Err(invalid(
                    "broker.url",
                    "must be amqp://..., amqps://... or `embedded`",
                ));
            }
        }
        if let Some(db) = &self.database.url {
            let db = db.expose_secret();
            if !(db.starts_with("postgres://")
                || db.starts_with("postgresql://")
                || db.starts_with("sqlite:"))
            {
                return Err(invalid(
                    "database.url",
                    "must be postgres://... or sqlite:...",
                ));
            }
        }
        if self.auth.access_ttl < Duration::from_secs(60)
            || self.auth.access_ttl > Duration::from_secs(24 * 3600)
        {
            return Err(invalid("auth.access_ttl", "must be between 1m and 24h"));
        }
        if self.auth.refresh_ttl < self.auth.access_ttl {
            return Err(invalid(
                "auth.refresh_ttl",
                "must not be shorter than auth.access_ttl",
            ));
        }
        for o in &self.auth.allowed_redirect_origins {
            let ok = Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
                    && !o.ends_with('/')
            });
            if !ok {
                return Err(SettingsError::Invalid {
                    key: "auth.allowed_redirect_origins",
                    problem: format!("`{o}` is not an origin like https://platform.example.com"),
                });
            }
        }
        for (i, app) in self.apps.iter().enumerate() {
            if !is_app_id(&app.app_id) {
                return Err(SettingsError::Invalid {
                    key: "apps",
                    problem: format!(
                        "entry {i}: app_id `{}` is not `cli_` followed by 16 hex digits",
                        app.app_id
                    ),
                });
            }
            // As the console checks them: an empty Verification Token would let anyone sign
            // a callback (the legacy card signature is SHA-1 over it and the body alone).
            for (name, v) in [
                ("app_secret", Some(&app.app_secret)),
                ("verification_token", Some(&app.verification_token)),
                ("encrypt_key", app.encrypt_key.as_ref()),
            ] {
                let Some(v) = v.map(|v| v.expose_secret()) else {
                    continue;
                };
                let problem = if v.trim().is_empty() && name != "encrypt_key" {
                    "must not be empty"
                } else if v.len() > 256 || v.trim() != v {
                    "is malformed (spaces around it, or over 256 characters)"
                } else {
                    continue;
                };
                return Err(SettingsError::Invalid {
                    key: "apps",
                    problem: format!("entry {i} ({}): {name} {problem}", app.app_id),
                });
            }
        }
        Ok(())
    }
}

/// Whether `s` has the shape of a Feishu App ID: `cli_` followed by 16 hex digits.
pub fn is_app_id(s: &str) -> bool {
    s.strip_prefix("cli_")
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.http.listen.to_string(), "0.0.0.0:8080");
        assert!(s.database.auto_migrate);
        assert_eq!(s.ingress.max_body_bytes, 1024 * 1024);
        assert_eq!(s.ingress.publish_timeout, Duration::from_secs(2));
    }

    #[test]
    fn file_then_env_override() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            r#"
public_base_url = "https://bridge.example.com"
[http]
listen = "127.0.0.1:9000"
[ingress]
publish_timeout = "1500ms"
[[apps]]
app_id = "cli_a1b2c3d4e5f60718"
app_secret = "s"
verification_token = "v"
team_name = "Team"
"#
        )
        .unwrap();
        let s = Settings::load_from(
            Some(f.path()),
            env(&[
                ("BRIDGE__HTTP__LISTEN", "127.0.0.1:9001"),
                ("BRIDGE__DATABASE__AUTO_MIGRATE", "false"),
                ("BRIDGE__API__TOKENS", "a,b"),
                ("OTHER__HTTP__LISTEN", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.http.listen.to_string(), "127.0.0.1:9001");
        assert!(!s.database.auto_migrate);
        assert_eq!(s.ingress.publish_timeout, Duration::from_millis(1500));
        assert_eq!(s.apps.len(), 1);
        assert_eq!(s.apps[0].team_name, "Team");
        assert!(s.apps[0].enabled);
        assert_eq!(s.api.tokens.len(), 2);
        assert_eq!(
            s.public_base_url.unwrap().host_str(),
            Some("bridge.example.com")
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3").unwrap();
        let e = Settings::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = Settings::load_from(None, env(&[("BRIDGE__NOPE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let e = Settings::load_from(None, env(&[("BRIDGE__INGRESS__MAX_BODY", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_body"), "{e}");
    }

    #[test]
    fn invalid_values_are_named() {
        let e = Settings::load_from(None, env(&[("BRIDGE__INGRESS__PUBLISH_TIMEOUT", "5s")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ingress.publish_timeout"), "{e}");
        let e = Settings::load_from(None, env(&[("BRIDGE__HTTP__LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
        let e = Settings::load_from(None, env(&[("BRIDGE__BROKER__URL", "http://x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("broker.url"), "{e}");
    }

    #[test]
    fn the_example_settings_load() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/bridge.example.toml");
        let s = Settings::load_from(Some(&example), env(&[])).unwrap();
        assert_eq!(s.auth.access_ttl, Duration::from_secs(15 * 60));
    }

    #[test]
    fn auth_settings_are_checked() {
        let e = Settings::load_from(
            None,
            env(&[(
                "BRIDGE__AUTH__ALLOWED_REDIRECT_ORIGINS",
                "https://ok.example,https://bad.example/path",
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("auth.allowed_redirect_origins") && e.contains("bad.example"),
            "{e}"
        );
        let e = Settings::load_from(None, env(&[("BRIDGE__AUTH__ACCESS_TTL", "5s")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.access_ttl"), "{e}");
        let ok = Settings::load_from(
            None,
            env(&[(
                "BRIDGE__AUTH__ALLOWED_REDIRECT_ORIGINS",
                "https://a.example,http://b.example:8080",
            )]),
        )
        .unwrap();
        assert_eq!(ok.auth.allowed_redirect_origins.len(), 2);
    }

    #[test]
    fn long_connection_settings_load_and_are_checked() {
        let s = Settings::load_from(
            None,
            env(&[
                ("BRIDGE__INGRESS__LONG_CONNECTION__PONG_TIMEOUT", "3s"),
                ("BRIDGE__INGRESS__LONG_CONNECTION__CONNECTIONS_PER_APP", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.ingress.long_connection.pong_timeout,
            Duration::from_secs(3)
        );
        assert_eq!(s.ingress.long_connection.connections_per_app, 2);
        let e = Settings::load_from(
            None,
            env(&[(
                "BRIDGE__INGRESS__LONG_CONNECTION__CONNECTIONS_PER_APP",
                "51",
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("connections_per_app"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apps.toml");
        std::fs::write(
            &path,
            "[[apps]]\napp_id = \"cli_0123456789abcdef\"\napp_secret = \"s\"\nverification_token = \"t\"\ndelivery = \"long_connection\"\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), env(&[])).unwrap();
        assert_eq!(s.apps[0].delivery, DeliveryMode::LongConnection);
        std::fs::write(&path, "[[apps]]\napp_id = \"cli_0123456789abcdef\"\napp_secret = \"s\"\nverification_token = \"t\"\ndelivery = \"pigeon\"\n").unwrap();
        assert!(Settings::load_from(Some(&path), env(&[])).is_err());
    }

    #[test]
    fn an_app_without_a_verification_token_or_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apps.toml");
        for (entry, named) in [
            (
                "app_secret = \"s\"\nverification_token = \"\"",
                "verification_token must not be empty",
            ),
            (
                "app_secret = \"s\"\nverification_token = \"  \"",
                "verification_token must not be empty",
            ),
            (
                "app_secret = \"\"\nverification_token = \"t\"",
                "app_secret must not be empty",
            ),
            (
                "app_secret = \"s\"\nverification_token = \" t\"",
                "verification_token is malformed",
            ),
            (
                "app_secret = \"s\"\nverification_token = \"t\"\nencrypt_key = \"k \"",
                "encrypt_key is malformed",
            ),
        ] {
            std::fs::write(
                &path,
                format!("[[apps]]\napp_id = \"cli_0123456789abcdef\"\n{entry}\n"),
            )
            .unwrap();
            let e = Settings::load_from(Some(&path), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(named) && e.contains("cli_0123456789abcdef"),
                "{entry}: {e}"
            );
            assert!(!e.contains("\"s\""), "no secret in the message: {e}");
        }
        // No Encrypt Key, written as an empty one, is still allowed.
        std::fs::write(&path, "[[apps]]\napp_id = \"cli_0123456789abcdef\"\napp_secret = \"s\"\nverification_token = \"t\"\nencrypt_key = \"\"\n").unwrap();
        assert!(Settings::load_from(Some(&path), env(&[])).is_ok());
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Settings::load_from(Some(Path::new("/nonexistent/x.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn secrets_do_not_debug() {
        let s = Settings::load_from(
            None,
            env(&[
                ("BRIDGE__SECURITY__MASTER_KEY", "c2VjcmV0LW1hc3Rlci1rZXk="),
                (
                    "BRIDGE__BROKER__URL",
                    "amqp://guest:guest@127.0.0.1:5672/%2f",
                ),
            ]),
        )
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("c2VjcmV0"), "{dbg}");
        assert!(!dbg.contains("guest:guest"), "{dbg}");
    }

    #[test]
    fn app_id_shape() {
        assert!(is_app_id("cli_a1b2c3d4e5f60718"));
        assert!(!is_app_id("cli_a1b2c3d4e5f6071"));
        assert!(!is_app_id("cla_a1b2c3d4e5f60718"));
        assert!(!is_app_id("cli_a1b2c3d4e5f6071z"));
    }
}
