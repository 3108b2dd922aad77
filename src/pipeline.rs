//! The life of one front request, start to finish.
//!
//! [`Gateway::handle`] is the outer handler: it never fails. It assigns the correlation IDs,
//! decides the route, asks the cache (synchronously: a hit is answered on the spot), hands
//! whatever must wait for the upstream to `Gateway::wait`, and ends every request in
//! `Gateway::finish`, which turns an error into the SPEC §7 answer and writes the one access
//! line of SPEC §9. A panic anywhere in a request's handling becomes that request's 500.

use std::future::{ready, Ready};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, Either};
use futures_util::FutureExt;
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::body::Body;
use crate::config::Config;
use crate::correlation::Correlation;
use crate::error::GatewayError;
use crate::fill::{FillContext, Fills};
use crate::forward;
use crate::key::{CredentialMemo, KeyMaker};
use crate::metrics::Metrics;
use crate::order::{self, CacheState, Lookup};
use crate::route::{self, Route};
use crate::shield::{Refusal, Shield};
use crate::store::Store;
use crate::upstream::{Upstream, UpstreamSetupError};

/// Process-wide state shared by every connection: one of each.
pub struct Gateway {
    pub config: Config,
    pub upstream: Arc<Upstream>,
    pub keys: KeyMaker,
    pub store: Arc<Store>,
    pub fills: Arc<Fills>,
    pub fill_context: FillContext,
    pub shield: Arc<Shield>,
    pub metrics: Arc<Metrics>,
    draining: AtomicBool,
}

/// The response of [`Gateway::handle`]: ready at once when memory answered, else boxed.
pub type Handling = Either<Ready<Response<Body>>, BoxFuture<'static, Response<Body>>>;

/// What a request carries from arrival to its access line.
struct Exchange {
    started: Instant,
    route: Route,
    method: Method,
    uri: Uri,
    correlation: Correlation,
}

/// A request that has to wait for the upstream.
enum Waiting {
    /// An order request for a fill (coalesced per key).
    Fill(order::Pending),
    /// An order request not eligible for the cache.
    Bypass(Request<Incoming>),
    /// Anything else Partner Center serves.
    Forward(Request<Incoming>),
}

/// What the handler learned that the access line reports.
#[derive(Debug, Default)]
pub struct Note {
    /// Status of the upstream response this request used, if one was received.
    pub upstream_status: Option<u16>,
    /// The `X-Cache` value sent, if any.
    pub cache: Option<CacheState>,
    /// Why the shield refused this request's upstream call, if it did.
    pub shield: Option<Refusal>,
}

impl Gateway {
    /// Builds the shared state; fails only on unusable TLS material.
    pub fn new(config: Config) -> Result<Arc<Gateway>, UpstreamSetupError> {
        let metrics = Arc::new(Metrics::new());
        let upstream = Arc::new(Upstream::new(&config.upstream, metrics.clone())?);
        let store = Arc::new(Store::new(&config.cache, metrics.clone()));
        let shield = Arc::new(Shield::new(&config.upstream, metrics.clone()));
        let fill_context = FillContext {
            store: store.clone(),
            upstream: upstream.clone(),
            shield: shield.clone(),
            config: Arc::new(config.cache.clone()),
            metrics: metrics.clone(),
        };
        Ok(Arc::new(Gateway {
            shield,
            metrics,
            keys: KeyMaker::new(config.cache.partition),
            config,
            upstream,
            store,
            fills: Arc::default(),
            fill_context,
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
        let exchange = Exchange {
            started: Instant::now(),
            route: route::classify(request.method(), request.uri()),
            method: request.method().clone(),
            uri: request.uri().clone(),
            correlation: Correlation::from_request(request.headers()),
        };
        let mut note = Note::default();
        let waiting = match exchange.route {
            Route::InvalidId(field) => Err(GatewayError::InvalidIdentifier(field)),
            Route::Forward => Ok(Waiting::Forward(request)),
            Route::Order(order) => {
                let (correlation, started) = (&exchange.correlation, exchange.started);
                let looked = contain_panic_now(|| {
                    order::lookup(self, request, order, started, correlation, memo, &mut note)
                });
                match looked {
                    Ok(Lookup::Answered(response)) => {
                        return Either::Left(ready(self.finish(&exchange, note, Ok(response))))
                    }
                    Ok(Lookup::Fetch(pending)) => Ok(Waiting::Fill(pending)),
                    Ok(Lookup::Bypass(request)) => Ok(Waiting::Bypass(request)),
                    Err(error) => Err(error),
                }
            }
        };
        match waiting {
            Ok(waiting) => Either::Right(Box::pin(self.clone().wait(waiting, exchange, note))),
            Err(error) => Either::Left(ready(self.finish(&exchange, note, Err(error)))),
        }
    }

    /// The part of a request that waits for the upstream, under the request's span.
    async fn wait(
        self: Arc<Self>,
        waiting: Waiting,
        exchange: Exchange,
        mut note: Note,
    ) -> Response<Body> {
        let correlation = &exchange.correlation;
        // A fill only waits for a shared outcome: its future is small. The forwarding ones
        // hold a whole upstream exchange and are boxed, so that a fill's future (moved into
        // its box on every miss) does not take their size.
        let work = async {
            match waiting {
                Waiting::Fill(pending) => {
                    order::fetch(&self, pending, correlation, &mut note).await
                }
                Waiting::Bypass(request) => {
                    Box::pin(order::bypass(&self, request, correlation, &mut note)).await
                }
                Waiting::Forward(request) => {
                    Box::pin(self.forward(request, false, correlation, &mut note)).await
                }
            }
        };
        let result = contain_panic(work.instrument(correlation.span())).await;
        self.finish(&exchange, note, result)
    }

    /// Every request ends here: an error becomes its SPEC §7 answer, then metrics and the
    /// access line.
    fn finish(
        &self,
        exchange: &Exchange,
        mut note: Note,
        result: Result<Response<Body>, GatewayError>,
    ) -> Response<Body> {
        let correlation = &exchange.correlation;
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                if matches!(error, GatewayError::Internal) {
                    let _span = correlation.span().entered();
                    tracing::error!("request handler panicked; answered 500");
                }
                note.cache = None;
                error.into_response(correlation)
            }
        };
        let elapsed = exchange.started.elapsed();
        self.metrics.request(
            matches!(exchange.route, Route::Forward),
            response.status().as_u16(),
            note.cache,
            elapsed,
        );
        access_log(exchange, &response, &note, elapsed);
        response
    }

    /// Sends a request upstream as it came and streams the answer back, through the shield
    /// (`order`: an order-by-ID request, which the cooldown applies to and a 429 opens one).
    /// A successful unsafe request on an order (or below it) drops that order's entries
    /// (RFC 9111 §4.4).
    pub async fn forward(
        &self,
        request: Request<Incoming>,
        order: bool,
        correlation: &Correlation,
        note: &mut Note,
    ) -> Result<Response<Body>, GatewayError> {
        let (parts, body) = request.into_parts();
        self.forward_parts(&parts, Body::from(body), order, correlation, note)
            .await
    }

    /// [`Gateway::forward`] for a request already taken apart.
    pub async fn forward_parts(
        &self,
        parts: &http::request::Parts,
        body: Body,
        order: bool,
        correlation: &Correlation,
        note: &mut Note,
    ) -> Result<Response<Body>, GatewayError> {
        // No connection memo on this path: one hash is small beside an upstream exchange.
        let scope = self.shield.scope_of(&self.keys, &parts.headers, None);
        let admission = self.shield.admit(scope, order).await.map_err(|refused| {
            note.shield = Some(refused.reason);
            refused.error
        })?;
        let upstream_request = forward::upstream_request(parts, body, correlation, &self.upstream)?;
        let response = self.upstream.send(upstream_request).await;
        drop(admission);
        let response = response?;
        note.upstream_status = Some(response.status().as_u16());
        if order && response.status() == http::StatusCode::TOO_MANY_REQUESTS {
            self.shield.open_cooldown(scope, response.headers());
        }
        if response.status().is_success() && !is_safe(&parts.method) {
            if let Some(order) = route::order_at_or_below(parts.uri.path()) {
                let purged = self.store.purge_order(order);
                tracing::debug!(purged, "order invalidated by a successful unsafe request");
            }
        }
        Ok(forward::client_response(response, correlation))
    }
}

/// Methods that cannot change the order (RFC 9110 §9.2.1).
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
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

/// The one access line of SPEC §9. Never the query string, `Authorization` or a body.
fn access_log(exchange: &Exchange, response: &Response<Body>, note: &Note, elapsed: Duration) {
    tracing::info!(
        target: "partner_gateway::access",
        method = exchange.method.as_str(),
        path = exchange.uri.path(),
        route = exchange.route.label(),
        status = response.status().as_u16(),
        cache = note.cache.map(CacheState::as_str),
        upstream_status = note.upstream_status,
        shield = note.shield.map(Refusal::as_str),
        latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        correlation_id = exchange.correlation.correlation_str(),
        request_id = exchange.correlation.request_str(),
        "request"
    );
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
