//! A Partner Center stand-in that behaves like a real service under races: a GET reads the
//! order's version when it arrives and answers a moment later; a write applies when it arrives
//! and answers a moment later. Optionally answers in a content coding.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Full};

use super::orders::{etag_for, order_json};

/// Which coding GET answers come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // each test file uses some
pub enum Coding {
    /// Always identity.
    Identity,
    /// gzip when the request's Accept-Encoding names gzip (as a real server does).
    HonourGzip,
    /// gzip whatever the request accepts.
    AlwaysGzip,
    /// `br` (not really compressed) whatever the request accepts.
    AlwaysBr,
}

struct State {
    versions: HashMap<String, u32>,
    /// A top-level `status` other than the fixture's, per order.
    statuses: HashMap<String, String>,
    /// Answer every request with this status instead (an upstream that fails).
    failing: Option<u16>,
    read_delay: Duration,
    write_delay: Duration,
    coding: Coding,
    accept_encodings: Vec<Option<String>>,
}

/// Counts and a wake-up for each kind of request.
#[derive(Default)]
struct Counters {
    gets: AtomicUsize,
    writes: AtomicUsize,
    arrived: tokio::sync::Notify,
}

/// The stand-in; it stops with the test's runtime.
pub struct RacingUpstream {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    counters: Arc<Counters>,
}

#[allow(dead_code)] // each test file uses some
impl RacingUpstream {
    pub async fn start() -> RacingUpstream {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            versions: HashMap::new(),
            statuses: HashMap::new(),
            failing: None,
            read_delay: Duration::ZERO,
            write_delay: Duration::ZERO,
            coding: Coding::Identity,
            accept_encodings: Vec::new(),
        }));
        let counters: Arc<Counters> = Arc::default();
        let (st, co) = (state.clone(), counters.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (st, co) = (st.clone(), co.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (st, co) = (st.clone(), co.clone());
                        async move { Ok::<_, std::convert::Infallible>(answer(req, &st, &co).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        RacingUpstream {
            base_url: format!("http://{addr}"),
            state,
            counters,
        }
    }

    pub fn set_read_delay(&self, delay: Duration) {
        self.state.lock().expect("lock").read_delay = delay;
    }

    pub fn set_write_delay(&self, delay: Duration) {
        self.state.lock().expect("lock").write_delay = delay;
    }

    pub fn set_coding(&self, coding: Coding) {
        self.state.lock().expect("lock").coding = coding;
    }

    /// Gives `order` this top-level `status` from now on (its version unchanged).
    pub fn set_status(&self, order: &str, status: &str) {
        let mut st = self.state.lock().expect("lock");
        st.statuses.insert(order.to_owned(), status.to_owned());
    }

    /// Partner Center finishes provisioning `order` on its own: `completed`, a new version.
    pub fn complete(&self, order: &str) {
        let mut st = self.state.lock().expect("lock");
        st.statuses.insert(order.to_owned(), "completed".to_owned());
        *st.versions.entry(order.to_owned()).or_insert(1) += 1;
    }

    /// Answers everything with `status` from now on (`None`: normal again).
    pub fn fail_with(&self, status: Option<u16>) {
        self.state.lock().expect("lock").failing = status;
    }

    /// GETs received so far.
    pub fn gets(&self) -> usize {
        self.counters.gets.load(Ordering::SeqCst)
    }

    /// Writes received (and applied) so far.
    pub fn writes(&self) -> usize {
        self.counters.writes.load(Ordering::SeqCst)
    }

    /// The `Accept-Encoding` of every GET received, in order.
    pub fn accept_encodings(&self) -> Vec<Option<String>> {
        self.state.lock().expect("lock").accept_encodings.clone()
    }

    /// Waits (at most 10 s) until `gets` GETs and `writes` writes have arrived.
    pub async fn wait_for(&self, gets: usize, writes: usize) {
        let reached = async {
            loop {
                let notified = self.counters.arrived.notified();
                if self.gets() >= gets && self.writes() >= writes {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), reached)
            .await
            .unwrap_or_else(|_| panic!("{gets} GETs and {writes} writes did not arrive"));
    }
}

/// Order paths only: `/v1/customers/{c}/orders/{o}` (and below, for writes).
async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    counters: &Counters,
) -> hyper::Response<Full<Bytes>> {
    let parts: Vec<String> = req.uri().path().split('/').map(str::to_owned).collect();
    let (customer, order) = match parts.as_slice() {
        [_, v1, customers, c, orders, o, ..]
            if v1 == "v1" && customers == "customers" && orders == "orders" =>
        {
            (c.clone(), o.clone())
        }
        _ => return status(404),
    };
    let write = req.method() != Method::GET && req.method() != Method::HEAD;
    // Read (or apply) on arrival, answer after the delay.
    let (version, delay, coding, status_word, failing) = {
        let mut st = state.lock().expect("lock");
        if write {
            *st.versions.entry(order.clone()).or_insert(1) += 1;
        } else {
            let accept = header(req.headers(), "accept-encoding");
            st.accept_encodings.push(accept);
        }
        let version = *st.versions.get(&order).unwrap_or(&1);
        let delay = if write { st.write_delay } else { st.read_delay };
        let status_word = st.statuses.get(&order).cloned();
        (version, delay, st.coding, status_word, st.failing)
    };
    let counter = if write {
        &counters.writes
    } else {
        &counters.gets
    };
    counter.fetch_add(1, Ordering::SeqCst);
    counters.arrived.notify_waiters();
    let accepts_gzip = header(req.headers(), "accept-encoding").is_some_and(|a| a.contains("gzip"));
    let _ = req.into_body().collect().await;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(code) = failing {
        return status(code);
    }
    let mut body = order_json(&customer, &order, version);
    if let Some(word) = status_word {
        let mut json: serde_json::Value = serde_json::from_str(&body).expect("fixture");
        json["status"] = serde_json::Value::String(word);
        body = json.to_string();
    }
    let builder = hyper::Response::builder()
        .status(200)
        .header("content-type", "application/json; charset=utf-8")
        .header("etag", format!("\"{}\"", etag_for(&order, version)));
    let coded = match coding {
        Coding::HonourGzip if accepts_gzip && !write => Some("gzip"),
        Coding::AlwaysGzip if !write => Some("gzip"),
        Coding::AlwaysBr if !write => Some("br"),
        _ => None,
    };
    let response = match coded {
        Some("gzip") => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(body.as_bytes()).expect("gzip");
            let zipped = encoder.finish().expect("gzip");
            builder
                .header("content-encoding", "gzip")
                .body(Full::new(Bytes::from(zipped)))
        }
        Some(other) => builder
            .header("content-encoding", other)
            .body(Full::new(Bytes::from(body))),
        None => builder.body(Full::new(Bytes::from(body))),
    };
    response.expect("response")
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn status(code: u16) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()))
        .expect("response")
}
