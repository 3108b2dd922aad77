//! Write-then-read races (issue 21, `benches/races.sh`): how often a read sent after a write's
//! answer gets the older version, with fills in flight as pollers cause them.
//!
//! The program hosts its own Partner Center stand-in, which behaves as a real service under
//! races: a GET reads the order's version when it arrives and answers 50–200 ms later; a PATCH
//! applies when it arrives and answers a few ms later. It starts the gateways itself (the
//! binary given, one or several replicas; with `--redis` they form a fleet), then runs races,
//! many at once, each on its own order:
//!
//! 1. a GET through replica `i` starts a fill (the stand-in has read version 1);
//! 2. once the stand-in has that GET, a PATCH through replica `i+1` (version 2), answered 200;
//! 3. after that answer, a GET through replica `i` again (even races: the replica whose fill is
//!    in flight) or `i+2` (odd races) — stale if it is not version 2.
//!
//! It prints one line of `key=value` figures. Every gateway it started is stopped at the end.
//!
//! `bench-races --gateway-bin target/release/partner-gateway --replicas 3 --redis redis://…
//!   --count 10000 --concurrency 64`

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

use common::{arg, start_gateway, Gateway, CUSTOMER};

/// One order as the stand-in holds it.
#[derive(Default)]
struct Order {
    version: u32,
    gets: u32,
}

/// The stand-in's state: orders, and a wake-up for each GET's arrival.
#[derive(Default)]
struct Upstream {
    orders: Mutex<HashMap<String, Order>>,
    arrived: Notify,
}

impl Upstream {
    fn gets(&self, order: &str) -> u32 {
        let orders = self.orders.lock().expect("lock");
        orders.get(order).map_or(0, |o| o.gets)
    }
}

fn body(order: &str, version: u32) -> String {
    format!(
        r#"{{"id":"{order}","referenceCustomerId":"{CUSTOMER}","status":"completed","lineItems":[],"attributes":{{"etag":"v{version}","objectType":"Order"}}}}"#
    )
}

/// A delay from `low` to `high` ms, spread by `seed`.
fn spread(seed: u64, low: u64, high: u64) -> Duration {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    Duration::from_millis(low + x % (high - low + 1))
}

async fn answer(upstream: Arc<Upstream>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let order = common::order_route(req.uri().path()).map(|(_, o)| o.to_owned());
    let Some(order) = order else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .expect("response");
    };
    let write = req.method() != Method::GET;
    let (version, seed) = {
        let mut orders = upstream.orders.lock().expect("lock");
        let state = orders.entry(order.clone()).or_insert(Order {
            version: 1,
            gets: 0,
        });
        if write {
            state.version += 1;
        } else {
            state.gets += 1;
        }
        (
            state.version,
            u64::from(state.gets) ^ order.len() as u64 ^ now_nanos(),
        )
    };
    if !write {
        upstream.arrived.notify_waiters();
    }
    let _ = req.into_body().collect().await;
    let delay = if write {
        spread(seed, 0, 10)
    } else {
        spread(seed, 50, 200)
    };
    tokio::time::sleep(delay).await;
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body(&order, version))))
        .expect("response")
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into())
}

async fn serve_upstream(upstream: Arc<Upstream>) -> String {
    common::serve_locally(move |req| answer(upstream.clone(), req)).await
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// The etag version of an answer (`v2` → 2), or `None` for anything else.
async fn send(client: &HttpClient, method: Method, url: &str) -> Option<u32> {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", "Bearer races")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .ok()?
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    json["attributes"]["etag"]
        .as_str()?
        .strip_prefix('v')?
        .parse()
        .ok()
}

/// What the races found.
#[derive(Default)]
struct Tally {
    races: AtomicU64,
    stale: AtomicU64,
    failed: AtomicU64,
    /// Races whose first read's fill was answered after the write's answer: the case at stake.
    outlived: AtomicU64,
}

async fn race(i: usize, fronts: &[String], client: &HttpClient, up: &Upstream, tally: &Tally) {
    let order = uuid::Uuid::new_v4().to_string();
    let path = format!("/v1/customers/{CUSTOMER}/orders/{order}");
    let at = |k: usize| format!("{}{path}", fronts[(i + k) % fronts.len()]);
    let first = {
        let (client, url) = (client.clone(), at(0));
        tokio::spawn(async move { send(&client, Method::GET, &url).await })
    };
    // The fill is at the stand-in, which has read version 1.
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.gets(&order) == 0 {
        let notified = up.arrived.notified();
        if up.gets(&order) > 0 || Instant::now() > deadline {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
    let written = send(client, Method::PATCH, &at(1)).await;
    let written_at = Instant::now();
    let after = send(
        client,
        Method::GET,
        &at(if i.is_multiple_of(2) { 0 } else { 2 }),
    )
    .await;
    let first = first.await.ok().flatten();
    let first_done = Instant::now();
    tally.races.fetch_add(1, Ordering::Relaxed);
    match (written, after) {
        (Some(w), Some(a)) if a < w => {
            tally.stale.fetch_add(1, Ordering::Relaxed);
        }
        (Some(_), Some(_)) => {}
        _ => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    if first == Some(1) && first_done > written_at {
        tally.outlived.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() {
    let bin = arg("--gateway-bin", "target/release/partner-gateway");
    let replicas: usize = arg("--replicas", "1").parse().expect("--replicas");
    let redis = arg("--redis", "");
    let count: usize = arg("--count", "10000").parse().expect("--count");
    let concurrency: usize = arg("--concurrency", "64").parse().expect("--concurrency");

    let upstream = Arc::new(Upstream::default());
    let base = serve_upstream(upstream.clone()).await;
    let gateways: Vec<Gateway> = (0..replicas)
        .map(|_| start_gateway(&bin, &base, &redis, &[]))
        .collect();
    let fronts: Arc<Vec<String>> = Arc::new(gateways.iter().map(|g| g.front.clone()).collect());
    // Fleet mode: give the replicas time to count each other.
    if !redis.is_empty() {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (fronts, client, upstream) = (fronts.clone(), client.clone(), upstream.clone());
            let (tally, next) = (tally.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= count {
                        return;
                    }
                    race(i, &fronts, &client, &upstream, &tally).await;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let took = started.elapsed();
    println!(
        "replicas={replicas} races={} stale={} failed={} fill_outlived_write={} seconds={:.1}",
        tally.races.load(Ordering::Relaxed),
        tally.stale.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.outlived.load(Ordering::Relaxed),
        took.as_secs_f64(),
    );
    drop(gateways);
}
