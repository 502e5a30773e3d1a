//! `feishu-bridge [--config FILE] <all|ingress|directory-sync|auth|notifier|console|migrate|rotate-signing-key>`: parse the command line, load settings,
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
