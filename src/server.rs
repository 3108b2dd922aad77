//! The running gateway: builds it, binds the front and admin ports, starts the fleet and the
//! metrics upkeep beside them, serves until shutdown and stops them in order (SPEC §10).
//!
//! Ports are bound first ([`bind`]) and served second ([`Bound::serve`]) so that a start-up
//! error (bad TLS roots, a port in use) surfaces before anything is accepted, and so tests can
//! bind port 0, read the real address, and pass in their own shutdown trigger (SPEC §10).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::listener as admin;
use crate::config::Config;
use crate::front::listener;
use crate::front::pipeline::Gateway;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {key} = {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Upstream(#[from] crate::upstream::client::UpstreamSetupError),
}

/// Listeners bound and state built; nothing accepted yet.
pub struct Bound {
    gateway: Arc<Gateway>,
    front: TcpListener,
    admin: TcpListener,
}

/// Builds the gateway and binds both ports.
pub async fn bind(config: Config) -> Result<Bound, StartError> {
    let front_addr = config.server.listen;
    let admin_addr = config.admin.listen;
    let gateway = Gateway::new(config)?;
    let front = listen("server.listen", front_addr).await?;
    let admin = listen("admin.listen", admin_addr).await?;
    Ok(Bound {
        gateway,
        front,
        admin,
    })
}

/// Binds one listener; an error names the config key of the address.
async fn listen(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}

impl Bound {
    /// The front listener's real address (port 0 resolved).
    pub fn front_addr(&self) -> SocketAddr {
        self.front
            .local_addr()
            .unwrap_or(self.gateway.config.server.listen)
    }

    /// The admin listener's real address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or(self.gateway.config.admin.listen)
    }

    /// The shared state, for callers that want to look inside (tests, the demo).
    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.clone()
    }

    /// Serves until `shutdown` resolves, then drains (SPEC §10) and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Bound {
            gateway,
            front,
            admin,
        } = self;
        // What runs, in one line: listeners, upstream, what is cached for whom, the fleet.
        let config = &gateway.config;
        let resources: Vec<&str> = config.cache.resources.iter().map(|r| r.name()).collect();
        let fleet = match &gateway.fleet {
            Some(replica) => format!(
                "{} on {} as replica {}",
                config.fleet.name,
                crate::config::mask::masked_list(&config.fleet.redis_url),
                replica.members().id()
            ),
            None => "off".to_owned(),
        };
        tracing::info!(
            front = %front.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            admin = %admin.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            upstream = %crate::config::mask_password(&config.upstream.base_url),
            cache = if config.cache.enabled { "on" } else { "off" },
            resources = %resources.join(","),
            partition = match config.cache.partition {
                crate::config::Partition::Credential => "credential",
                crate::config::Partition::Shared => "shared",
            },
            fleet = %fleet,
            "listening"
        );
        crate::admin::auth::warn_if_unguarded(&gateway.config.admin);

        let upkeep = {
            let metrics = gateway.metrics.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    metrics.upkeep();
                }
            })
        };
        let fleet = gateway.fleet.as_ref().map(|replica| {
            let mut running = replica.start();
            if let Some(bus) = &gateway.bus {
                running.also(tokio::spawn(bus.clone().listen()));
            }
            running
        });
        let audit = gateway
            .audit
            .clone()
            .map(|follower| tokio::spawn(follower.run()));
        let (stop_admin, admin_stopped) = watch::channel(false);
        let admin_task = tokio::spawn(admin::serve(admin, gateway.clone(), admin_stopped));

        listener::serve(front, gateway.clone(), shutdown).await;
        let _ = stop_admin.send(true);
        let _ = admin_task.await;
        upkeep.abort();
        if let Some(audit) = audit {
            audit.abort();
        }
        if let Some(fleet) = fleet {
            fleet.stop().await;
        }
        tracing::info!("stopped");
    }
}
