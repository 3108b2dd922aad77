//! Filling and revalidating entries, one upstream request per key at a time (SPEC §4.2).
//!
//! The first request for a cold (or expired) key starts a fill; every request for the same key
//! that arrives before it ends waits for it and gets the same [`Outcome`] (the exchange itself is [`crate::cache::ask`]). The fill runs in its
//! own task, so it finishes (and stores) even when every client that wanted it hung up, and a
//! client hanging up never restarts it. This is a single-flight beside moka rather than moka's
//! `get_with`: a fill has more outcomes than "a value" (an uncacheable answer to share, the
//! prior entry to keep serving, an error) and must not be cancelled with its first caller.
//!
//! No fill outlives an invalidation (SPEC §4.2): a fill remembers the purge epoch of its key's
//! customer, read before it asks the upstream. A request that finds a fill whose epoch is no
//! longer the current one (a write, a purge or a fleet invalidation came since) does not join
//! it: it starts a fill of its own, which takes the older one's place for later requests. The
//! check is two integers compared on the miss path; a hit never comes here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::Request;

use crate::body::Body;
use crate::cache::ask::{fetch, FillContext, Outcome};
use crate::cache::key::CacheKey;
use crate::cache::policy::Freshness;
use crate::cache::shared::Lease;
use crate::cache::store::Entry;
use crate::cache::tier::{Epoch, Stamp, Tiers, LEASE_HOLD};
use crate::config::CacheConfig;
use crate::error::GatewayError;
use crate::observe::metrics::Metrics;
use crate::outcome::{CacheState, Tier};
use crate::request::conditional::RequestDirectives;
use crate::request::credential::Fingerprint;
use crate::upstream::exchange::Exchange;
use crate::upstream::shield::ScopeKey;

type SharedOutcome = Shared<BoxFuture<'static, Arc<Outcome>>>;

/// What one fill is for: a key, and in `shared` mode the credential it is sent with (see
/// [`crate::cache::key::KeyMaker::fill_scope`]).
type FillKey = (CacheKey, Option<Fingerprint>);

/// One fill in progress: which fill it is, the purge epoch it was started under, its outcome.
struct Flight {
    serial: u64,
    epoch: Epoch,
    outcome: SharedOutcome,
}

/// The fills in progress, by key, and what they need.
pub struct Fills {
    in_flight: Mutex<HashMap<FillKey, Flight, foldhash::fast::RandomState>>,
    /// Numbers fills, so that a fill leaving the map takes out itself, not a newer one.
    serials: AtomicU64,
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
        Fills {
            in_flight: Mutex::default(),
            serials: AtomicU64::new(0),
            ctx: FillContext::new(config, tiers, exchange, metrics),
        }
    }

    /// Joins the fill in progress for `key` (sent with `fill_scope`'s credential, in `shared`
    /// mode), or starts one with the request `build` makes — also when the fill in progress
    /// began before the key's latest invalidation. Returns the shared outcome and whether this
    /// caller joined an existing fill.
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
        let epoch = self.ctx.tiers.epoch(key);
        if let Some(flight) = in_flight.get(&fill_key) {
            if flight.epoch == epoch {
                return (flight.outcome.clone(), true);
            }
        }
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let started = Started {
            fill_key: fill_key.clone(),
            serial,
            epoch,
        };
        let outcome = self.spawn(started, build(), prior, scope, directives);
        let flight = Flight {
            serial,
            epoch,
            outcome: outcome.clone(),
        };
        in_flight.insert(fill_key, flight);
        (outcome, false)
    }

    /// Runs one fill in its own task; what every caller of the key awaits. Not generic (the
    /// refresh it may start re-enters here).
    fn spawn(
        self: &Arc<Self>,
        started: Started,
        request: Result<Request<Body>, GatewayError>,
        prior: Option<Arc<Entry>>,
        scope: ScopeKey,
        directives: RequestDirectives,
    ) -> SharedOutcome {
        let fills = self.clone();
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                // Out of the map however the task ends, a panic included: a key must never
                // stay stuck with a failed outcome.
                let epoch = started.epoch;
                let done = Done(fills.clone(), started);
                let (key, fill_scope) = (&done.1.fill_key.0, done.1.fill_key.1);
                let step = match request {
                    Ok(request) => {
                        let ctx = &fills.ctx;
                        let fill = Fill {
                            key,
                            epoch,
                            fill_scope,
                            scope,
                            directives,
                        };
                        run(ctx, fill, prior, request).await
                    }
                    Err(e) => Step::Done(Outcome::Failed(e.into())),
                };
                let outcome = match step {
                    Step::Done(outcome) => outcome,
                    // Answered STALE from the shared tier: this fill ends here, and one
                    // refresh (a fill of its own, which later requests join) starts now.
                    Step::Refresh { entry, request } => {
                        let key = key.clone();
                        drop(done);
                        let prior = Some(entry.clone());
                        let _ =
                            fills.start_or_join(&key, fill_scope, prior, scope, directives, || {
                                Ok(request)
                            });
                        Outcome::Entry {
                            entry,
                            state: CacheState::Stale,
                            upstream_status: None,
                            tier: Some(Tier::L2),
                        }
                    }
                };
                Arc::new(outcome)
            },
            tracing::Span::current(),
        ));
        async move {
            task.await
                .unwrap_or_else(|_| Arc::new(Outcome::Failed(GatewayError::Internal.into())))
        }
        .boxed()
        .shared()
    }

    /// Number of fills in progress (for stats).
    pub fn in_progress(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Which fill a task runs: its key, its number, the purge epoch it was started under.
struct Started {
    fill_key: FillKey,
    serial: u64,
    epoch: Epoch,
}

/// Takes a fill out of the in-flight map when dropped — unless a newer fill for the key has
/// taken its place there.
struct Done(Arc<Fills>, Started);

impl Drop for Done {
    fn drop(&mut self) {
        let mut in_flight = self
            .0
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight
            .get(&self.1.fill_key)
            .is_some_and(|flight| flight.serial == self.1.serial)
        {
            in_flight.remove(&self.1.fill_key);
        }
    }
}

/// What one fill is for.
struct Fill<'a> {
    key: &'a CacheKey,
    /// Read before the upstream is asked: nothing is stored if a purge came since.
    epoch: Epoch,
    fill_scope: Option<Fingerprint>,
    scope: ScopeKey,
    directives: RequestDirectives,
}

/// What the first part of a fill decided.
enum Step {
    /// The fill's outcome.
    Done(Outcome),
    /// The shared tier holds an entry that is stale but servable (SPEC §12.1: answered by its
    /// age like any entry): answer it, and refresh it in the background with this request.
    Refresh {
        entry: Arc<Entry>,
        request: Request<Body>,
    },
}

/// One fill: ask the upstream (conditionally when there is a prior entry), judge, store.
async fn run(
    ctx: &FillContext,
    fill: Fill<'_>,
    mut prior: Option<Arc<Entry>>,
    request: Request<Body>,
) -> Step {
    let Fill {
        key,
        epoch,
        fill_scope,
        scope,
        directives,
    } = fill;
    // Fresh for the request that started the fill: its `no-cache` or `max-age` still holds.
    let fresh = |entry: &Entry| {
        let age = entry.age(Instant::now());
        ctx.policy.freshness(entry.kind(), age, &directives) == Freshness::Fresh
    };
    let found = |entry, tier| {
        Step::Done(Outcome::Entry {
            entry,
            state: CacheState::Hit,
            upstream_status: None,
            tier: Some(tier),
        })
    };
    // Someone may have stored a newer entry between this caller's lookup and now.
    if let Some(current) = ctx.tiers.get(key) {
        let newer = prior.as_ref().is_none_or(|p| p.id != current.id);
        if newer && fresh(&current) {
            return found(current, Tier::L1);
        }
    }
    // Fleet mode: what another replica stored answers by its age (SPEC §12.1) — fresh as a
    // HIT, stale as STALE while this fill goes on as its refresh; one too old to serve still
    // makes this fill a revalidation.
    if prior.is_none() && ctx.tiers.is_shared() {
        if let Some(shared) = ctx.tiers.get_shared(key, epoch).await {
            let age = shared.age(Instant::now());
            match ctx.policy.freshness(shared.kind(), age, &directives) {
                Freshness::Fresh => return found(shared, Tier::L2),
                Freshness::Stale if !shared.is_negative() => {
                    return Step::Refresh {
                        entry: shared,
                        request,
                    }
                }
                _ => prior = Some(shared).filter(|e| !e.is_negative()),
            }
        }
    }
    // One fill for the fleet (SPEC §12.2): the replica that takes the key's lease asks the
    // upstream; the others wait for what it stores, and ask themselves only if it stores
    // nothing usable (an error, an uncacheable answer) or Redis fails.
    let lease_scope = fill_scope.map_or_else(|| "-".to_owned(), |f| f.to_hex());
    let (mut lease, mut generation) = (None, None);
    if ctx.tiers.is_shared() {
        let hold = LEASE_HOLD.min(ctx.lease_ttl);
        match ctx.tiers.take_lease(key, &lease_scope, hold).await {
            Lease::Held(token, read) => (lease, generation) = (Some(token), Some(read)),
            Lease::Busy => {
                ctx.metrics.lease_wait();
                let until = Instant::now() + ctx.lease_ttl;
                let waited = ctx
                    .tiers
                    .wait_for_fill(key, &lease_scope, epoch, until, fresh)
                    .await;
                match waited {
                    Ok(Some(entry)) => {
                        return Step::Done(Outcome::Entry {
                            entry,
                            state: CacheState::Miss,
                            upstream_status: None,
                            tier: Some(Tier::L2),
                        })
                    }
                    // The holder stored nothing usable: this fill asks itself, under the
                    // generation it reads now (SPEC §12.3).
                    Ok(None) => generation = ctx.tiers.generation(key).await,
                    // Redis failed: no further call (SPEC §12.5), nothing stored there.
                    Err(()) => {}
                }
            }
            // Redis failed: no further call (SPEC §12.5); nothing is stored in the shared tier.
            Lease::Unavailable => {}
        }
    }
    let keeper = lease.as_ref().and_then(|token| {
        ctx.tiers
            .keep_lease(key, &lease_scope, token, ctx.lease_ttl)
    });
    let stamp = Stamp { epoch, generation };
    let outcome = fetch(ctx, key, stamp, prior, scope, request).await;
    if let Some(token) = lease {
        drop(keeper);
        ctx.tiers.release_lease(key, &lease_scope, &token).await;
    }
    Step::Done(outcome)
}
