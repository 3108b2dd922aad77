//! The life of one front request, start to finish.
//!
//! [`Gateway::handle`] is the outer handler: it never fails. It assigns the correlation IDs,
//! decides the route, fingerprints the caller once, asks the cache (synchronously: a hit is
//! answered on the spot), hands whatever must wait for the upstream to `Gateway::wait`, and
//! ends every request in `Gateway::finish`, which turns an error into the SPEC §7 answer and
//! writes the one access line of SPEC §9. A panic anywhere in a request's handling becomes
//! that request's 500.

use std::future::{ready, Ready};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{BoxFuture, Either};
use futures_util::FutureExt;
use http::{Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::body::{Body, Intake};
use crate::cache::lookup::{self, Lookup, OrderCache, Pending};
use crate::cache::policy::Policy;
use crate::cache::shared::SharedTier;
use crate::cache::tier::Tiers;
use crate::changes::audit::Follower;
use crate::changes::invalidate::{Cause, Invalidator};
use crate::changes::webhook::Webhooks;
use crate::config::Config;
use crate::error::GatewayError;
use crate::fleet::budget::FleetBudget;
use crate::fleet::bus::Bus;
use crate::fleet::replica::Replica;
use crate::front::record::{self, ClientLeft, Exchanged, Unfinished, CLIENT_LEFT};
use crate::observe::metrics::Metrics;
use crate::outcome::{CacheState, Note};
use crate::request::correlation::Correlation;
use crate::request::credential::{CredentialMemo, Fingerprint, Fingerprinter};
use crate::request::route::{self, Route};
use crate::request::target;
use crate::upstream::client::UpstreamSetupError;
use crate::upstream::exchange::{Exchange, Purpose};

/// Process-wide state shared by every connection: one of each.
pub struct Gateway {
    /// The validated configuration it runs with.
    pub config: Config,
    /// The cache's tiers (stats and purges go here).
    pub tiers: Arc<Tiers>,
    /// The order cache: lookup and fills.
    pub cache: OrderCache,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// This replica's membership of its fleet (fleet mode only).
    pub fleet: Option<Replica>,
    /// The fleet's invalidation channel (fleet mode only).
    pub bus: Option<Arc<Bus>>,
    /// The one invalidation path: writes, admin purges, the fleet's (SPEC §4.4).
    pub changes: Invalidator,
    /// Partner Center's event notifications on `webhooks.path` (SPEC §15.2), when on.
    webhooks: Option<Webhooks>,
    /// The audit-record follower (SPEC §15.3), when on; started with the listeners.
    pub audit: Option<Arc<Follower>>,
    exchange: Arc<Exchange>,
    intake: Intake,
    fingerprints: Fingerprinter,
    draining: AtomicBool,
}

/// The response of [`Gateway::handle`]: ready at once when memory answered, else boxed.
pub type Handling = Either<Ready<Response<Body>>, BoxFuture<'static, Response<Body>>>;

/// A request that has to wait for the upstream.
enum Waiting {
    /// An order request for a fill (coalesced per key).
    Fill(Pending),
    /// An order request not eligible for the cache.
    Bypass(Request<Incoming>, Option<Fingerprint>),
    /// Anything else Partner Center serves.
    Forward(Request<Incoming>, Option<Fingerprint>),
    /// An event notification on `webhooks.path`.
    Webhook(Request<Incoming>),
}

impl Gateway {
    /// Builds the shared state; fails only on unusable TLS material.
    pub fn new(config: Config) -> Result<Arc<Gateway>, UpstreamSetupError> {
        let metrics = Arc::new(Metrics::new());
        let exchange = Arc::new(Exchange::new(&config.upstream, metrics.clone())?);
        let policy = Policy::new(&config.cache);
        let fleet = config
            .fleet
            .enabled()
            .then(|| Replica::new(&config.fleet, metrics.clone()));
        let shared = fleet.as_ref().map(|replica| {
            SharedTier::new(replica.link(), &config.fleet.name, policy, metrics.clone())
        });
        let tiers = Arc::new(Tiers::new(
            config.cache.max_bytes,
            &policy,
            metrics.clone(),
            shared,
        ));
        let bus = fleet.as_ref().map(|replica| {
            let (link, members, name) = (replica.link(), replica.members(), &config.fleet.name);
            // One budget and one cooldown for the fleet (SPEC §12.4).
            let budget = FleetBudget::new(link.clone(), members.clone(), name, &config.upstream);
            exchange.shield().share_with(Arc::new(budget));
            let wait = config.fleet.invalidation_wait;
            Arc::new(Bus::new(link, members, name, wait, metrics.clone()))
        });
        let changes = Invalidator::new(tiers.clone(), bus.clone());
        if let Some(replica) = &fleet {
            changes.join_fleet(replica);
        }
        let resources = config.cache.resources;
        let webhooks = Webhooks::new(
            &config.webhooks,
            Intake::new(&config.server),
            &config.upstream,
            resources,
            changes.clone(),
        )?;
        let fleet_link = fleet
            .as_ref()
            .map(|replica| (replica.link(), config.fleet.name.as_str()));
        let audit = Follower::new(
            &config.audit,
            &config.upstream,
            resources,
            changes.clone(),
            metrics.clone(),
            fleet_link,
        )?
        .map(Arc::new);
        let cache = OrderCache::new(
            &config.cache,
            tiers.clone(),
            exchange.clone(),
            metrics.clone(),
        );
        // Replicas of one fleet must hash a credential alike (SPEC §12.1).
        let fingerprints = match config.fleet.partition_secret.as_str() {
            "" => Fingerprinter::new(),
            secret => Fingerprinter::with_secret(secret.as_bytes()),
        };
        Ok(Arc::new(Gateway {
            intake: Intake::new(&config.server),
            config,
            tiers,
            cache,
            metrics,
            fleet,
            bus,
            changes,
            webhooks,
            audit,
            exchange,
            fingerprints,
            draining: AtomicBool::new(false),
        }))
    }

    /// True once shutdown began: `/readyz` answers 503 so load balancers stop sending.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks the start of the drain.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The outer handler: always produces a response, and logs it once. What the cache can
    /// answer from memory is answered here, synchronously, and the returned future is already
    /// complete; only work that waits for the upstream becomes a (boxed) future.
    /// `memo` belongs to the client connection the request came on.
    pub fn handle(self: &Arc<Self>, request: Request<Incoming>, memo: &CredentialMemo) -> Handling {
        let exchanged = Exchanged {
            started: Instant::now(),
            route: match &self.webhooks {
                Some(_) if request.uri().path() == self.config.webhooks.path => Route::Webhook,
                _ => route::classify(request.method(), request.uri(), self.config.cache.resources),
            },
            method: request.method().clone(),
            uri: request.uri().clone(),
            correlation: Correlation::from_request(request.headers()),
        };
        let mut note = Note::default();
        let waiting = match exchanged.route {
            Route::InvalidId(_, field) => Err(GatewayError::InvalidIdentifier(field)),
            Route::InvalidPath => Err(GatewayError::InvalidPath),
            Route::MethodNotAllowed => {
                Err(GatewayError::MethodNotAllowed(request.method().clone()))
            }
            Route::Webhook => Ok(Waiting::Webhook(request)),
            Route::Forward => {
                let needed = self.exchange.shield().needs_fingerprint();
                let caller = self.caller(&request, memo, needed);
                Ok(Waiting::Forward(request, caller))
            }
            Route::Cached(item) => {
                // Cached routes always use it: the partition, or the fill scope (SPEC §4.2).
                let caller = self.caller(&request, memo, true);
                let (correlation, started) = (&exchanged.correlation, exchanged.started);
                let looked = contain_panic_now(|| {
                    self.cache
                        .lookup(request, item, started, correlation, caller, &mut note)
                });
                match looked {
                    Ok(Lookup::Answered(response)) => {
                        return Either::Left(ready(self.finish(
                            &exchanged,
                            note,
                            Ok(response),
                            false,
                        )))
                    }
                    Ok(Lookup::Fetch(pending)) => Ok(Waiting::Fill(pending)),
                    Ok(Lookup::Bypass(request)) => Ok(Waiting::Bypass(request, caller)),
                    Err(error) => Err(error),
                }
            }
        };
        match waiting {
            Ok(Waiting::Forward(request, caller)) if !request.method().is_safe() => Either::Right(
                Box::pin(self.clone().write(request, caller, exchanged, note)),
            ),
            Ok(waiting) => {
                Either::Right(Box::pin(self.clone().wait(waiting, exchanged, note, None)))
            }
            Err(error) => Either::Left(ready(self.finish(&exchanged, note, Err(error), false))),
        }
    }

    /// A write runs in a task of its own, so that a client hanging up cannot cut its upstream
    /// exchange or its invalidation short (SPEC §4.4): the upstream applies the write all the
    /// same. The access line is written when the task ends, with status 499 if the client left.
    async fn write(
        self: Arc<Self>,
        request: Request<Incoming>,
        caller: Option<Fingerprint>,
        exchanged: Exchanged,
        note: Note,
    ) -> Response<Body> {
        let correlation = exchanged.correlation.clone();
        let left = Arc::new(AtomicBool::new(false));
        let waiting = Waiting::Forward(request, caller);
        let task = tokio::spawn(self.wait(waiting, exchanged, note, Some(left.clone())));
        // Dropped with this future: when the client hangs up, or after the task has ended.
        let _leaving = ClientLeft(left);
        task.await
            .unwrap_or_else(|_| GatewayError::Internal.into_response(&correlation))
    }

    /// The caller's fingerprint, computed once per request and only when a rule needs it.
    fn caller(
        &self,
        request: &Request<Incoming>,
        memo: &CredentialMemo,
        needed: bool,
    ) -> Option<Fingerprint> {
        needed
            .then(|| self.fingerprints.caller(request.headers(), Some(memo)))
            .flatten()
    }

    /// The part of a request that waits for the upstream, under the request's span. `left`
    /// says whether the client hung up, for a request whose work runs in a task of its own;
    /// without one, a client that hangs up drops this future, and the request's access line
    /// (status 499) is written then.
    async fn wait(
        self: Arc<Self>,
        waiting: Waiting,
        exchanged: Exchanged,
        mut note: Note,
        left: Option<Arc<AtomicBool>>,
    ) -> Response<Body> {
        let mut unfinished = Unfinished {
            metrics: &self.metrics,
            exchanged: &exchanged,
            armed: left.is_none(),
        };
        let correlation = &exchanged.correlation;
        // A fill only waits for a shared outcome: its future is small. The forwarding ones
        // hold a whole upstream exchange and are boxed, so that a fill's future (moved into
        // its box on every miss) does not take their size.
        let work = async {
            match waiting {
                Waiting::Fill(pending) => self.cache.fetch(pending, correlation, &mut note).await,
                Waiting::Bypass(request, caller) => {
                    let sent =
                        self.forward(request, caller, Purpose::Cached, correlation, &mut note);
                    let response = Box::pin(sent).await?;
                    Ok(lookup::marked(response, CacheState::Bypass, &mut note))
                }
                Waiting::Forward(request, caller) => {
                    let sent =
                        self.forward(request, caller, Purpose::Forward, correlation, &mut note);
                    Box::pin(sent).await
                }
                Waiting::Webhook(request) => match &self.webhooks {
                    Some(webhooks) => {
                        let taken = webhooks.handle(request, correlation, &self.metrics);
                        Box::pin(taken).await
                    }
                    None => Err(GatewayError::Internal),
                },
            }
        };
        let result = contain_panic(work.instrument(correlation.span())).await;
        unfinished.armed = false;
        let left = left.is_some_and(|left| left.load(Ordering::Acquire));
        self.finish(&exchanged, note, result, left)
    }

    /// Every request ends here: an error becomes its SPEC §7 answer, then metrics and the
    /// access line — with status 499 when the client `left` before the answer.
    fn finish(
        &self,
        exchanged: &Exchanged,
        mut note: Note,
        result: Result<Response<Body>, GatewayError>,
        left: bool,
    ) -> Response<Body> {
        let correlation = &exchanged.correlation;
        let (response, error) = match result {
            Ok(response) => (response, None),
            Err(error) => {
                if matches!(error, GatewayError::Internal) {
                    let _span = correlation.span().entered();
                    tracing::error!("request handler panicked; answered 500");
                }
                note.cache = None;
                // The detail stays in the log; the client's description names none (SPEC §7).
                let detail = error.to_string();
                (error.into_response(correlation), Some(detail))
            }
        };
        let status = match left {
            true => CLIENT_LEFT,
            false => response.status().as_u16(),
        };
        record::account(&self.metrics, exchanged, &note, status, error.as_deref());
        response
    }

    /// Sends a request upstream as it came and streams the answer back, its body under the
    /// limits of SPEC §14 ([`Intake`]). A successful unsafe request drops every entry it
    /// changed (RFC 9111 §4.4; which ones is the resource table's to say, SPEC §13).
    async fn forward(
        &self,
        request: Request<Incoming>,
        caller: Option<Fingerprint>,
        purpose: Purpose,
        correlation: &Correlation,
        note: &mut Note,
    ) -> Result<Response<Body>, GatewayError> {
        let (parts, body) = request.into_parts();
        let body = self.intake.take(body).await?;
        let scope = self.exchange.shield().scope_of(caller);
        let sent = self
            .exchange
            .forward(&parts, body, scope, purpose, correlation, note)
            .await;
        let changed_upstream = match &sent {
            Ok(response) => response.status().is_success(),
            Err(error) => error.outcome_unknown(),
        };
        if changed_upstream && !parts.method.is_safe() {
            let changed = target::changed_by_write(parts.uri.path(), self.config.cache.resources);
            // Every live replica drops them before the write is answered (SPEC §12.3).
            self.changes.run(changed, Cause::Write).await;
        }
        sent
    }
}

/// Runs a request's inner handler so that a panic in it becomes this request's 500 and
/// nothing more: the connection, its other streams and the process go on.
async fn contain_panic<F>(inner: F) -> Result<Response<Body>, GatewayError>
where
    F: std::future::Future<Output = Result<Response<Body>, GatewayError>>,
{
    AssertUnwindSafe(inner)
        .catch_unwind()
        .await
        .unwrap_or(Err(GatewayError::Internal))
}

/// [`contain_panic`] for the synchronous part of a request (the cache lookup).
fn contain_panic_now<T>(
    inner: impl FnOnce() -> Result<T, GatewayError>,
) -> Result<T, GatewayError> {
    std::panic::catch_unwind(AssertUnwindSafe(inner)).unwrap_or(Err(GatewayError::Internal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_becomes_a_500_and_the_next_request_is_served() {
        let panicking = async {
            if std::hint::black_box(true) {
                panic!("injected");
            }
            Ok(Response::new(Body::empty()))
        };
        let result = contain_panic(panicking).await;
        assert!(matches!(result, Err(GatewayError::Internal)));
        let fine = contain_panic(async { Ok(Response::new(Body::full("ok"))) }).await;
        assert!(fine.is_ok());
        // The same for the synchronous lookup.
        let panicking = contain_panic_now(|| -> Result<(), GatewayError> {
            if std::hint::black_box(true) {
                panic!("injected");
            }
            Ok(())
        });
        assert!(matches!(panicking, Err(GatewayError::Internal)));
        assert!(matches!(contain_panic_now(|| Ok(7)), Ok(7)));
    }
}
