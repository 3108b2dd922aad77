//! The one body type the gateway sends and receives.
//!
//! A response is either bytes the gateway already holds (a cached order, an error JSON, nothing)
//! or the upstream's body streamed through untouched; a request going upstream is the client's
//! body streamed through, or empty. An enum instead of a boxed trait object keeps the hit path
//! free of an allocation per response and keeps streaming bodies streaming.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

/// A body that is either in memory or streamed from a peer.
#[derive(Debug)]
pub enum Body {
    /// Bytes held by the gateway; `None` once sent (or for an empty body).
    Full(Option<Bytes>),
    /// A peer's body, passed through frame by frame.
    Stream(Incoming),
    /// A peer's body of which the first bytes were already read (to judge it) and are replayed.
    Prefixed(Option<Bytes>, Incoming),
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
}

impl From<Incoming> for Body {
    fn from(incoming: Incoming) -> Body {
        Body::Stream(incoming)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(incoming) => Pin::new(incoming).poll_frame(cx),
            Body::Prefixed(prefix, incoming) => match prefix.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Pin::new(incoming).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.is_none(),
            Body::Stream(incoming) => incoming.is_end_stream(),
            Body::Prefixed(prefix, incoming) => prefix.is_none() && incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(incoming) => incoming.size_hint(),
            Body::Prefixed(prefix, incoming) => {
                let extra = prefix.as_ref().map_or(0, |b| b.len() as u64);
                let inner = incoming.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
        }
    }
}
