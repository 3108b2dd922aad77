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
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::header::{CONTENT_TYPE, IF_NONE_MATCH};
use http::{response, Request, Response, StatusCode};

use crate::body::{read_limited, Body, Limited};
use crate::cache::cacheability;
use crate::cache::key::{detach, CacheKey, KeyMaker};
use crate::cache::policy::{Freshness, Policy};
use crate::cache::store::Entry;
use crate::cache::tier::{Epoch, Tiers};
use crate::config::CacheConfig;
use crate::error::GatewayError;
use crate::fleet::shared::Lease;
use crate::front::conditional::RequestDirectives;
use crate::front::credential::Fingerprint;
use crate::ops::metrics::Metrics;
use crate::outcome::{CacheState, NotStored, Refusal, Tier};
use crate::upstream::client::describe;
use crate::upstream::exchange::{Exchange, Failure, Purpose};
use crate::upstream::shield::ScopeKey;

/// How a fill ended; shared by every request that waited for it.
pub enum Outcome {
    /// A usable entry: just fetched (`Miss`), confirmed unchanged (`Revalidated`), or found
    /// already refreshed by someone else (`Hit`).
    Entry {
        entry: Arc<Entry>,
        state: CacheState,
        upstream_status: Option<u16>,
        /// The tier it came from, when it came from the cache rather than the upstream.
        tier: Option<Tier>,
    },
    /// The upstream failed, or the shield refused the call, and the prior entry may stand in
    /// (SPEC §4.1, stale-if-error).
    Stale {
        entry: Arc<Entry>,
        upstream_status: Option<u16>,
        refusal: Option<Refusal>,
    },
    /// An answer that is not stored, passed to every waiter as received.
    Passed { head: response::Parts, body: Bytes },
    /// An answer too large to buffer: the first waiter to claim it streams it; the others
    /// must ask the upstream themselves.
    Oversized(Mutex<Option<Response<Body>>>),
    /// No answer and nothing cached to stand in: connect error, timeout, broken response, or
    /// the shield kept the request from the upstream.
    Failed(Failure),
}

type SharedOutcome = Shared<BoxFuture<'static, Arc<Outcome>>>;

/// What one fill is for: a key, and in `shared` mode the credential it is sent with (see
/// [`KeyMaker::fill_scope`]).
type FillKey = (CacheKey, Option<Fingerprint>);

/// What a fill needs from the process.
struct FillContext {
    tiers: Arc<Tiers>,
    exchange: Arc<Exchange>,
    policy: Policy,
    /// The body size limit in force (SPEC §2: the smaller of the two cache bounds).
    entry_limit: usize,
    /// How long a fleet lease on a key lasts: `upstream.request_timeout` + 1 s (SPEC §12.2).
    lease_ttl: Duration,
    /// Whether upstream 404s are remembered (`cache.negative_ttl > 0`, `credential` mode).
    remember_not_found: bool,
    metrics: Arc<Metrics>,
}

/// The fills in progress, by key, and what they need.
pub struct Fills {
    in_flight: Mutex<HashMap<FillKey, SharedOutcome, foldhash::fast::RandomState>>,
    ctx: FillContext,
}

impl Fills {
    /// Fills that ask `exchange` and store into `tiers` under the rules of `config`.
    pub fn new(
        config: &CacheConfig,
        tiers: Arc<Tiers>,
        exchange: Arc<Exchange>,
        metrics: Arc<Metrics>,
    ) -> Fills {
        let lease_ttl = exchange.request_timeout() + Duration::from_secs(1);
        Fills {
            in_flight: Mutex::default(),
            ctx: FillContext {
                tiers,
                exchange,
                policy: Policy::new(config),
                entry_limit: config.entry_limit(),
                lease_ttl,
                remember_not_found: !config.negative_ttl.is_zero()
                    && KeyMaker::new(config.partition).remembers_not_found(),
                metrics,
            },
        }
    }

    /// Joins the fill in progress for `key` (sent with `fill_scope`'s credential, in `shared`
    /// mode), or starts one with the request `build` makes. Returns the shared outcome and
    /// whether this caller joined an existing fill.
    pub fn start_or_join(
        self: &Arc<Self>,
        key: &CacheKey,
        fill_scope: Option<Fingerprint>,
        prior: Option<Arc<Entry>>,
        scope: ScopeKey,
        directives: RequestDirectives,
        build: impl FnOnce() -> Result<Request<Body>, GatewayError>,
    ) -> (SharedOutcome, bool) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let fill_key = (key.clone(), fill_scope);
        if let Some(shared) = in_flight.get(&fill_key) {
            return (shared.clone(), true);
        }
        let request = build();
        let task = {
            let fills = self.clone();
            let fill_key = fill_key.clone();
            let span = tracing::Span::current();
            tokio::spawn(tracing::Instrument::instrument(
                async move {
                    // Out of the map however the task ends, a panic included: a key must never
                    // stay stuck with a failed outcome.
                    let done = Done(fills.clone(), fill_key);
                    let outcome = match request {
                        Ok(request) => {
                            let ctx = &done.0.ctx;
                            let (key, fill_scope) = (&done.1 .0, done.1 .1);
                            run(ctx, key, fill_scope, prior, scope, directives, request).await
                        }
                        Err(e) => Outcome::Failed(e.into()),
                    };
                    drop(done);
                    Arc::new(outcome)
                },
                span,
            ))
        };
        let shared = async move {
            task.await
                .unwrap_or_else(|_| Arc::new(Outcome::Failed(GatewayError::Internal.into())))
        }
        .boxed()
        .shared();
        in_flight.insert(fill_key, shared.clone());
        (shared, false)
    }

    /// Number of fills in progress (for stats).
    pub fn in_progress(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Takes a fill out of the in-flight map when dropped.
struct Done(Arc<Fills>, FillKey);

impl Drop for Done {
    fn drop(&mut self) {
        self.0
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.1);
    }
}

/// One fill: ask the upstream (conditionally when there is a prior entry), judge, store.
async fn run(
    ctx: &FillContext,
    key: &CacheKey,
    fill_scope: Option<Fingerprint>,
    mut prior: Option<Arc<Entry>>,
    scope: ScopeKey,
    directives: RequestDirectives,
    request: Request<Body>,
) -> Outcome {
    let epoch = ctx.tiers.epoch();
    // Fresh for the request that started the fill: its `no-cache` or `max-age` still holds.
    let fresh = |entry: &Entry| {
        let age = entry.age(Instant::now());
        ctx.policy.freshness(entry.kind(), age, &directives) == Freshness::Fresh
    };
    // Someone may have stored a newer entry between this caller's lookup and now.
    if let Some(current) = ctx.tiers.get(key) {
        let newer = prior.as_ref().is_none_or(|p| p.id != current.id);
        if newer && fresh(&current) {
            return Outcome::Entry {
                entry: current,
                state: CacheState::Hit,
                upstream_status: None,
                tier: Some(Tier::L1),
            };
        }
    }
    // Fleet mode: what another replica stored answers by its age (SPEC §12.1); one too old to
    // serve still makes this fill a revalidation.
    if prior.is_none() && ctx.tiers.is_shared() {
        if let Some(shared) = ctx.tiers.get_shared(key, epoch).await {
            if fresh(&shared) {
                return Outcome::Entry {
                    entry: shared,
                    state: CacheState::Hit,
                    upstream_status: None,
                    tier: Some(Tier::L2),
                };
            }
            prior = Some(shared).filter(|e| !e.is_negative());
        }
    }
    // One fill for the fleet (SPEC §12.2): the replica that takes the key's lease asks the
    // upstream; the others wait for what it stores, and ask themselves only if it stores
    // nothing usable (an error, an uncacheable answer) or Redis fails.
    let lease_scope = fill_scope.map_or_else(|| "-".to_owned(), |f| f.to_hex());
    let mut lease = None;
    if ctx.tiers.is_shared() {
        match ctx.tiers.take_lease(key, &lease_scope, ctx.lease_ttl).await {
            Lease::Held(token) => lease = Some(token),
            Lease::Busy => {
                ctx.metrics.lease_wait();
                let until = Instant::now() + ctx.lease_ttl;
                let waited = ctx
                    .tiers
                    .wait_for_fill(key, &lease_scope, epoch, until, fresh)
                    .await;
                if let Some(entry) = waited {
                    return Outcome::Entry {
                        entry,
                        state: CacheState::Miss,
                        upstream_status: None,
                        tier: Some(Tier::L2),
                    };
                }
            }
            Lease::Unavailable => {}
        }
    }
    let outcome = fetch(ctx, key, epoch, prior, scope, request).await;
    if let Some(token) = lease {
        ctx.tiers.release_lease(key, &lease_scope, &token).await;
    }
    outcome
}

/// Asks the upstream (conditionally when there is a prior entry), judges the answer, stores it.
async fn fetch(
    ctx: &FillContext,
    key: &CacheKey,
    epoch: Epoch,
    prior: Option<Arc<Entry>>,
    scope: ScopeKey,
    mut request: Request<Body>,
) -> Outcome {
    if let Some(etag) = prior.as_ref().and_then(|p| p.etag.clone()) {
        request.headers_mut().insert(IF_NONE_MATCH, etag);
    }
    let limit = ctx.entry_limit;
    let read = ctx
        .exchange
        .send(scope, Purpose::Cached, request, |response| async move {
            read_limited(response, limit)
                .await
                .map_err(|e| GatewayError::UpstreamUnavailable(describe(&e)))
        })
        .await;
    let (head, body) = match read {
        Ok(Limited::Whole(head, body)) => (head, body),
        Ok(Limited::Oversized(response)) => {
            ctx.metrics.not_stored(NotStored::TooLarge);
            return Outcome::Oversized(Mutex::new(Some(response)));
        }
        Err(failure) => {
            return match stand_in(ctx, prior) {
                Some(entry) => Outcome::Stale {
                    entry,
                    upstream_status: None,
                    refusal: failure.refusal,
                },
                None => Outcome::Failed(failure),
            };
        }
    };
    let status = head.status;
    let upstream_status = Some(status.as_u16());
    let now = Instant::now();
    // SPEC §4.1: a revoked token or a deleted order must not keep reading the old copy.
    let refused = [
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::NOT_FOUND,
    ];
    if let Some(prior) = prior.as_ref().filter(|_| refused.contains(&status)) {
        let dropped = ctx.tiers.drop_entry(key, prior).await;
        tracing::info!(
            status = status.as_u16(),
            dropped,
            "revalidation refused; cached entry dropped"
        );
    }

    if status == StatusCode::NOT_MODIFIED {
        if let Some(prior) = prior.as_ref().filter(|p| p.etag.is_some()) {
            let entry = Arc::new(prior.refreshed(now));
            ctx.tiers.put(key.clone(), entry.clone(), epoch).await;
            return Outcome::Entry {
                entry,
                state: CacheState::Revalidated,
                upstream_status,
                tier: None,
            };
        }
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(entry) = stand_in(ctx, prior.clone()) {
            ctx.metrics.not_stored(NotStored::Status);
            return Outcome::Stale {
                entry,
                upstream_status,
                refusal: None,
            };
        }
    }
    let content_type = head.headers.get(CONTENT_TYPE).map(detach);
    if status == StatusCode::NOT_FOUND && ctx.remember_not_found {
        let entry = Arc::new(Entry::new(status, body, content_type, None, now));
        ctx.tiers.put(key.clone(), entry.clone(), epoch).await;
        return Outcome::Entry {
            entry,
            state: CacheState::Miss,
            upstream_status,
            tier: None,
        };
    }
    match cacheability::judge(status, &head.headers, &body, &key.order.order) {
        Ok(storable) => {
            let unchanged = prior
                .as_ref()
                .and_then(|p| p.etag.as_ref())
                .is_some_and(|etag| *etag == storable.etag);
            let entry = Arc::new(Entry::new(
                status,
                body,
                content_type,
                Some(storable.etag),
                now,
            ));
            ctx.tiers.put(key.clone(), entry.clone(), epoch).await;
            Outcome::Entry {
                entry,
                state: if unchanged {
                    CacheState::Revalidated
                } else {
                    CacheState::Miss
                },
                upstream_status,
                tier: None,
            }
        }
        Err(reason) => {
            ctx.metrics.not_stored(reason);
            tracing::info!(
                reason = reason.as_str(),
                status = status.as_u16(),
                "order response not stored"
            );
            Outcome::Passed { head, body }
        }
    }
}

/// The prior entry, when the policy lets it stand in for an upstream that failed or a call
/// the shield refused.
fn stand_in(ctx: &FillContext, prior: Option<Arc<Entry>>) -> Option<Arc<Entry>> {
    prior.filter(|p| ctx.policy.serves_on_error(p.kind(), p.age(Instant::now())))
}
