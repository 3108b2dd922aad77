//! A programmable Partner Center stand-in for order paths.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::Full;
use tokio::task::JoinHandle;

use super::orders::{etag_for, order_json};

/// How [`OrderUpstream`] answers order requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The current version of the order (304 to a matching If-None-Match when `honor_inm`).
    Normal,
    /// This status with a small JSON error body.
    Status(u16),
    /// Closes the connection without answering.
    #[allow(dead_code)] // only cache.rs resets connections
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
    state: Arc<Mutex<OrderUpstreamState>>,
    hits: Arc<AtomicUsize>,
    inm_hits: Arc<AtomicUsize>,
    arrivals: Arc<tokio::sync::Notify>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    last_headers: Arc<Mutex<Option<HeaderMap>>>,
    /// Requests being answered now, and the most ever at once.
    concurrency: ConcurrencyCounter,
}

impl OrderUpstream {
    pub async fn start() -> OrderUpstream {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(OrderUpstreamState {
            mode: Mode::Normal,
            honor_inm: true,
            delay: Duration::ZERO,
            versions: HashMap::new(),
            extra_headers: Vec::new(),
        }));
        let hits = Arc::new(AtomicUsize::new(0));
        let inm_hits = Arc::new(AtomicUsize::new(0));
        let arrivals = Arc::new(tokio::sync::Notify::new());
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let last_headers: Arc<Mutex<Option<HeaderMap>>> = Arc::default();
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
                            // Orders, and subscriptions and customers in the same shape
                            // (an `id` and a versioned `attributes.etag`).
                            let (customer, order) = match parts.as_slice() {
                                ["", "v1", "customers", c, "orders" | "subscriptions", o] => {
                                    (c.to_string(), o.to_string())
                                }
                                ["", "v1", "customers", c] => (c.to_string(), c.to_string()),
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

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().expect("lock").mode = mode;
    }
}

// Knobs and readings each test file uses as it needs them, not all of them everywhere.
#[allow(dead_code)]
impl OrderUpstream {
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().expect("lock").delay = delay;
    }

    /// Requests received so far that carried an If-None-Match.
    pub fn inm_hits(&self) -> usize {
        self.inm_hits.load(Ordering::SeqCst)
    }

    /// The headers of the latest request.
    pub fn last_headers(&self) -> HeaderMap {
        self.last_headers
            .lock()
            .expect("lock")
            .clone()
            .expect("a request arrived")
    }

    /// The most requests the upstream was answering at the same time.
    pub fn max_concurrency(&self) -> usize {
        self.concurrency.1.load(Ordering::SeqCst)
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

type ConcurrencyCounter = Arc<(AtomicUsize, AtomicUsize)>;

/// Counts one request in a [`ConcurrencyCounter`] while it lives.
struct Concurrent(ConcurrencyCounter);

impl Concurrent {
    fn enter(counter: ConcurrencyCounter) -> Concurrent {
        let now = counter.0.fetch_add(1, Ordering::SeqCst) + 1;
        counter.1.fetch_max(now, Ordering::SeqCst);
        Concurrent(counter)
    }
}

impl Drop for Concurrent {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}
