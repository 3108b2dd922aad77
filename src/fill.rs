//! Filling and revalidating entries, one upstream request per key at a time (SPEC §4.2).
//!
//! The first request for a cold (or expired) key starts a fill; every request for the same key
//! that arrives before it ends waits for it and gets the same [`Outcome`]. The fill runs in its
//! own task, so it finishes (and stores) even when every client that wanted it hung up, and a
//! client hanging up never restarts it. This is a single-flight beside moka rather than moka's
//! `get_with`: a fill has more outcomes than "a value" (an uncacheable answer to share, the
//! prior entry to keep serving, an error) and must not be cancelled with its first caller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::header::{HeaderValue, CONTENT_TYPE, IF_NONE_MATCH};
use http::{response, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::Body;
use crate::cacheability::{self, NotStored};
use crate::config::CacheConfig;
use crate::error::GatewayError;
use crate::key::CacheKey;
use crate::metrics::Metrics;
use crate::shield::{Refusal, Refused, ScopeKey, Shield};
use crate::store::{Entry, Store};
use crate::upstream::Upstream;

/// How a fill ended; shared by every request that waited for it.
pub enum Outcome {
    /// A usable entry: just fetched (`Miss`), confirmed unchanged (`Revalidated`), or found
    /// already refreshed by someone else (`Hit`).
    Entry {
        entry: Arc<Entry>,
        state: Fetched,
        upstream_status: Option<u16>,
    },
    /// The upstream failed and the prior entry is still within `stale_if_error`, or the shield
    /// refused the upstream call and a prior entry exists.
    Stale {
        entry: Arc<Entry>,
        upstream_status: Option<u16>,
        refusal: Option<Refusal>,
    },
    /// An answer that is not stored, passed to every waiter as received.
    Passed {
        head: response::Parts,
        body: Bytes,
        reason: NotStored,
    },
    /// An answer too large to buffer: the first waiter to claim it streams it; the others
    /// must ask the upstream themselves.
    Oversized(Mutex<Option<Response<Body>>>),
    /// No answer: connect error, timeout, broken response.
    Failed(GatewayError),
    /// The shield kept the request from the upstream and nothing cached can stand in.
    Refused(Refused),
}

/// Which fresh state an entry outcome reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    Miss,
    Revalidated,
    Hit,
}

type SharedOutcome = Shared<BoxFuture<'static, Arc<Outcome>>>;

/// The fills in progress, by key.
#[derive(Default)]
pub struct Fills {
    in_flight: Mutex<HashMap<CacheKey, SharedOutcome, foldhash::fast::RandomState>>,
}

/// What a fill needs from the process.
#[derive(Clone)]
pub struct FillContext {
    pub store: Arc<Store>,
    pub upstream: Arc<Upstream>,
    pub shield: Arc<Shield>,
    pub config: Arc<CacheConfig>,
    pub metrics: Arc<Metrics>,
}

impl Fills {
    /// Joins the fill in progress for `key`, or starts one with the request `build` makes.
    /// Returns the shared outcome and whether this caller joined an existing fill.
    pub fn start_or_join(
        self: &Arc<Self>,
        ctx: &FillContext,
        key: &CacheKey,
        prior: Option<Arc<Entry>>,
        scope: ScopeKey,
        build: impl FnOnce() -> Result<Request<Body>, GatewayError>,
    ) -> (SharedOutcome, bool) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = in_flight.get(key) {
            return (shared.clone(), true);
        }
        let request = build();
        let task = {
            let fills = self.clone();
            let ctx = ctx.clone();
            let key = key.clone();
            let span = tracing::Span::current();
            tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let outcome = match request {
                        Ok(request) => run(&ctx, &key, prior, scope, request).await,
                        Err(e) => Outcome::Failed(e),
                    };
                    fills
                        .in_flight
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key);
                    Arc::new(outcome)
                },
                span,
            ))
        };
        let shared = async move {
            task.await
                .unwrap_or_else(|_| Arc::new(Outcome::Failed(GatewayError::Internal)))
        }
        .boxed()
        .shared();
        in_flight.insert(key.clone(), shared.clone());
        (shared, false)
    }

    /// Number of fills in progress (for tests and stats).
    pub fn in_progress(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One fill: ask the upstream (conditionally when there is a prior entry), judge, store.
async fn run(
    ctx: &FillContext,
    key: &CacheKey,
    prior: Option<Arc<Entry>>,
    scope: ScopeKey,
    mut request: Request<Body>,
) -> Outcome {
    let epoch = ctx.store.epoch();
    // Someone may have stored a newer entry between this caller's lookup and now.
    if let Some(current) = ctx.store.get(key) {
        let newer = prior.as_ref().is_none_or(|p| p.id != current.id);
        if newer && !current.is_negative() && current.age(Instant::now()) <= ctx.config.ttl {
            return Outcome::Entry {
                entry: current,
                state: Fetched::Hit,
                upstream_status: None,
            };
        }
    }
    if let Some(etag) = prior.as_ref().and_then(|p| p.etag.clone()) {
        request.headers_mut().insert(IF_NONE_MATCH, etag);
    }
    let admission = match ctx.shield.admit(scope, true).await {
        Ok(admission) => admission,
        Err(refused) => {
            return match prior.filter(|p| !p.is_negative()) {
                Some(entry) => Outcome::Stale {
                    entry,
                    upstream_status: None,
                    refusal: Some(refused.reason),
                },
                None => Outcome::Refused(refused),
            };
        }
    };
    let exchange = async {
        let response = ctx.upstream.send(request).await?;
        read_limited(response, ctx.config.max_entry_bytes).await
    };
    let read = match tokio::time::timeout(ctx.upstream.request_timeout(), exchange).await {
        Ok(read) => read,
        Err(_) => Err(ctx.upstream.timeout_error()),
    };
    drop(admission);
    let (head, body) = match read {
        Ok(Read::Whole(head, body)) => (head, body),
        Ok(Read::Oversized(response)) => {
            ctx.metrics.not_stored(NotStored::TooLarge);
            return Outcome::Oversized(Mutex::new(Some(response)));
        }
        Err(error) => {
            return match usable_for_error(ctx, prior) {
                Some(entry) => Outcome::Stale {
                    entry,
                    upstream_status: None,
                    refusal: None,
                },
                None => Outcome::Failed(error),
            };
        }
    };
    let status = head.status;
    let upstream_status = Some(status.as_u16());
    if status == StatusCode::TOO_MANY_REQUESTS {
        ctx.shield.open_cooldown(scope, &head.headers);
    }

    if status == StatusCode::NOT_MODIFIED {
        if let Some(prior) = prior.as_ref().filter(|p| p.etag.is_some()) {
            let entry = Arc::new(refreshed(ctx, prior));
            ctx.store.insert(key.clone(), entry.clone(), epoch);
            return Outcome::Entry {
                entry,
                state: Fetched::Revalidated,
                upstream_status,
            };
        }
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(entry) = usable_for_error(ctx, prior.clone()) {
            ctx.metrics.not_stored(NotStored::Status);
            return Outcome::Stale {
                entry,
                upstream_status,
                refusal: None,
            };
        }
    }
    if status == StatusCode::NOT_FOUND && !ctx.config.negative_ttl.is_zero() {
        let entry = Arc::new(Entry {
            id: ctx.store.next_id(),
            status,
            body,
            content_type: head.headers.get(CONTENT_TYPE).map(detach),
            etag: None,
            stored_at: Instant::now(),
        });
        ctx.store.insert(key.clone(), entry.clone(), epoch);
        return Outcome::Entry {
            entry,
            state: Fetched::Miss,
            upstream_status,
        };
    }
    match cacheability::judge(
        status,
        &head.headers,
        &body,
        &key.order.order,
        ctx.config.max_entry_bytes,
    ) {
        Ok(storable) => {
            let unchanged = prior
                .as_ref()
                .and_then(|p| p.etag.as_ref())
                .is_some_and(|etag| *etag == storable.etag);
            let entry = Arc::new(Entry {
                id: ctx.store.next_id(),
                status,
                body,
                content_type: head.headers.get(CONTENT_TYPE).map(detach),
                etag: Some(storable.etag),
                stored_at: Instant::now(),
            });
            ctx.store.insert(key.clone(), entry.clone(), epoch);
            Outcome::Entry {
                entry,
                state: if unchanged {
                    Fetched::Revalidated
                } else {
                    Fetched::Miss
                },
                upstream_status,
            }
        }
        Err(reason) => {
            ctx.metrics.not_stored(reason);
            tracing::info!(
                reason = reason.as_str(),
                status = status.as_u16(),
                "order response not stored"
            );
            Outcome::Passed { head, body, reason }
        }
    }
}

/// A copy of a header value in its own small allocation. Values parsed by hyper share the
/// connection's whole read buffer; keeping one in a long-lived entry would keep that buffer
/// (kilobytes) alive with it.
/// The usual Content-Types are not copied at all but shared as static values.
pub fn detach(value: &HeaderValue) -> HeaderValue {
    const COMMON: [&str; 3] = [
        "application/json; charset=utf-8",
        "application/json",
        "application/json;charset=utf-8",
    ];
    COMMON
        .iter()
        .find(|c| c.as_bytes() == value.as_bytes())
        .map(|c| HeaderValue::from_static(c))
        .unwrap_or_else(|| {
            HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone())
        })
}

/// The prior entry, when the rules allow serving it because the upstream failed.
fn usable_for_error(ctx: &FillContext, prior: Option<Arc<Entry>>) -> Option<Arc<Entry>> {
    prior.filter(|p| {
        !p.is_negative() && p.age(Instant::now()) <= ctx.config.ttl + ctx.config.stale_if_error
    })
}

/// The same entry, confirmed current now.
fn refreshed(ctx: &FillContext, prior: &Entry) -> Entry {
    Entry {
        id: ctx.store.next_id(),
        status: prior.status,
        body: prior.body.clone(),
        content_type: prior.content_type.clone(),
        etag: prior.etag.clone(),
        stored_at: Instant::now(),
    }
}

enum Read {
    Whole(response::Parts, Bytes),
    Oversized(Response<Body>),
}

/// Reads a body up to `limit` bytes; past that, hands back what was read plus the rest unread.
async fn read_limited(response: Response<Incoming>, limit: usize) -> Result<Read, GatewayError> {
    let (head, mut incoming) = response.into_parts();
    // Copied into one allocation of the announced size: frames parsed by hyper are slices of
    // the connection's read buffer, which an entry must not keep alive.
    let expected = usize::try_from(http_body::Body::size_hint(&incoming).lower()).unwrap_or(0);
    let mut buf = BytesMut::with_capacity(expected.min(limit.saturating_add(1)));
    while let Some(frame) = incoming.frame().await {
        let frame =
            frame.map_err(|e| GatewayError::UpstreamUnavailable(crate::upstream::describe(&e)))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > limit {
                let body = Body::Prefixed(Some(buf.freeze()), incoming);
                return Ok(Read::Oversized(Response::from_parts(head, body)));
            }
        }
    }
    Ok(Read::Whole(head, buf.freeze()))
}
