//! The front listener: accepts connections (at most `server.max_connections` open at once),
//! hands each to the connection driver, and drains them on shutdown (SPEC §10, §14).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::front::connection;
use crate::front::pipeline::Gateway;
use crate::request::credential::CredentialMemo;

/// Serves `front` until `shutdown` resolves, then stops accepting, drains the open connections
/// for `server.shutdown_grace` and drops those still open.
pub async fn serve(front: TcpListener, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    let grace = gateway.config.server.shutdown_grace;
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
