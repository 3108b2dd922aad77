//! One client connection from its first byte to its end, for both listeners (SPEC §8, §14).
//!
//! hyper bounds an HTTP/1.1 connection's idle time itself (`header_read_timeout` runs from the
//! moment the connection waits for a next head), but nothing bounds an HTTP/2 connection that
//! opens and idles, nor one that never finishes its preface: a silent peer answers pings and
//! holds a socket and a task for ever. So every connection is driven here, with a watch on
//! how long it has had no request in flight. After `server.header_read_timeout` of that, the
//! connection is shut down gracefully (h2: GOAWAY); a peer that still keeps it open, with
//! nothing in flight, for as long again is dropped. Once a connection shows it speaks
//! HTTP/1.x the watch stands down and hyper's own timer rules, unchanged. The same driver
//! serves the admin port, so it gets the same head-read and head-size limits.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use http::{Request, Response, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::body::Body;
use crate::config::ServerConfig;

/// The connection settings both listeners share (SPEC §2, §8): head size and head read time.
pub fn builder(server: &ServerConfig) -> auto::Builder<TokioExecutor> {
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

/// Serves one connection with `handle` until it ends, it idles past `idle_limit` (counted
/// from its first byte, as hyper's head timer is), or `drain` turns true (then in-flight
/// requests finish and the connection closes).
pub async fn drive<H, F>(
    stream: TcpStream,
    builder: &auto::Builder<TokioExecutor>,
    idle_limit: Duration,
    mut drain: watch::Receiver<bool>,
    handle: H,
) where
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    // hyper's header timer starts only once HTTP/1 vs h2c is decided; a peer that connects
    // and sends nothing must not hold a task and a socket past the same limit.
    let mut probe = [0u8; 1];
    let spoke = tokio::select! {
        peeked = tokio::time::timeout(idle_limit, stream.peek(&mut probe)) => {
            matches!(peeked, Ok(Ok(n)) if n > 0)
        }
        () = stopped(&mut drain) => false,
    };
    if !spoke {
        return;
    }
    let activity = Arc::new(Activity::new());
    let tracker = activity.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let guard = tracker.begin(request.version());
        handle(request).map(move |response| {
            Ok::<_, Infallible>(response.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        })
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    tokio::pin!(connection);
    let (mut closing, mut draining) = (false, false);
    // Idle time counts from here, and again from the graceful shutdown on.
    let mut counting_from = Instant::now();
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(?peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.idle(idle_limit, counting_from) => {
                if closing {
                    tracing::debug!(?peer, "idle connection kept open after its shutdown; dropped");
                    return;
                }
                tracing::debug!(?peer, "connection idle past server.header_read_timeout; closing");
                connection.as_mut().graceful_shutdown();
                closing = true;
                counting_from = Instant::now();
            }
            () = stopped(&mut drain), if !draining => {
                connection.as_mut().graceful_shutdown();
                (closing, draining) = (true, true);
                counting_from = Instant::now();
            }
        }
    }
}

/// Resolves once the flag turns true (or its sender is gone).
async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}

/// How busy one connection is: requests in flight, since when none, and whether it speaks
/// HTTP/1.x (then hyper's own idle timer applies and this one stands down).
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds from `born` to the end of the last request (0: none yet).
    idle_since: AtomicU64,
    http1: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            http1: AtomicBool::new(false),
        }
    }

    /// A request arrived; it counts until its response body is done.
    fn begin(self: &Arc<Self>, version: Version) -> InFlight {
        if version < Version::HTTP_2 {
            self.http1.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves once the connection has had no request in flight for `limit`, counted from
    /// `from` at the earliest (never on an HTTP/1.x connection).
    async fn idle(&self, limit: Duration, from: Instant) {
        loop {
            if self.http1.load(Ordering::Relaxed) {
                return std::future::pending().await;
            }
            if self.in_flight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(limit).await;
                continue;
            }
            let since = Duration::from_nanos(self.idle_since.load(Ordering::Acquire));
            let deadline = (self.born + since).max(from) + limit;
            if Instant::now() >= deadline && self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// One request in flight on a connection; dropped with its response body.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        // On HTTP/1.x nobody reads it: no clock read per request there.
        if !activity.http1.load(Ordering::Relaxed) {
            let now = u64::try_from(activity.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
            activity.idle_since.store(now, Ordering::Release);
        }
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct Tracked {
    body: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
