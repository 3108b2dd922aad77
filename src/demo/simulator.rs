//! A Partner Center stand-in for the order API, in process: for the demo, tests, benchmarks.
//!
//! It behaves like the real service where the gateway can tell: Order resources with a
//! versioned `attributes.etag` (base64 of `{"id":…,"version":N}`), a 404 in Partner Center's
//! error shape, 401 without a bearer token, `MS-RequestId`/`MS-CorrelationId` echoed, and a
//! per-credential request budget per minute answered with 429 + `Retry-After` — the throttling
//! the gateway exists to absorb. Latency and a failure rate can be dialled in.
//!
//! This file is the server and its request handling; the sample orders and the JSON shapes of
//! the answers are in [`catalog`](crate::demo::catalog).

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
use crate::demo::catalog::{
    self, collection_json, error_json, etag, find, find_mut, order_json, sample_orders,
    throttled_json, Failure, Order,
};
use crate::front::correlation::{Correlation, CORRELATION_ID, REQUEST_ID};

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
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            latency: Duration::ZERO,
            budget_per_minute: 0,
            failure_rate: 0.0,
        }
    }
}

/// What the simulator has seen; read by the demo and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Every request received.
    pub requests: AtomicU64,
    /// `GET` of one order.
    pub order_gets: AtomicU64,
    /// Answered 429 for the budget.
    pub throttled: AtomicU64,
    /// Answered 503 by the failure rate.
    pub failed: AtomicU64,
}

impl Counters {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        Self::get(&self.requests)
    }

    /// Order-by-ID GETs received so far.
    pub fn order_gets(&self) -> u64 {
        Self::get(&self.order_gets)
    }

    /// 429s sent so far.
    pub fn throttled(&self) -> u64 {
        Self::get(&self.throttled)
    }
}

struct State {
    orders: Vec<Order>,
    windows: HashMap<Vec<u8>, (Instant, u32)>,
}

/// The running simulator.
pub struct Simulator {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    stop: watch::Sender<bool>,
}

impl Simulator {
    /// Binds `addr` and serves until [`Simulator::stop`] or drop.
    pub async fn start(addr: SocketAddr, knobs: Knobs) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            knobs,
            counters: counters.clone(),
            state: Mutex::new(State {
                orders: sample_orders(),
                windows: HashMap::new(),
            }),
            base: format!("http://{addr}"),
            noise: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
        });
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
        })
    }

    /// The base URL to point a gateway at.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and closes connections.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// The sample data: (customer id, order ids).
    pub fn catalog() -> Vec<(String, Vec<String>)> {
        catalog::catalog()
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
    base: String,
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
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.clone(), segments.as_slice()) {
            (Method::GET, ["v1", "customers", c, "orders", o]) => {
                self.counters.order_gets.fetch_add(1, Ordering::SeqCst);
                let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let order = find(&state.orders, c, o)?;
                Ok((StatusCode::OK, order_json(order, &self.base)))
            }
            (Method::GET, ["v1", "customers", c, "orders"]) => {
                let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let items: Vec<Value> = state
                    .orders
                    .iter()
                    .filter(|o| o.customer.eq_ignore_ascii_case(c))
                    .map(|o| order_json(o, &self.base))
                    .collect();
                if items.is_empty() {
                    return Err(error_json(
                        StatusCode::NOT_FOUND,
                        600_001,
                        "Customer not found",
                    ));
                }
                Ok((StatusCode::OK, collection_json(c, items)))
            }
            (Method::PATCH, ["v1", "customers", c, "orders", o]) => {
                let if_match = request.headers().get(IF_MATCH).cloned();
                let bytes = request
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_else(|_| Bytes::new());
                let patch: Value = serde_json::from_slice(&bytes).map_err(|_| {
                    error_json(
                        StatusCode::BAD_REQUEST,
                        400,
                        "The request body is not valid JSON",
                    )
                })?;
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let order = find_mut(&mut state.orders, c, o)?;
                if let Some(expected) = if_match {
                    let current = etag(order);
                    let given = expected.to_str().unwrap_or("").trim_matches('"');
                    if given != current && given != "*" {
                        return Err(error_json(
                            StatusCode::PRECONDITION_FAILED,
                            412,
                            "The order has changed",
                        ));
                    }
                }
                if let Some(status) = patch.get("status").and_then(Value::as_str) {
                    order.status = status.to_owned();
                }
                if let Some(item) = patch.pointer("/lineItems/0") {
                    if let Some(q) = item.get("quantity").and_then(Value::as_u64) {
                        order.quantity = q;
                    }
                    if let Some(name) = item.get("friendlyName").and_then(Value::as_str) {
                        order.friendly_name = name.to_owned();
                    }
                }
                order.version += 1;
                Ok((StatusCode::OK, order_json(order, &self.base)))
            }
            _ => Err(error_json(StatusCode::NOT_FOUND, 404, "Resource not found")),
        }
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
