//! The listeners: accept connections, apply the connection-level limits, drain on shutdown.
//!
//! Ports are bound first ([`bind`]) and served second ([`Bound::serve`]) so that a start-up
//! error (bad TLS roots, a port in use) surfaces before anything is accepted, and so tests can
//! bind port 0, read the real address, and pass in their own shutdown trigger (SPEC §10).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
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
        let fleet = gateway.fleet.as_ref().map(|replica| replica.start());
        let (stop_admin, admin_stopped) = watch::channel(false);
        let admin_task = tokio::spawn(admin::serve(admin, gateway.clone(), admin_stopped));

        let builder = Arc::new(front_builder(&gateway.config));
        let graceful = GracefulShutdown::new();
        // Every connection task, so that those still open when the grace runs out can be
        // dropped at once; finished ones are reaped as the loop goes.
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = front.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(connection(stream, peer, gateway.clone(), builder.clone(), graceful.watcher()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }

        drop(front);
        gateway.start_draining();
        tracing::info!(grace_ms = grace.as_millis() as u64, "draining");
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
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

/// The front connection settings of SPEC §2/§3: head size and read-time limits, keep-alive.
fn front_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let server = &config.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(server.header_read_timeout)
        // A head that does not fit the read buffer is answered 431 by hyper, then closed.
        .max_buf_size(server.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// One client connection, from its first byte to its end.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    // hyper's header timer starts only once HTTP/1 vs h2c is decided; a peer that connects
    // and sends nothing must not hold a task and a socket past the same limit.
    let mut probe = [0u8; 1];
    let limit = gateway.config.server.header_read_timeout;
    match tokio::time::timeout(limit, stream.peek(&mut probe)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    let memo = CredentialMemo::default();
    let service =
        service_fn(move |request| gateway.handle(request, &memo).map(Ok::<_, Infallible>));
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
