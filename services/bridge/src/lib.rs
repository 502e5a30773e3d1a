//! Assembles a process from settings: the database and master key, the app bindings, the bus,
//! the services asked for, and the HTTP listener; then runs it until a shutdown signal.
//! `main.rs` only parses the command line; tests start exactly this.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bridge_auth::Auth;
use bridge_bus::{AmqpBus, AmqpOptions, Bus, EmbeddedBus};
use bridge_contracts::topology::topology;
use bridge_directory_sync::DirectorySync;
use bridge_feishu::api::{ClientOptions, FeishuClient};
use bridge_runtime::settings::DeliveryMode;
use bridge_runtime::{HttpServer, Mount, Readiness, ReadinessCheck, Settings, Shutdown};
use bridge_session::{Gate, KeySource, Verifier, VerifierOptions};
use bridge_store::apps::BindingInput;
use bridge_store::db::DatabaseConnection;
use bridge_store::{AppRegistry, Delivery, Domain, MasterKey};
use futures_util::FutureExt;
use secrecy::ExposeSecret;

/// Which services this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every service in one process; SQLite and the embedded bus by default.
    All,
    /// The webhook ingress only.
    Ingress,
    /// Contact events, full sync and reconcile, the read API, org-change events.
    DirectorySync,
    /// QR-code and in-client login, sessions, JWKS.
    Auth,
    /// The admin console: bindings, checklist, install, the admin page.
    Console,
    /// Bot messages to users, departments and chats; delivery reports; the bot's answers.
    Notifier,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingress => "ingress",
            Role::DirectorySync => "directory-sync",
            Role::Auth => "auth",
            Role::Console => "console",
            Role::Notifier => "notifier",
        }
    }

    fn runs(self, service: Role) -> bool {
        self == Role::All || self == service
    }
}

/// A running process.
pub struct Application {
    server: HttpServer,
    bus: Bus,
    shutdown: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    directory: Option<DirectorySync>,
    auth: Option<Auth>,
}

/// The database URL for `role`, defaulting to a SQLite file under `database.data_dir` in `all`.
fn database_url(settings: &Settings, role: Role) -> anyhow::Result<String> {
    if let Some(url) = &settings.database.url {
        return Ok(url.expose_secret().to_string());
    }
    anyhow::ensure!(
        role == Role::All,
        "settings: `database.url` is required for `{}` (postgres://...); only `all` defaults to SQLite",
        role.name()
    );
    let dir = &settings.database.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(format!(
        "sqlite://{}?mode=rwc",
        dir.join("feishu-bridge.sqlite").display()
    ))
}

fn master_key(settings: &Settings, role: Role) -> anyhow::Result<MasterKey> {
    if let Some(k) = &settings.security.master_key {
        return MasterKey::from_base64(k).context("settings: `security.master_key`");
    }
    anyhow::ensure!(
        role == Role::All,
        "settings: `security.master_key` is required for `{}` (32 random bytes, base64: `openssl rand -base64 32`)",
        role.name()
    );
    let path: PathBuf = settings.database.data_dir.join("master.key");
    let (key, created) = bridge_store::secrets::load_or_create_key_file(&path)?;
    if created {
        tracing::warn!(path = %path.display(), "no security.master_key configured: generated one and kept it beside the database; back it up, or set security.master_key");
    }
    MasterKey::from_base64(&key).with_context(|| format!("master key file {}", path.display()))
}

async fn provision(registry: &AppRegistry, settings: &Settings) -> anyhow::Result<()> {
    for app in &settings.apps {
        let domain = match app.domain.as_deref() {
            None => Domain::Feishu,
            Some(d) => Domain::parse(d).with_context(|| {
                format!(
                    "settings: `apps` entry {}: domain must be `feishu` or `lark`",
                    app.app_id
                )
            })?,
        };
        let changed = registry
            .upsert(&BindingInput {
                app_id: app.app_id.clone(),
                app_secret: app.app_secret.clone(),
                encrypt_key: app.encrypt_key.clone(),
                verification_token: app.verification_token.clone(),
                team_name: app.team_name.clone(),
                domain,
                enabled: app.enabled,
                qr_login_enabled: app.qr_login_enabled,
                delivery: match app.delivery {
                    DeliveryMode::Webhook => Delivery::Webhook,
                    DeliveryMode::LongConnection => Delivery::LongConnection,
                    DeliveryMode::Both => Delivery::Both,
                },
            })
            .await
            .with_context(|| format!("provisioning app {}", app.app_id))?;
        if changed {
            tracing::info!(app_id = %app.app_id, "app binding provisioned from settings");
        }
    }
    Ok(())
}

async fn bus(settings: &Settings, role: Role, db: &DatabaseConnection) -> anyhow::Result<Bus> {
    let b = &settings.broker;
    if b.is_embedded() {
        anyhow::ensure!(
            role == Role::All,
            "settings: `broker.url` must be amqp://... for `{}`: the embedded bus only connects services inside one `feishu-bridge all` process",
            role.name()
        );
        let bus = EmbeddedBus::open(db.clone(), &topology())
            .await
            .context("embedded bus")?;
        return Ok(Bus::Embedded(bus));
    }
    let url = b
        .url
        .as_ref()
        .map(|u| u.expose_secret().to_string())
        .unwrap_or_default();
    let opts = AmqpOptions {
        url,
        confirm_timeout: b.confirm_timeout,
        reconnect_min: b.reconnect_min,
        reconnect_max: b.reconnect_max,
        publish_channels: b.publish_channels,
        connection_name: format!("feishu-bridge-{}", role.name()),
        queue_prefix: b.queue_prefix.clone(),
        queue_expires: b.queue_expires,
        quorum_queues: b.quorum_queues,
        worker_connections: b.worker_connections,
    };
    Ok(Bus::Amqp(
        AmqpBus::start(opts, topology(), Duration::from_secs(5)).await,
    ))
}

impl Application {
    /// Builds everything `role` needs and starts listening.
    pub async fn build(settings: Settings, role: Role) -> anyhow::Result<Self> {
        let url = database_url(&settings, role)?;
        let key = master_key(&settings, role)?;
        let db = bridge_store::connect(
            &url,
            settings.database.max_connections,
            settings.database.auto_migrate,
        )
        .await?;
        key.verify_against(&db)
            .await
            .context("checking security.master_key")?;
        let registry = AppRegistry::load(db.clone(), key.clone())
            .await
            .context("loading app bindings")?;
        provision(&registry, &settings).await?;
        let bus = bus(&settings, role, &db).await?;
        let shutdown = Shutdown::new();

        let mut readiness = Readiness::default();
        let b = bus.clone();
        readiness.add(ReadinessCheck::new("broker", move || {
            let b = b.clone();
            async move { b.ready().await }.boxed()
        }));
        let d = db.clone();
        readiness.add(ReadinessCheck::new("database", move || {
            let d = d.clone();
            async move { bridge_store::db::ping(&d).await }.boxed()
        }));

        let mut mounts: Vec<Mount> = Vec::new();
        let stop = shutdown.clone();
        let mut tasks = vec![
            registry.spawn_refresher(Duration::from_secs(2), async move { stop.wait().await })
        ];
        let client = FeishuClient::new(ClientOptions {
            timeout: settings.feishu.timeout,
            rate_scale: settings.feishu.rate_scale,
            ..Default::default()
        })
        .context("Feishu client")?;
        if role.runs(Role::Ingress) {
            let ingress = bridge_ingress::Ingress::new(
                settings.ingress.clone(),
                registry.clone(),
                bus.clone(),
            );
            mounts.push(ingress.mount());
            let (task, status) = ingress.start_long_connections(
                client.clone(),
                settings.feishu.base_url.clone(),
                shutdown.clone(),
            );
            tasks.push(task);
            readiness.add(ReadinessCheck::report("long_connection", move || {
                status.report()
            }));
            tasks.push(ingress.start(shutdown.clone()));
        }
        // Sessions are accepted wherever an API is served: verified offline against auth's
        // keys, with revocations polled from the database.
        let verifier = Verifier::new(
            match &settings.auth.jwks_url {
                Some(u) => KeySource::JwksUrl(u.clone()),
                None => KeySource::Database(db.clone()),
            },
            VerifierOptions {
                issuer: settings.auth.issuer.clone(),
                retired_key_grace: settings.auth.access_ttl + Duration::from_secs(5 * 60),
                ..Default::default()
            },
        );
        if role.runs(Role::DirectorySync)
            || role.runs(Role::Auth)
            || role.runs(Role::Console)
            || role.runs(Role::Notifier)
        {
            let stop = shutdown.clone();
            tasks.push(verifier.spawn_revocation_poll(
                db.clone(),
                settings.auth.revocation_poll,
                async move { stop.wait().await },
            ));
        }
        // The console's bootstrap admin token opens the read API too (the console page shows
        // the synced organisation through it).
        let mut service_tokens = settings.api.tokens.clone();
        service_tokens.extend(settings.console.admin_token.clone());
        let gate = Gate::new(service_tokens, Some(verifier.clone()));
        if role.runs(Role::Console) {
            let console = bridge_console::Console::new(bridge_console::Deps {
                db: db.clone(),
                bus: bus.clone(),
                apps: registry.clone(),
                client: client.clone(),
                gate: gate.clone(),
                settings: settings.console.clone(),
                public_base_url: settings.public_base_url.clone(),
                feishu_base: settings.feishu.base_url.clone(),
            });
            mounts.push(console.mount());
        }
        let mut directory = None;
        if role.runs(Role::DirectorySync) {
            let ds = DirectorySync::new(bridge_directory_sync::Deps {
                db: db.clone(),
                bus: bus.clone(),
                apps: registry.clone(),
                client: client.clone(),
                settings: settings.directory.clone(),
                feishu_base: settings.feishu.base_url.clone(),
                gate: gate.clone(),
            });
            mounts.push(ds.mount());
            tasks.extend(ds.start(shutdown.clone()));
            directory = Some(ds);
        }
        let mut auth = None;
        if role.runs(Role::Auth) {
            let a = Auth::new(bridge_auth::Deps {
                db: db.clone(),
                bus: bus.clone(),
                apps: registry.clone(),
                client: client.clone(),
                master_key: key.clone(),
                settings: settings.auth.clone(),
                feishu_base: settings.feishu.base_url.clone(),
                public_base_url: settings.public_base_url.clone(),
                verifier: verifier.clone(),
            })
            .await
            .context("auth")?;
            mounts.push(a.mount());
            tasks.extend(a.start(shutdown.clone()));
            auth = Some(a);
        }
        if role.runs(Role::Notifier) {
            let notifier = bridge_notifier::Notifier::new(bridge_notifier::Deps {
                db: db.clone(),
                bus: bus.clone(),
                apps: registry.clone(),
                client: client.clone(),
                settings: settings.notifier.clone(),
                feishu_base: settings.feishu.base_url.clone(),
                rate_scale: settings.feishu.rate_scale,
                gate: gate.clone(),
            })
            .context("settings: `notifier.templates_dir`")?;
            mounts.push(notifier.mount());
            tasks.extend(notifier.start(shutdown.clone()));
        }
        let server = HttpServer::bind(&settings.http, mounts, readiness)?;
        Ok(Self {
            server,
            bus,
            shutdown,
            tasks,
            directory,
            auth,
        })
    }

    /// auth, when this process runs it.
    pub fn auth(&self) -> Option<Auth> {
        self.auth.clone()
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// directory-sync, when this process runs it (tests drive syncs through it).
    pub fn directory(&self) -> Option<DirectorySync> {
        self.directory.clone()
    }

    /// A handle that stops the application when triggered.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Serves until shutdown is triggered, then stops intake, lets in-flight requests (and
    /// their confirms) finish, and closes the bus.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.shutdown.wait().await;
        tracing::info!("stopping: no new requests; finishing in-flight ones");
        self.server.stop().await;
        for t in self.tasks {
            let _ = t.await;
        }
        self.bus.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `feishu-bridge rotate-signing-key`.
pub async fn rotate_signing_key(settings: &Settings) -> anyhow::Result<String> {
    let url = database_url(settings, Role::Auth).or_else(|_| database_url(settings, Role::All))?;
    let key = master_key(settings, Role::Auth).or_else(|_| master_key(settings, Role::All))?;
    let db = bridge_store::connect(&url, 2, settings.database.auto_migrate).await?;
    key.verify_against(&db)
        .await
        .context("checking security.master_key")?;
    bridge_auth::rotate_signing_key(&db, &key, &settings.auth).await
}

/// Runs the migrations and exits (`feishu-bridge migrate`).
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let url =
        database_url(settings, Role::Ingress).or_else(|_| database_url(settings, Role::All))?;
    bridge_store::connect(&url, 2, true).await?;
    Ok(())
}
