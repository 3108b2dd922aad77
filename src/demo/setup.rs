//! The demo's two servers, started as `run` starts a gateway: the Partner Center simulator, and
//! a gateway in front of it configured from `--config` and the environment over the demo's own
//! settings (well-known ports when free, every resource cached, notifications and the audit
//! follower on).

use std::net::SocketAddr;

use crate::config::{Config, Sources};
use crate::demo::console::RequestFailed;
use crate::demo::simulator::{Knobs, Simulator};

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("start-up: {0}")]
    Start(#[from] crate::server::StartError),
    #[error("simulator: {0}")]
    Io(#[from] std::io::Error),
    #[error("walk-through request failed: {0}")]
    Request(String),
}

impl From<RequestFailed> for DemoError {
    fn from(failed: RequestFailed) -> Self {
        DemoError::Request(failed.0)
    }
}

/// How long an order placed in the demo stays `pending` in the simulator.
const PROVISIONING: std::time::Duration = std::time::Duration::from_secs(3);

pub(crate) async fn bind_simulator(fixed: bool, budget: u32) -> Result<Simulator, DemoError> {
    let knobs = Knobs {
        budget_per_minute: budget,
        provisioning: PROVISIONING,
        ..Knobs::default()
    };
    if fixed {
        if let Ok(sim) =
            Simulator::start(SocketAddr::from(([127, 0, 0, 1], 8081)), knobs.clone()).await
        {
            return Ok(sim);
        }
    }
    Ok(Simulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), knobs).await?)
}

/// The demo gateway's own settings, under the operator's files and environment: the
/// well-known ports, every resource cached, a short `unsettled_ttl` so the poll of step 5 sees
/// an order complete quickly, a short drain; and for step 6 the webhook path with the
/// simulator's certificate pinned and the audit follower every second (the files they name are
/// written to a directory of this process's under the system's temporary directory).
fn preset() -> String {
    let dir = std::env::temp_dir().join(format!("partner-gateway-demo-{}", std::process::id()));
    let (certificate, token) = (dir.join("simulator.pem"), dir.join("audit-token"));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&certificate, Simulator::certificate()))
        .and_then(|()| std::fs::write(&token, "demo-audit-token"));
    if let Err(e) = written {
        tracing::warn!(error = %e, "demo: cannot write the webhook certificate or audit token");
    }
    format!(
        r#"
[server]
listen = "127.0.0.1:8080"
shutdown_grace = "5s"
[admin]
listen = "127.0.0.1:9901"
[cache]
resources = ["orders", "subscriptions", "customers"]
unsettled_ttl = "2s"
[webhooks]
path = "{WEBHOOK_PATH}"
certificate_file = {certificate:?}
[audit]
interval = "1s"
token_file = {token:?}
"#
    )
}

/// Where the demo gateway takes the simulator's notifications.
pub(crate) const WEBHOOK_PATH: &str = "/webhooks/partner-center";

/// The layers the demo's gateway is configured from: `file` and the environment as for `run`,
/// over the demo's own settings.
pub fn sources(file: Option<std::path::PathBuf>) -> Sources {
    Sources {
        preset: Some(preset()),
        ..Sources::from_process(file)
    }
}

/// Binds the gateway in front of `upstream` (always the simulator). Ports the operator chose
/// are bound as chosen; the demo's well-known ones fall back to free ports when taken (or when
/// `fixed` is off).
pub(crate) async fn bind_gateway(
    fixed: bool,
    sources: &Sources,
    upstream: &str,
) -> Result<crate::server::Bound, DemoError> {
    let mut sources = sources.clone();
    if sources.preset.is_none() {
        sources.preset = Some(preset());
    }
    let base_url = "PARTNER_GATEWAY__UPSTREAM__BASE_URL";
    sources.env.insert(base_url.to_owned(), upstream.to_owned());
    let config = Config::load(&sources)?;
    let preset = Config::load(&Sources {
        preset: sources.preset.clone(),
        ..Sources::default()
    })?;
    let chosen =
        config.server.listen != preset.server.listen || config.admin.listen != preset.admin.listen;
    if chosen {
        return Ok(crate::server::bind(config).await?);
    }
    if fixed {
        if let Ok(bound) = crate::server::bind(config.clone()).await {
            return Ok(bound);
        }
    }
    let free = "127.0.0.1:0";
    for key in [
        "PARTNER_GATEWAY__SERVER__LISTEN",
        "PARTNER_GATEWAY__ADMIN__LISTEN",
    ] {
        sources.env.insert(key.to_owned(), free.to_owned());
    }
    Ok(crate::server::bind(Config::load(&sources)?).await?)
}
