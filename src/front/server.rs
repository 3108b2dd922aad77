//! The listeners: accept connections (at most `server.max_connections` open at once), hand
//! each to the connection driver, drain on shutdown.
//!
//! Ports are bound first ([`bind`]) and served second ([`Bound::serve`]) so that a start-up
//! error (bad TLS roots, a port in use) surfaces before anything is accepted, and so tests can
//! bind port 0, read the real address, and pass in their own shutdown trigger (SPEC §10).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::front::connection;
use crate::front::credential::CredentialMemo;
use crate::front::pipeline::Gateway;
use crate::ops::admin;

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
        let grace = gateway.config.server.shutdown_grace;
        tracing::info!(
            front = %front.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            admin = %admin.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            upstream = %crate::config::mask_password(&gateway.config.upstream.base_url),
            "listening"
        );
        crate::ops::admin_auth::warn_if_unguarded(&gateway.config.admin);

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
        let (stop_admin, admin_stopped) = watch::channel(false);
        let admin_task = tokio::spawn(admin::serve(admin, gateway.clone(), admin_stopped));

        let builder = Arc::new(connection::builder(&gateway.config.server));
        let (drain, draining) = watch::channel(false);
        // One permit per open connection (SPEC §14): without one nothing is accepted, and
        // further connections wait in the kernel's listen backlog.
        let open_at_most = gateway
            .config
            .server
            .max_connections
            .min(Semaphore::MAX_PERMITS);
        let permits = Arc::new(Semaphore::new(open_at_most));
        // Every connection task, so that those still open when the grace runs out can be
        // dropped at once; finished ones are reaped as the loop goes.
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = accept(&front, &permits) => {
                    let Some((stream, permit)) = accepted else { continue };
                    let task = connection(stream, gateway.clone(), builder.clone(), draining.clone());
                    connections.spawn(async move {
                        task.await;
                        drop(permit);
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }

        drop(front);
        gateway.start_draining();
        tracing::info!(grace_ms = grace.as_millis() as u64, "draining");
        let _ = drain.send(true);
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!("shutdown grace passed; dropping remaining connections");
        }
        connections.shutdown().await;
        let _ = stop_admin.send(true);
        let _ = admin_task.await;
        upkeep.abort();
        if let Some(fleet) = fleet {
            fleet.stop().await;
        }
        tracing::info!("stopped");
    }
}

/// Waits for a free connection permit, then for a connection; `None` after an accept error
/// (out of file descriptors and the like), after a short back-off instead of spinning.
async fn accept(
    front: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    let permit = permits.clone().acquire_owned().await.ok()?;
    match front.accept().await {
        Ok((stream, _)) => Some((stream, permit)),
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// One front connection, from its first byte to its end.
async fn connection(
    stream: TcpStream,
    gateway: Arc<Gateway>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    draining: watch::Receiver<bool>,
) {
    let limit = gateway.config.server.header_read_timeout;
    let memo = CredentialMemo::default();
    let handle = move |request| gateway.handle(request, &memo);
    connection::drive(stream, &builder, limit, draining, handle).await;
}
