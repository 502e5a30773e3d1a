//! `feishu-emulator serve --listen ADDR [--state FILE | --generate users=N,departments=M,seed=S]`

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use feishu_emulator::{Emulator, GenerateSpec, State};

#[derive(Parser)]
#[command(
    name = "feishu-emulator",
    about = "A stand-in for the Feishu Open Platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Open API, the accounts pages and the /_emulator/ control API.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8900")]
        listen: SocketAddr,
        /// Load this state file (JSON, as saved by GET /_emulator/state).
        #[arg(long, conflicts_with = "generate")]
        state: Option<PathBuf>,
        /// Generate an organisation: users=N,departments=M,seed=S.
        #[arg(long)]
        generate: Option<GenerateSpec>,
        /// The small demo organisation of `make demo` (Chinese and English names).
        #[arg(long, conflicts_with_all = ["generate", "state"])]
        demo: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let Command::Serve {
        listen,
        state,
        generate,
        demo,
    } = Cli::parse().command;
    let emu = match (state, generate) {
        _ if demo => Emulator::new(feishu_emulator::generate::demo_state()),
        (Some(path), _) => Emulator::new(State::load(&path)?),
        (None, Some(spec)) => Emulator::generate(spec),
        (None, None) => Emulator::generate(GenerateSpec {
            users: 200,
            departments: 20,
            seed: 1,
        }),
    };
    let server = emu.start(listen).await?;
    print_credentials(&emu, &server.base_url());
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    Ok(())
}

/// Tells the operator what to configure: base URL and the served apps' credentials.
#[allow(clippy::print_stdout)]
fn print_credentials(emu: &Emulator, base_url: &str) {
    println!("feishu emulator on {base_url}");
    println!("  open api:     {base_url}/open-apis/");
    println!("  authorize:    {base_url}/open-apis/authen/v1/authorize");
    println!("  control api:  {base_url}/_emulator/");
    for t in emu.snapshot().tenants {
        for a in t.apps {
            println!("tenant {} ({})", t.tenant_key, t.name);
            println!("  app_id:             {}", a.app_id);
            println!("  app_secret:         {}", a.app_secret);
            println!(
                "  encrypt_key:        {}",
                a.encrypt_key.unwrap_or_default()
            );
            println!("  verification_token: {}", a.verification_token);
        }
    }
}
