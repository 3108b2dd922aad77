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
    /// Start a Partner Center simulator and a gateway in front of it, walk through what the
    /// gateway does (with curl commands to repeat), then serve until Ctrl-C.
    #[cfg(feature = "demo")]
    Demo {
        /// Exit after the walk-through instead of serving.
        #[arg(long)]
        no_serve: bool,
    },
    /// Run only the Partner Center simulator (for benchmarks and manual tests).
    #[cfg(feature = "demo")]
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
        /// Latency added to every answer (humantime, e.g. "20ms").
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        latency: std::time::Duration,
        /// Requests per minute per token before 429 (0 = unlimited).
        #[arg(long, default_value_t = 0)]
        budget_per_minute: u32,
        /// Share of requests answered 503, 0.0 to 1.0.
        #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
        failure_rate: f64,
        /// How long an order placed through the simulator stays "pending" before it turns
        /// "completed" with a new etag (humantime; "0s": completed at once).
        #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
        provisioning: std::time::Duration,
        /// Announce subscription changes with signed notifications posted here (a gateway's
        /// webhooks.path, e.g. http://127.0.0.1:8080/webhooks/partner-center).
        #[arg(long, value_name = "URL")]
        webhook_url: Option<String>,
        /// Write the certificate of the simulator's signing key here (for a gateway's
        /// webhooks.certificate_file).
        #[arg(long, value_name = "FILE")]
        certificate_file: Option<PathBuf>,
    },
}

#[cfg(feature = "demo")]
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err("must be between 0.0 and 1.0".to_owned())
    }
}

/// Parses the command line and runs it; the process exit code is the result.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config),
        Command::CheckConfig => check_config(cli.config),
        #[cfg(feature = "demo")]
        Command::Demo { no_serve } => demo(cli.config, !no_serve),
        #[cfg(feature = "demo")]
        Command::Simulate {
            listen,
            latency,
            budget_per_minute,
            failure_rate,
            provisioning,
            webhook_url,
            certificate_file,
        } => simulate(
            cli.config,
            (webhook_url, certificate_file),
            listen,
            crate::demo::simulator::Knobs {
                latency,
                budget_per_minute,
                failure_rate,
                provisioning,
            },
        ),
    }
}

/// Runs `job` on a multi-threaded runtime; the job's exit code is the process's.
pub fn with_runtime(job: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(job),
        Err(e) => {
            eprintln!("partner-gateway: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
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
    let _log = crate::observe::logs::init(&config.log);
    with_runtime(async {
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

#[cfg(feature = "demo")]
fn demo(file: Option<PathBuf>, serve: bool) -> ExitCode {
    // The gateway's configuration is read as for `run` (`--config`, the environment) over the
    // demo's own settings, and a bad one stops the demo the same way, before anything starts.
    let sources = crate::demo::walkthrough::sources(file);
    if let Err(e) = Config::load(&sources) {
        eprintln!("partner-gateway: invalid configuration: {e}");
        return ExitCode::from(1);
    }
    let _log = crate::observe::logs::init(&crate::config::LogConfig {
        format: crate::config::LogFormat::Pretty,
        level: "warn".to_owned(),
    });
    let options = crate::demo::walkthrough::DemoOptions {
        fixed_ports: true,
        sources,
        serve,
        color: None,
    };
    with_runtime(async {
        match crate::demo::walkthrough::run(options, &mut std::io::stdout(), shutdown_signal())
            .await
        {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("partner-gateway demo: {e}");
                ExitCode::from(1)
            }
        }
    })
}

#[cfg(feature = "demo")]
fn simulate(
    file: Option<PathBuf>,
    (webhook_url, certificate_file): (Option<String>, Option<PathBuf>),
    listen: std::net::SocketAddr,
    knobs: crate::demo::simulator::Knobs,
) -> ExitCode {
    // Read and checked as for `run`: a bad file or value stops it the same way; its `[log]`
    // settings apply.
    let config = match load(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let _log = crate::observe::logs::init(&config.log);
    if let Some(path) = &certificate_file {
        let written = std::fs::write(path, crate::demo::simulator::Simulator::certificate());
        if let Err(e) = written {
            eprintln!(
                "partner-gateway simulate: cannot write {}: {e}",
                path.display()
            );
            return ExitCode::from(1);
        }
    }
    with_runtime(async {
        match crate::demo::simulator::Simulator::start(listen, knobs.clone()).await {
            Ok(sim) => {
                if let Some(url) = &webhook_url {
                    if !sim.notify_to(url) {
                        eprintln!("partner-gateway simulate: --webhook-url {url:?} is not a URL");
                        return ExitCode::from(1);
                    }
                }
                tracing::info!(listen = %sim.addr, ?knobs, "simulator listening");
                // Whoever reads standard output may stop (`simulate | head -1`): then the
                // simulator ends quietly instead of panicking on the broken pipe.
                if let Err(e) = print_paths(&sim.base_url()) {
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        eprintln!("partner-gateway simulate: {e}");
                    }
                    sim.stop();
                    return ExitCode::SUCCESS;
                }
                shutdown_signal().await;
                sim.stop();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("partner-gateway simulate: cannot listen on {listen}: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// The simulator's address and every sample path it serves, on standard output.
#[cfg(feature = "demo")]
fn print_paths(base: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "simulator listening on {base}")?;
    for path in crate::demo::simulator::Simulator::paths() {
        writeln!(out, "  {path}")?;
    }
    out.flush()
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
