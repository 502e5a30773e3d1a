//! `feishu-bridge [--config FILE] <all|ingress|migrate>`: parse the command line, load settings,
//! start telemetry, run.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

// mimalloc: less time in malloc on the request path and less fragmentation than glibc's
// per-thread arenas (BENCHMARKS.md).
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
    /// Bot messages from exchange notify.requests and the HTTP API -> Feishu; reports to
    /// exchange notify.results; the bot's help, greeting and card updates.
    Notifier,
    /// Run database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = bridge_runtime::Settings::load(cli.config.as_deref())?;
    let role = match cli.command {
        Command::All => Role::All,
        Command::Ingress => Role::Ingress,
        Command::DirectorySync => Role::DirectorySync,
        Command::Notifier => Role::Notifier,
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
