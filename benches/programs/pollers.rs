//! Pollers of unsettled orders (issue 22, `benches/pollers.sh`): how long after Partner Center
//! completes an order its pollers still read `pending` through the gateway, and what the
//! gateway saves the upstream.
//!
//! The program hosts its own Partner Center stand-in: each of `--orders` orders is `pending`
//! from the start and turns `completed` (a new etag) at a random moment 2–10 s later, with no
//! call from anyone; the stand-in keeps the moment of each change (its change log). It starts
//! one gateway (the binary given) and `--clients` pollers per order, each reading its order
//! through the gateway once every `--every` (staggered), until every order has been read
//! `completed` by every poller. It prints one line of `key=value` figures:
//! - `stale_max_ms`: the most any poll's answer lagged the change — a poll sent after the order
//!   completed that still read `pending`, measured from the change to the poll's start;
//! - `seen_max_ms`: per order, from the change to the first poll that read `completed`;
//! - `polls` and `upstream`: requests the pollers sent, and GETs that reached the stand-in.
//!
//! `bench-pollers --gateway-bin target/release/partner-gateway --orders 100 --clients 10
//!   [--every 1s] [--unsettled-ttl 5s] [--rule off]`

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use common::{arg, start_gateway, CUSTOMER};

/// The stand-in: when each order completes, and the GETs it received.
struct Upstream {
    completes_at: Mutex<HashMap<String, Instant>>,
    gets: AtomicU64,
}

fn body(order: &str, completed: bool) -> String {
    let (status, version) = if completed {
        ("completed", 2)
    } else {
        ("pending", 1)
    };
    format!(
        r#"{{"id":"{order}","referenceCustomerId":"{CUSTOMER}","status":"{status}","lineItems":[],"attributes":{{"etag":"v{version}","objectType":"Order"}}}}"#
    )
}

async fn answer(upstream: Arc<Upstream>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some((_, order)) = common::order_route(req.uri().path()) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .expect("response");
    };
    upstream.gets.fetch_add(1, Ordering::Relaxed);
    let at = upstream
        .completes_at
        .lock()
        .expect("lock")
        .get(order)
        .copied();
    let completed = at.is_some_and(|at| Instant::now() >= at);
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body(order, completed))))
        .expect("response")
}

async fn serve(upstream: Arc<Upstream>) -> String {
    common::serve_locally(move |req| answer(upstream.clone(), req)).await
}

/// A pseudo-random number from `seed` (no dependency for a benchmark's spread).
fn mix(seed: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 29;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (x >> 32)
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Whether the gateway answered `completed` (`None`: no usable answer).
async fn poll(client: &HttpClient, url: &str) -> Option<bool> {
    let request = Request::get(url)
        .header("authorization", "Bearer pollers")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .ok()?
        .ok()?;
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(json["status"] == "completed")
}

#[tokio::main]
async fn main() {
    let bin = arg("--gateway-bin", "target/release/partner-gateway");
    let orders: u64 = arg("--orders", "100").parse().expect("--orders");
    let clients: u64 = arg("--clients", "10").parse().expect("--clients");
    let every = humantime::parse_duration(&arg("--every", "1s")).expect("--every");
    let unsettled_ttl = arg("--unsettled-ttl", "");
    // `--rule off`: no status is unsettled (the gateway as a time-only cache).
    let rule_off = arg("--rule", "on") == "off";

    let upstream = Arc::new(Upstream {
        completes_at: Mutex::new(HashMap::new()),
        gets: AtomicU64::new(0),
    });
    let base = serve(upstream.clone()).await;
    let mut extra = vec![("PARTNER_GATEWAY__CACHE__TTL", "30s")];
    if !unsettled_ttl.is_empty() {
        extra.push((
            "PARTNER_GATEWAY__CACHE__UNSETTLED_TTL",
            unsettled_ttl.as_str(),
        ));
    }
    if rule_off {
        extra.push(("PARTNER_GATEWAY__CACHE__UNSETTLED_STATUSES", ""));
    }
    let gateway = start_gateway(&bin, &base, "", &extra);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    let started = Instant::now();
    let ids: Vec<String> = (0..orders)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let after = Duration::from_millis(2000 + mix(n as u64) % 8000);
        upstream
            .completes_at
            .lock()
            .expect("lock")
            .insert(id.clone(), started + after);
    }
    let polls = Arc::new(AtomicU64::new(0));
    let stale_max = Arc::new(AtomicU64::new(0));
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut pollers = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        for c in 0..clients {
            let url = format!("{}/v1/customers/{CUSTOMER}/orders/{id}", gateway.front);
            let changed = started + Duration::from_millis(2000 + mix(n as u64) % 8000);
            let (client, polls, stale_max, seen, id) = (
                client.clone(),
                polls.clone(),
                stale_max.clone(),
                seen.clone(),
                id.clone(),
            );
            // Staggered over one interval, as independent pollers are.
            let offset = every.mul_f64((mix(n as u64 * 1000 + c) % 1000) as f64 / 1000.0);
            pollers.push(tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                loop {
                    let sent = Instant::now();
                    let completed = poll(&client, &url).await;
                    polls.fetch_add(1, Ordering::Relaxed);
                    match completed {
                        Some(true) => {
                            let mut seen = seen.lock().expect("lock");
                            let first = seen.entry(id.clone()).or_insert(sent);
                            *first = (*first).min(sent);
                            return;
                        }
                        Some(false) if sent > changed => {
                            let lag = sent.duration_since(changed).as_millis() as u64;
                            stale_max.fetch_max(lag, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                    tokio::time::sleep(every).await;
                }
            }));
        }
    }
    for poller in pollers {
        let _ = poller.await;
    }
    let seen_max = {
        let seen = seen.lock().expect("lock");
        let changes = upstream.completes_at.lock().expect("lock");
        seen.iter()
            .map(|(id, at)| at.saturating_duration_since(changes[id]).as_millis() as u64)
            .max()
            .unwrap_or(0)
    };
    let polls = polls.load(Ordering::Relaxed);
    let gets = upstream.gets.load(Ordering::Relaxed);
    println!(
        "rule={} orders={orders} clients={clients} every_ms={} polls={polls} upstream={gets} \
         upstream_per_order={:.1} polls_per_order={:.1} stale_max_ms={} seen_max_ms={seen_max} seconds={:.1}",
        if rule_off { "off" } else { "on" },
        every.as_millis(),
        gets as f64 / orders as f64,
        polls as f64 / orders as f64,
        stale_max.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    );
    drop(gateway);
}
