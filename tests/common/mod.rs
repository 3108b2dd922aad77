//! Shared test harness: a real gateway on ephemeral loopback ports, and a small HTTP client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use partner_gateway::config::{Config, Sources};
use partner_gateway::front::pipeline::Gateway;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const CUSTOMER: &str = "3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f60";
pub const ORDER: &str = "d6595733-265f-4918-a62e-026e64bc8384";
pub const GUID_A: &str = "8a53b025-d5be-4d98-ab20-229d1813de76";
pub const GUID_B: &str = "0e5fc923-8e3c-4560-9100-ce7283c3e081";

/// A running gateway; dropping it does not stop it, call [`TestGateway::stop`].
pub struct TestGateway {
    pub front: SocketAddr,
    pub admin: SocketAddr,
    pub gateway: Arc<Gateway>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Config from the built-in defaults, ports 0, plus `overrides` as `section.key = value`.
pub fn config(upstream: &str, overrides: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = HashMap::new();
    let mut set = |key: &str, value: &str| {
        let name = format!(
            "PARTNER_GATEWAY__{}",
            key.replace('.', "__").to_ascii_uppercase()
        );
        env.insert(name, value.to_owned());
    };
    set("server.listen", "127.0.0.1:0");
    set("admin.listen", "127.0.0.1:0");
    set("upstream.base_url", upstream);
    set("server.shutdown_grace", "5s");
    for (k, v) in overrides {
        set(k, v);
    }
    Config::load(&Sources {
        env,
        ..Sources::default()
    })
    .expect("test config is valid")
}

impl TestGateway {
    /// Starts a gateway in this runtime.
    pub async fn start(config: Config) -> TestGateway {
        let bound = partner_gateway::front::server::bind(config)
            .await
            .expect("bind");
        let front = bound.front_addr();
        let admin = bound.admin_addr();
        let gateway = bound.gateway();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(async move {
            let _ = rx.await;
        }));
        TestGateway {
            front,
            admin,
            gateway,
            shutdown: Some(tx),
            task,
        }
    }

    /// Starts a gateway against `upstream` with overrides.
    pub async fn with(upstream: &str, overrides: &[(&str, &str)]) -> TestGateway {
        TestGateway::start(config(upstream, overrides)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.front, path)
    }

    /// The front URL of one of `CUSTOMER`'s orders.
    pub fn order_url(&self, order: &str) -> String {
        self.url(&order_path(CUSTOMER, order))
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Fires the shutdown trigger without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Fires the shutdown trigger and waits for the server to return (bounded).
    pub async fn stop(mut self) {
        self.trigger_shutdown();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("gateway stops in time")
            .expect("serve task did not panic");
    }
}

/// A received response, body collected.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: Version,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// An HTTP/1.1 client (or h2c with prior knowledge).
pub struct TestClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl TestClient {
    pub fn http1() -> TestClient {
        TestClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn h2c() -> TestClient {
        TestClient {
            client: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(Full::new(body.into())).expect("request");
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .expect("response in time")
            .expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        }
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, url, headers, Bytes::new()).await
    }
}

/// A distinct order id per use.
pub fn new_order() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The path of the sample order.
pub fn order_path(customer: &str, order: &str) -> String {
    format!("/v1/customers/{customer}/orders/{order}")
}

/// A minimal Order JSON as Partner Center returns it.
pub fn order_json(customer: &str, order: &str, version: u32) -> String {
    serde_json::json!({
        "id": order,
        "referenceCustomerId": customer,
        "billingCycle": "monthly",
        "currencyCode": "USD",
        "lineItems": [{"lineItemNumber": 0, "offerId": "031C9E47-4802-4248-838E-778FB1D2CC05", "quantity": 1}],
        "status": "completed",
        "creationDate": "2015-10-08T10:42:36.54-07:00",
        "attributes": {"etag": etag_for(order, version), "objectType": "Order"}
    })
    .to_string()
}

/// Partner Center's etag shape: base64 of {"id":…,"version":N} (here: a readable stand-in).
pub fn etag_for(order: &str, version: u32) -> String {
    format!("eyJpZCI6{order}-v{version}")
}

/// Waits until `check` holds, polling; panics after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An upstream that announces each request's arrival and answers only when released.
pub struct HeldUpstream {
    pub base_url: String,
    arrivals: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<()>>,
    release: Arc<tokio::sync::Semaphore>,
}

impl HeldUpstream {
    pub async fn start() -> HeldUpstream {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let gate = release.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        let gate = gate.clone();
                        async move {
                            let _ = tx.send(());
                            if let Ok(permit) = gate.acquire().await {
                                permit.forget();
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from("finished"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HeldUpstream {
            base_url: format!("http://{addr}"),
            arrivals: tokio::sync::Mutex::new(rx),
            release,
        }
    }

    /// Waits (bounded) until one more request has arrived.
    pub async fn arrived(&self) {
        let mut rx = self.arrivals.lock().await;
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a request reached the upstream")
            .expect("upstream running");
    }

    /// Lets one held request be answered.
    pub fn release(&self) {
        self.release.add_permits(1);
    }
}

/// How [`OrderUpstream`] answers order requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The current version of the order (304 to a matching If-None-Match when `honor_inm`).
    Normal,
    /// This status with a small JSON error body.
    Status(u16),
    /// Closes the connection without answering.
    Reset,
}

struct OrderUpstreamState {
    mode: Mode,
    honor_inm: bool,
    delay: Duration,
    versions: HashMap<String, u32>,
    extra_headers: Vec<(String, String)>,
}

/// A programmable Partner Center stand-in for order paths: counts requests (and concurrency),
/// bumps versions on demand, fails on demand, and can stop listening entirely.
pub struct OrderUpstream {
    pub base_url: String,
    state: Arc<std::sync::Mutex<OrderUpstreamState>>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    pub inm_hits: Arc<std::sync::atomic::AtomicUsize>,
    arrivals: Arc<tokio::sync::Notify>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    pub last_headers: Arc<std::sync::Mutex<Option<HeaderMap>>>,
    /// Requests being answered now, and the most ever at once.
    pub concurrency: ConcurrencyCounter,
}

impl OrderUpstream {
    pub async fn start() -> OrderUpstream {
        use hyper::service::service_fn;
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(std::sync::Mutex::new(OrderUpstreamState {
            mode: Mode::Normal,
            honor_inm: true,
            delay: Duration::ZERO,
            versions: HashMap::new(),
            extra_headers: Vec::new(),
        }));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let inm_hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let arrivals = Arc::new(tokio::sync::Notify::new());
        let tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let last_headers: Arc<std::sync::Mutex<Option<HeaderMap>>> = Arc::default();
        let concurrency: ConcurrencyCounter = Arc::default();
        let cc = concurrency.clone();
        let (s, h, ih, ar, t, lh) = (
            state.clone(),
            hits.clone(),
            inm_hits.clone(),
            arrivals.clone(),
            tasks.clone(),
            last_headers.clone(),
        );
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, h, ih, ar, lh) = (s.clone(), h.clone(), ih.clone(), ar.clone(), lh.clone());
                let cc = cc.clone();
                let conn = tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (s, h, ih, ar, lh) =
                            (s.clone(), h.clone(), ih.clone(), ar.clone(), lh.clone());
                        let cc = cc.clone();
                        async move {
                            let _leave = Concurrent::enter(cc);
                            h.fetch_add(1, Ordering::SeqCst);
                            *lh.lock().expect("lock") = Some(req.headers().clone());
                            ar.notify_waiters();
                            let (mode, honor, delay, extra) = {
                                let st = s.lock().expect("lock");
                                (st.mode, st.honor_inm, st.delay, st.extra_headers.clone())
                            };
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let parts: Vec<&str> = req.uri().path().split('/').collect();
                            let (customer, order) = match parts.as_slice() {
                                ["", "v1", "customers", c, "orders", o] => {
                                    (c.to_string(), o.to_string())
                                }
                                _ => (String::new(), String::new()),
                            };
                            let mut builder = hyper::Response::builder();
                            for (k, v) in &extra {
                                builder = builder.header(k.as_str(), v.as_str());
                            }
                            let response = match mode {
                                Mode::Reset => return Err(std::io::Error::other("reset")),
                                Mode::Status(code) => builder
                                    .status(code)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(format!(
                                        "{{\"code\":{code},\"description\":\"simulated\",\"data\":[],\"source\":\"PartnerFD\"}}"
                                    )))),
                                Mode::Normal => {
                                    let version = *s.lock().expect("lock").versions.get(&order).unwrap_or(&1);
                                    let etag = format!("\"{}\"", etag_for(&order, version));
                                    let inm = req.headers().get("if-none-match").and_then(|v| v.to_str().ok()).map(str::to_owned);
                                    if inm.is_some() {
                                        ih.fetch_add(1, Ordering::SeqCst);
                                    }
                                    if honor && inm.as_deref() == Some(etag.as_str()) {
                                        builder.status(304).body(Full::new(Bytes::new()))
                                    } else {
                                        builder
                                            .status(200)
                                            .header("content-type", "application/json; charset=utf-8")
                                            .header("x-cache", "upstream-said")
                                            .body(Full::new(Bytes::from(order_json(&customer, &order, version))))
                                    }
                                }
                            };
                            Ok::<_, std::io::Error>(response.expect("response"))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
                t.lock().expect("lock").push(conn);
            }
        });
        tasks.lock().expect("lock").push(acceptor);
        OrderUpstream {
            base_url: format!("http://{addr}"),
            state,
            hits,
            inm_hits,
            arrivals,
            tasks,
            last_headers,
            concurrency,
        }
    }

    /// The most requests the upstream was answering at the same time.
    pub fn max_concurrency(&self) -> usize {
        self.concurrency.1.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().expect("lock").mode = mode;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().expect("lock").delay = delay;
    }

    pub fn honor_if_none_match(&self, honor: bool) {
        self.state.lock().expect("lock").honor_inm = honor;
    }

    pub fn add_header(&self, name: &str, value: &str) {
        self.state
            .lock()
            .expect("lock")
            .extra_headers
            .push((name.to_owned(), value.to_owned()));
    }

    /// Bumps an order's version (its etag changes).
    pub fn bump(&self, order: &str) {
        *self
            .state
            .lock()
            .expect("lock")
            .versions
            .entry(order.to_owned())
            .or_insert(1) += 1;
    }

    /// Waits (bounded) until the hit count reaches `n`.
    pub async fn wait_hits(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.arrivals.notified();
            if self.hits() >= n {
                return;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "upstream saw {} requests, wanted {n}",
                self.hits()
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), notified).await;
        }
    }

    /// Stops listening and drops every open connection: connecting is refused from now on.
    pub async fn stop(&self) {
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().expect("lock").drain(..).collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

type ConcurrencyCounter = Arc<(
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicUsize,
)>;

/// Counts one request in a [`ConcurrencyCounter`] while it lives.
struct Concurrent(ConcurrencyCounter);

impl Concurrent {
    fn enter(counter: ConcurrencyCounter) -> Concurrent {
        use std::sync::atomic::Ordering;
        let now = counter.0.fetch_add(1, Ordering::SeqCst) + 1;
        counter.1.fetch_max(now, Ordering::SeqCst);
        Concurrent(counter)
    }
}

impl Drop for Concurrent {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// GETs every URL at once (one task each) with the same headers; replies in URL order.
pub async fn concurrent_gets(urls: Vec<String>, headers: &[(&str, &str)]) -> Vec<Reply> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let headers = headers.clone();
            tokio::spawn(async move {
                let pairs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                TestClient::http1().get(&url, &pairs).await
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(tasks.len());
    for task in tasks {
        replies.push(task.await.expect("client task"));
    }
    replies
}
