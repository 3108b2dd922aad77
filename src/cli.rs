//! The command line (SPEC §2). The binary only calls [`main`]; everything it does is here so
//! tests can drive the same code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Sources};

/// partner-gateway: a caching reverse proxy for the Partner Center REST API.
#[derive(Debug, Parser)]
#[command(name = "partner-gateway", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Configuration file (TOML), layered over config/default.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What to do; `run` when none is given.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run,
    /// Load and validate the configuration, print the effective result as TOML.
    CheckConfig,
}

/// Parses the command line and runs it; the process exit code is the result.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config),
        Command::CheckConfig => check_config(cli.config),
    }
}

fn load(file: Option<PathBuf>) -> Result<Config, ExitCode> {
    Config::load(&Sources::from_process(file)).map_err(|e| {
        eprintln!("partner-gateway: invalid configuration: {e}");
        ExitCode::from(1)
    })
}

fn check_config(file: Option<PathBuf>) -> ExitCode {
    let config = match load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match config.to_toml() {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("partner-gateway: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(file: Option<PathBuf>) -> ExitCode {
    let config = match load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    crate::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("partner-gateway: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let bound = match crate::server::bind(config).await {
            Ok(bound) => bound,
            Err(e) => {
                tracing::error!(error = %e, "start-up failed");
                eprintln!("partner-gateway: {e}");
                return ExitCode::from(1);
            }
        };
        bound.serve(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutting down"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutting down"),
    }
}
