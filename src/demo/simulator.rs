//! A Partner Center stand-in, in process: for the demo, tests, benchmarks.
//!
//! It behaves like the real service where the gateway can tell: Order, Subscription and
//! Customer resources with a versioned `attributes.etag` (base64 of `{"id":…,"version":N}`),
//! writes that bump it (an order also changes the customer's subscriptions), a 404 in Partner
//! Center's error shape, 401 without a bearer token, `MS-RequestId`/`MS-CorrelationId` echoed,
//! and a per-credential request budget per minute answered with 429 + `Retry-After` — the
//! throttling the gateway exists to absorb. Latency and a failure rate can be dialled in.
//!
//! Paths, all under `/v1/customers/{c}`: `GET`/`PATCH` the customer itself; `GET`/`PUT`
//! `profiles/billing`; `GET`/`POST` `orders`; `GET`/`PATCH` `orders/{o}`; `GET`
//! `subscriptions`; `GET`/`PATCH` `subscriptions/{s}`.
//!
//! This file is the server: gates (auth, budget, failures), counters and routing. What a
//! request does to the data is in [`store`](crate::demo::store); the sample data and JSON
//! shapes are in [`catalog`] (orders) and
//! [`accounts`](crate::demo::accounts) (customers, subscriptions).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, IF_MATCH, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::Body;
use crate::demo::accounts::{sample_accounts, sample_paths};
pub use crate::demo::accounts::{SampleAccount, SampleSubscription};
use crate::demo::audit::{AuditLog, CONTINUATION};
use crate::demo::catalog::{self, error_json, throttled_json, Failure};
pub use crate::demo::counters::Counters;
use crate::demo::notify::Notifier;
use crate::demo::store::Store;
use crate::request::correlation::{Correlation, CORRELATION_ID, REQUEST_ID};

/// The prefix of changes made "in the portal": `PATCH /__portal/v1/customers/{c}/…` changes
/// the resource as the API would, without a token and without any call through a gateway.
pub const PORTAL: &str = "/__portal";

/// Dials of the simulator.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Added before every answer.
    pub latency: Duration,
    /// Requests per minute per credential before 429 (0 = unlimited). Partner Center allows
    /// about 500 per minute per tenant on orders.
    pub budget_per_minute: u32,
    /// Share of requests answered 503 (0.0–1.0).
    pub failure_rate: f64,
    /// How long an order placed through the simulator stays `pending` before it turns
    /// `completed` with a new etag and its subscriptions appear (SPEC §15.4); zero: at once.
    pub provisioning: Duration,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            latency: Duration::ZERO,
            budget_per_minute: 0,
            failure_rate: 0.0,
            provisioning: Duration::ZERO,
        }
    }
}

struct State {
    store: Store,
    windows: HashMap<Vec<u8>, (Instant, u32)>,
    audit: AuditLog,
    /// Where subscription changes are announced (see [`Simulator::notify_to`]).
    notifier: Option<Notifier>,
}

/// The running simulator.
pub struct Simulator {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    shared: Arc<Shared>,
}

impl Simulator {
    /// Binds `addr` and serves until [`Simulator::stop`] or drop.
    pub async fn start(addr: SocketAddr, knobs: Knobs) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let provisioning = knobs.provisioning;
        let shared = Arc::new(Shared {
            knobs,
            counters: counters.clone(),
            state: Mutex::new(State {
                store: Store::sample(provisioning),
                windows: HashMap::new(),
                audit: AuditLog::default(),
                notifier: None,
            }),
            noise: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
        });
        let shared_handle = shared.clone();
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
            loop {
                let accepted = tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let builder = builder.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.handle(request).await) }
                    });
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = stopped.wait_for(|stop| *stop) => {}
                    }
                });
            }
        });
        Ok(Simulator {
            addr,
            counters,
            stop,
            shared: shared_handle,
        })
    }

    /// The base URL to point a gateway at.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, announces every subscription change with a signed `subscription-updated`
    /// notification posted to `url` (SPEC §15.4); its certificate is [`Simulator::certificate`].
    /// Whether the URL could be used.
    pub fn notify_to(&self, url: &str) -> bool {
        let notifier = Notifier::new(url);
        let usable = notifier.is_some();
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .notifier = notifier;
        usable
    }

    /// The PEM certificate of the key the simulator signs notifications with, for a gateway's
    /// `webhooks.certificate_file`.
    pub fn certificate() -> &'static str {
        crate::demo::notify::CERTIFICATE
    }

    /// Stops accepting and closes connections.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// The sample data: (customer id, order ids).
    pub fn catalog() -> Vec<(String, Vec<String>)> {
        catalog::catalog()
    }

    /// The sample data per customer: its orders and subscriptions (with their offers), so a
    /// test can order more of an offer a customer already has.
    pub fn accounts() -> Vec<SampleAccount> {
        sample_accounts()
    }

    /// Every GET-by-ID path of the sample data (customers, orders, subscriptions), to print.
    pub fn paths() -> Vec<String> {
        sample_paths()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Shared {
    knobs: Knobs,
    counters: Arc<Counters>,
    state: Mutex<State>,
    noise: AtomicU64,
}

impl Shared {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        self.counters.requests.fetch_add(1, Ordering::SeqCst);
        let correlation = Correlation::from_request(request.headers());
        if !self.knobs.latency.is_zero() {
            tokio::time::sleep(self.knobs.latency).await;
        }
        let mut extra: Option<(http::HeaderName, HeaderValue)> = None;
        let (status, body) = match self.route(request, &mut extra).await {
            Ok(pair) | Err(pair) => pair,
        };
        let mut response = Response::new(Body::full(body.to_string()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert(&CORRELATION_ID, correlation.correlation_id);
        headers.insert(&REQUEST_ID, correlation.request_id);
        if let Some((name, value)) = extra {
            headers.insert(name, value);
        }
        response
    }

    async fn route(
        &self,
        request: Request<Incoming>,
        extra: &mut Option<(http::HeaderName, HeaderValue)>,
    ) -> Result<(StatusCode, Value), Failure> {
        // "In the portal": a change the partner's people make without any API call (no token,
        // no budget), seen only in the audit records.
        if let Some(path) = request.uri().path().strip_prefix(PORTAL) {
            let path = path.to_owned();
            return self.change(request, &path).await;
        }
        if request.uri().path() == "/v1/auditrecords" {
            return Ok(self.audit_page(&request));
        }
        let credential = request
            .headers()
            .get(AUTHORIZATION)
            .filter(|v| v.as_bytes().starts_with(b"Bearer ") && v.len() > 7)
            .map(|v| v.as_bytes().to_vec())
            .ok_or_else(|| {
                error_json(
                    StatusCode::UNAUTHORIZED,
                    401,
                    "Authentication failed: a bearer token is required",
                )
            })?;
        if let Some(retry) = self.spend(&credential) {
            self.counters.throttled.fetch_add(1, Ordering::SeqCst);
            *extra = Some((RETRY_AFTER, HeaderValue::from(retry)));
            return Err(throttled_json(retry));
        }
        if self.knobs.failure_rate > 0.0 && self.roll() < self.knobs.failure_rate {
            self.counters.failed.fetch_add(1, Ordering::SeqCst);
            return Err(error_json(
                StatusCode::SERVICE_UNAVAILABLE,
                503,
                "Simulated failure",
            ));
        }
        let path = request.uri().path().to_owned();
        self.change(request, &path).await
    }

    /// `GET /v1/auditrecords?startDate=…` (with `MS-ContinuationToken` for later pages).
    fn audit_page(&self, request: &Request<Incoming>) -> (StatusCode, Value) {
        let query = request.uri().query().unwrap_or_default();
        let start_text = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("startDate="))
            .unwrap_or_default();
        let start = humantime::parse_rfc3339_weak(start_text.trim_end_matches('Z'))
            .unwrap_or(std::time::UNIX_EPOCH);
        let seek = request
            .headers()
            .get(CONTINUATION)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State { store, audit, .. } = &mut *state;
        for (customer, order) in store.settle(Instant::now()) {
            audit.record(&customer, "order", &order);
        }
        (StatusCode::OK, audit.page(start, seek, start_text))
    }

    /// A request to `/v1/customers/{c}/…` at `path`, once let in; writes are audited.
    async fn change(
        &self,
        request: Request<Incoming>,
        path: &str,
    ) -> Result<(StatusCode, Value), Failure> {
        let method = request.method().clone();
        let if_match = request
            .headers()
            .get(IF_MATCH)
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let if_match = if_match.as_deref();
        let body = if matches!(method, Method::GET | Method::HEAD) {
            Bytes::new()
        } else {
            request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_else(|_| Bytes::new())
        };
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let ["v1", "customers", c, rest @ ..] = segments.as_slice() else {
            return Err(not_found());
        };
        let counted = match (&method, rest) {
            (&Method::GET, []) => Some(&self.counters.customer_gets),
            (&Method::GET, ["orders", _]) => Some(&self.counters.order_gets),
            (&Method::GET, ["subscriptions", _]) => Some(&self.counters.subscription_gets),
            _ => None,
        };
        if let Some(counter) = counted {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State {
            store,
            audit,
            notifier,
            ..
        } = &mut *state;
        let now = Instant::now();
        for (customer, order) in store.settle(now) {
            audit.record(&customer, "order", &order);
        }
        let write = !matches!(method, Method::GET | Method::HEAD);
        let kind = match rest {
            ["orders", ..] => "order",
            ["subscriptions", ..] => "subscription",
            _ => "customer",
        };
        let answer = match (method, rest) {
            (Method::GET, []) => store.customer(c),
            (Method::PATCH, []) => store.patch_customer(c, if_match, &json(&body)?),
            (Method::GET, ["profiles", "billing"]) => store.billing(c),
            (Method::PUT, ["profiles", "billing"]) => store.put_billing(c, if_match, &json(&body)?),
            (Method::GET, ["orders"]) => store.orders(c),
            (Method::POST, ["orders"]) => store.create_order(c, &json(&body)?, now),
            (Method::GET, ["orders", o]) => store.order(c, o),
            (Method::PATCH, ["orders", o]) => store.patch_order(c, o, if_match, &json(&body)?),
            (Method::GET, ["subscriptions"]) => store.subscriptions(c),
            (Method::GET, ["subscriptions", s]) => store.subscription(c, s),
            (Method::PATCH, ["subscriptions", s]) => {
                store.patch_subscription(c, s, if_match, &json(&body)?)
            }
            _ => Err(not_found()),
        };
        if let (true, Ok((_, resource))) = (write, &answer) {
            audit.record(c, kind, resource);
            if let (Some(notifier), ["subscriptions", s]) = (notifier.as_ref(), rest) {
                notifier.subscription_updated(c, s);
            }
        }
        answer
    }

    /// Spends one request of this credential's minute; `Some(seconds)` when none is left.
    fn spend(&self, credential: &[u8]) -> Option<u64> {
        let budget = self.knobs.budget_per_minute;
        if budget == 0 {
            return None;
        }
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let window = state.windows.entry(credential.to_vec()).or_insert((now, 0));
        if now.duration_since(window.0) >= Duration::from_secs(60) {
            *window = (now, 0);
        }
        if window.1 >= budget {
            let left = Duration::from_secs(60).saturating_sub(now.duration_since(window.0));
            return Some(left.as_secs().max(1));
        }
        window.1 += 1;
        None
    }

    /// A cheap pseudo-random number in [0, 1) (xorshift; quality is irrelevant here).
    fn roll(&self) -> f64 {
        let mut x = self.noise.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.noise.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The request body as JSON, or Partner Center's 400.
fn json(body: &Bytes) -> Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|_| {
        error_json(
            StatusCode::BAD_REQUEST,
            400,
            "The request body is not valid JSON",
        )
    })
}

/// Partner Center's 404 for a path it does not serve.
fn not_found() -> Failure {
    error_json(StatusCode::NOT_FOUND, 404, "Resource not found")
}
