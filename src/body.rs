//! The one body type the gateway sends and receives, and the limits a peer's body lives under.
//!
//! A body is either bytes the gateway already holds (a cached order, an error JSON, nothing)
//! or a peer's body streamed through ([`Watched`]). An enum instead of a boxed trait object
//! keeps the hit path free of an allocation per response and keeps streaming bodies streaming.
//! Every streamed body is watched (SPEC §14): one that sends no byte for its idle limit, or
//! grows past its size limit, ends in an error, which makes hyper abort whatever it fed (the
//! upstream request, or the client's response). A client's streamed body also tells the
//! exchange waiting on it why it ended ([`Cutoff`]), so the client gets 408 or 413 at once.
//! [`Intake`] is the one rule for request bodies: refused by their announced length, read
//! whole, or streamed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::config::ServerConfig;

/// Bodies announced at most this long are read whole before their request takes an upstream
/// slot (SPEC §5, §14).
pub const READ_WHOLE_UP_TO: u64 = 64 * 1024;

/// A body that is either in memory or streamed from a peer.
#[derive(Debug)]
pub enum Body {
    /// Bytes held by the gateway; `None` once sent (or for an empty body).
    Full(Option<Bytes>),
    /// A peer's body, passed through frame by frame under its limits.
    Peer(Watched),
}

/// Why a peer's body was ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// No byte for the idle limit.
    Stalled,
    /// More than this many bytes.
    TooLarge(u64),
    /// The peer broke the body off (reset, or fewer bytes than it announced).
    Broken,
}

/// The error of a [`Body`]: the peer's own, or one of the gateway's limits.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Peer(#[from] hyper::Error),
    #[error("the body sent no byte for {} ms", .0.as_millis())]
    Stalled(Duration),
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
}

impl BodyError {
    /// What this error means for the request the body belongs to.
    pub fn cut(&self) -> Cut {
        match self {
            BodyError::Peer(_) => Cut::Broken,
            BodyError::Stalled(_) => Cut::Stalled,
            BodyError::TooLarge(limit) => Cut::TooLarge(*limit),
        }
    }
}

/// Resolves when the client body it belongs to is cut off; never, when it ends well.
#[derive(Debug)]
pub struct Cutoff(oneshot::Receiver<Cut>);

impl Cutoff {
    /// Waits for the cut (pending forever once the body ended well or was dropped).
    pub async fn wait(self) -> Cut {
        match self.0.await {
            Ok(cut) => cut,
            Err(_) => std::future::pending().await,
        }
    }
}

/// Who hears about a cut: a waiting exchange (client bodies), or the log (upstream bodies).
#[derive(Debug)]
enum Report {
    Tell(Option<oneshot::Sender<Cut>>, Option<oneshot::Receiver<Cut>>),
    Log(tracing::Span),
    Quiet,
}

/// A peer's body under an idle limit and a size limit, with bytes already read replayed first.
#[derive(Debug)]
pub struct Watched {
    prefix: Option<Bytes>,
    incoming: Incoming,
    idle: Duration,
    /// Made at the first wait for data (a body that is all there never needs one).
    timer: Option<Pin<Box<Sleep>>>,
    seen: u64,
    limit: u64,
    report: Report,
}

impl Body {
    /// An empty body.
    pub fn empty() -> Body {
        Body::Full(None)
    }

    /// A body of bytes already in memory.
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        Body::Full((!bytes.is_empty()).then_some(bytes))
    }

    /// An upstream's response body, cut off after `idle` without a byte; the cut is logged
    /// under the current span (the request's).
    pub fn upstream(incoming: Incoming, idle: Duration) -> Body {
        Body::watched(
            incoming,
            u64::MAX,
            idle,
            Report::Log(tracing::Span::current()),
        )
    }

    /// A client's request body that the gateway reads itself: at most `limit` bytes, at most
    /// `idle` without a byte.
    fn client(incoming: Incoming, limit: u64, idle: Duration) -> Body {
        Body::watched(incoming, limit, idle, Report::Quiet)
    }

    /// A client's request body streamed upstream under the same limits; its [`Cutoff`] is
    /// taken by the exchange it feeds ([`Body::take_cutoff`]).
    fn client_streamed(incoming: Incoming, limit: u64, idle: Duration) -> Body {
        let (tx, rx) = oneshot::channel();
        Body::watched(incoming, limit, idle, Report::Tell(Some(tx), Some(rx)))
    }

    fn watched(incoming: Incoming, limit: u64, idle: Duration, report: Report) -> Body {
        Body::Peer(Watched {
            prefix: None,
            incoming,
            idle,
            timer: None,
            seen: 0,
            limit,
            report,
        })
    }

    /// The signal of a streamed client body's cut, once; `None` for every other body.
    pub fn take_cutoff(&mut self) -> Option<Cutoff> {
        match self {
            Body::Peer(Watched {
                report: Report::Tell(_, rx),
                ..
            }) => rx.take().map(Cutoff),
            _ => None,
        }
    }

    /// The same body with `bytes` (already read from it) sent first again.
    pub fn prepend(self, bytes: Bytes) -> Body {
        let joined = |old: Option<Bytes>| match old {
            None => bytes.clone(),
            Some(old) => {
                let mut both = BytesMut::with_capacity(bytes.len() + old.len());
                both.extend_from_slice(&bytes);
                both.extend_from_slice(&old);
                both.freeze()
            }
        };
        match self {
            Body::Full(old) => Body::full(joined(old)),
            Body::Peer(mut watched) => {
                watched.prefix = Some(joined(watched.prefix.take()));
                Body::Peer(watched)
            }
        }
    }
}

/// What happens to a request body before its request may go upstream (SPEC §5, §14), from
/// `server.max_body_bytes` and `server.body_read_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Intake {
    max_bytes: u64,
    idle: Duration,
}

impl Intake {
    /// The limits of `[server]`.
    pub fn new(server: &ServerConfig) -> Intake {
        Intake {
            max_bytes: server.max_body_bytes,
            idle: server.body_read_timeout,
        }
    }

    /// The body to send upstream for a client's body, or why the request ends here. No body:
    /// passed on as nothing, at no cost. Announced over the limit: refused before anything is
    /// read or sent. Announced at most [`READ_WHOLE_UP_TO`]: read whole now, so that a client
    /// trickling it holds no upstream slot meanwhile. Anything else (larger, or chunked)
    /// streams under the same limits, with a [`Cutoff`] for the exchange it feeds.
    pub async fn take(&self, incoming: Incoming) -> Result<Body, Cut> {
        if incoming.is_end_stream() {
            return Ok(Body::empty());
        }
        match incoming.size_hint().exact() {
            Some(announced) if announced > self.max_bytes => Err(Cut::TooLarge(self.max_bytes)),
            Some(announced) if announced <= READ_WHOLE_UP_TO => {
                let body = Body::client(incoming, self.max_bytes, self.idle);
                match body.collect().await {
                    Ok(collected) => Ok(Body::full(collected.to_bytes())),
                    Err(error) => Err(error.cut()),
                }
            }
            _ => Ok(Body::client_streamed(incoming, self.max_bytes, self.idle)),
        }
    }

    /// A body the gateway reads whole itself (an event notification), at most `limit` bytes
    /// (and `server.max_body_bytes`), under `server.body_read_timeout` like any other.
    pub async fn take_whole(&self, incoming: Incoming, limit: u64) -> Result<Bytes, Cut> {
        let limit = limit.min(self.max_bytes);
        if incoming
            .size_hint()
            .exact()
            .is_some_and(|announced| announced > limit)
        {
            return Err(Cut::TooLarge(limit));
        }
        match Body::client(incoming, limit, self.idle).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) => Err(error.cut()),
        }
    }
}

impl Watched {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(bytes) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen = self.seen.saturating_add(data.len() as u64);
                    if self.seen > self.limit {
                        return Poll::Ready(Some(Err(self.cut(BodyError::TooLarge(self.limit)))));
                    }
                    if let (Some(timer), false) = (self.timer.as_mut(), data.is_empty()) {
                        if let Some(again) = Instant::now().checked_add(self.idle) {
                            timer.as_mut().reset(again);
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(self.cut(BodyError::Peer(e))))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let idle = self.idle;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(self.cut(BodyError::Stalled(idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    /// Tells whoever listens why the body ends here, and hands the error on.
    fn cut(&mut self, error: BodyError) -> BodyError {
        match &mut self.report {
            Report::Tell(tx, _) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(error.cut());
                }
            }
            Report::Log(span) => {
                if let BodyError::Stalled(idle) = error {
                    span.in_scope(|| {
                        tracing::warn!(
                            idle_ms = idle.as_millis() as u64,
                            "upstream response body sent no byte for upstream.body_idle_timeout; cut off"
                        );
                    });
                }
            }
            Report::Quiet => {}
        }
        error
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Peer(watched) => watched.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.is_none(),
            Body::Peer(w) => w.prefix.is_none() && w.incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Peer(w) => {
                let extra = w.prefix.as_ref().map_or(0, |b| b.len() as u64);
                let inner = w.incoming.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(extra));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(extra));
                }
                hint
            }
        }
    }
}

/// An upstream answer read up to a limit: whole, or too large to hold.
pub enum Limited {
    /// The head and every body byte, in one exact-size allocation.
    Whole(http::response::Parts, Bytes),
    /// Past the limit: what was read put back in front of the unread rest, to stream on.
    Oversized(http::Response<Body>),
}

/// Reads a body up to `limit` bytes; past that, hands back what was read plus the rest unread.
pub async fn read_limited(
    response: http::Response<Body>,
    limit: usize,
) -> Result<Limited, BodyError> {
    use http_body_util::BodyExt;
    let (head, mut incoming) = response.into_parts();
    // Copied into one allocation of the announced size: frames parsed by hyper are slices of
    // the connection's read buffer, which an entry must not keep alive.
    let expected = usize::try_from(http_body::Body::size_hint(&incoming).lower()).unwrap_or(0);
    let mut buf = bytes::BytesMut::with_capacity(expected.min(limit.saturating_add(1)));
    while let Some(frame) = incoming.frame().await {
        if let Ok(data) = frame?.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > limit {
                let body = incoming.prepend(buf.freeze());
                return Ok(Limited::Oversized(http::Response::from_parts(head, body)));
            }
        }
    }
    Ok(Limited::Whole(head, buf.freeze()))
}
