//! The `golem-host` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Runs the Golem components of `golem.yaml` on an embedded wasmtime and serves
/// their HTTP routes (a stand-in for `golem server run` + `golem deploy`).
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Control routes: GET /_golem-host/{health,stats,agents,routes}, POST /_golem-host/restart"
)]
struct Cli {
    /// Address to serve the routes on.
    #[arg(long, default_value = "127.0.0.1:9006")]
    listen: SocketAddr,
    /// The application manifest.
    #[arg(long, default_value = "golem.yaml")]
    manifest: PathBuf,
    /// The manifest environment.
    #[arg(long, default_value = "local")]
    environment: String,
    /// Cargo's target directory, where the built components are.
    #[arg(long, env = "CARGO_TARGET_DIR", default_value = "target")]
    target_dir: PathBuf,
    /// Compiled components are kept here between runs.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Serve the deployment whatever the request's Host header names.
    #[arg(long)]
    any_host: bool,
    /// Seconds a call may take before it fails.
    #[arg(long, default_value_t = 120)]
    call_timeout: u64,
}

/// Runs the command with the process's arguments.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "golem_host=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("golem-host: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("golem-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let options = crate::Options {
        cache_dir: Some(cli.cache_dir.unwrap_or_else(|| cli.target_dir.join("golem-host"))),
        manifest: cli.manifest,
        environment: cli.environment,
        target_dir: cli.target_dir,
        call_timeout: Duration::from_secs(cli.call_timeout),
    };
    let host = crate::Host::load(&options).await?;
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    let addr = listener.local_addr()?;
    let types = host.runtime().agent_types().count();
    println!(
        "golem-host: {types} agent types of {} components, serving on http://{addr}",
        host.runtime().components().len()
    );
    tokio::select! {
        served = host.serve(listener, cli.any_host) => served,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
