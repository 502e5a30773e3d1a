//! `feishu-bridge [--config FILE] <all|ingress|directory-sync|auth|notifier|console|migrate|rotate-signing-key|probe|rabbitmq-definitions>`: parse the command line, load settings,
//! start telemetry, run.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

// mimalloc: less time in malloc on the request path and less fragmentation than glibc's
// per-thread arenas (BENCHMARKS.md). Built without its transparent-huge-page advice (the
// `no_thp` feature): each 2 MiB huge page behind a barely used region counted in full, and
// the idle ingress held 44 MiB instead of 27.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use feishu_bridge::{Application, Role};

#[derive(Parser)]
#[command(
    name = "feishu-bridge",
    version,
    about = "Feishu (Lark) integration for the platform"
)]
struct Cli {
    /// A TOML settings file (defaults < this file < BRIDGE__SECTION__KEY environment variables).
    #[arg(long, global = true, env = "BRIDGE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every service in one process (SQLite and the embedded bus unless configured otherwise).
    All,
    /// Feishu's event and callback webhooks -> exchange feishu.events.
    Ingress,
    /// Contact events, full sync and reconcile -> the directory and exchange org.changes.
    DirectorySync,
    /// Feishu QR-code and in-client login, sessions, JWKS.
    Auth,
    /// The admin console (bindings, setup checklist, install / initialise, the admin page).
    Console,
    /// Bot messages from exchange notify.requests and the HTTP API -> Feishu; reports to
    /// exchange notify.results; the bot's help, greeting and card updates.
    Notifier,
    /// Run database migrations and exit.
    Migrate,
    /// Add a new session signing key (it signs from now on) and retire the others; they stay
    /// in the JWKS until the tokens they signed have expired.
    RotateSigningKey,
    /// Container health check: GET a path of the local listener, exit 0 on 200 (the image has
    /// no curl).
    Probe {
        /// `/readyz` (broker and database reachable) or `/healthz` (the process is up).
        #[arg(default_value = "/readyz")]
        path: String,
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
    },
    /// Print the bus topology (exchanges, quorum queues with their retry and dead-letter
    /// queues, bindings) as a RabbitMQ definitions document, for `load_definitions`
    /// (deploy/rabbitmq/definitions.json adds a user to it).
    RabbitmqDefinitions {
        #[arg(long, default_value = "/")]
        vhost: String,
    },
}

/// One HTTP/1.0 GET on loopback; the status line decides.
async fn probe(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    let line = tokio::time::timeout(std::time::Duration::from_secs(3), fut)
        .await
        .context("no answer within 3 s")?
        .with_context(|| format!("cannot reach {addr}"))?;
    anyhow::ensure!(
        line.starts_with("HTTP/1.1 200") || line.starts_with("HTTP/1.0 200"),
        "{path} answered {}",
        line.lines().next().unwrap_or_default()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Probe { path, addr } = &cli.command {
        return probe(*addr, path).await;
    }
    if let Command::RabbitmqDefinitions { vhost } = &cli.command {
        let mut doc = bridge_bus::definitions(&bridge_contracts::topology::topology(), vhost);
        doc["vhosts"] = serde_json::json!([{ "name": vhost }]);
        let mut out = serde_json::to_string_pretty(&doc)?;
        out.push('\n');
        std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())
            .context("writing the definitions to standard output")?;
        return Ok(());
    }
    let settings = bridge_runtime::Settings::load(cli.config.as_deref())?;
    let role = match cli.command {
        Command::All => Role::All,
        Command::Ingress => Role::Ingress,
        Command::DirectorySync => Role::DirectorySync,
        Command::Auth => Role::Auth,
        Command::Console => Role::Console,
        Command::RotateSigningKey => {
            let telemetry =
                bridge_runtime::telemetry::init(&settings.telemetry, "feishu-bridge-keys")?;
            let kid = feishu_bridge::rotate_signing_key(&settings).await?;
            tracing::info!(%kid, "new signing key active; the previous ones retire once their tokens expired");
            telemetry.shutdown();
            return Ok(());
        }
        Command::Notifier => Role::Notifier,
        Command::Probe { .. } | Command::RabbitmqDefinitions { .. } => {
            anyhow::bail!("handled before the settings are loaded")
        }
        Command::Migrate => {
            let telemetry =
                bridge_runtime::telemetry::init(&settings.telemetry, "feishu-bridge-migrate")?;
            feishu_bridge::migrate(&settings).await?;
            tracing::info!("migrations applied");
            telemetry.shutdown();
            return Ok(());
        }
    };
    let telemetry = bridge_runtime::telemetry::init(
        &settings.telemetry,
        &format!("feishu-bridge-{}", role.name()),
    )?;
    let app = Application::build(settings, role)
        .await
        .with_context(|| format!("starting `{}`", role.name()));
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "startup failed");
            telemetry.shutdown();
            return Err(e);
        }
    };
    app.shutdown().trigger_on_signals();
    let result = app.run_until_stopped().await;
    telemetry.shutdown();
    result
}
