//! The rate-limit shield against the simulator's throttling, measured end to end.
//!
//! Starts the Partner Center simulator with Partner Center's order budget (500 requests per
//! minute per token) and a gateway in front of it with `rate_limit_rps = 8` (480/min), then
//! sends a bursty load over the simulator's orders for a while and reports what the clients
//! saw and what the upstream saw. Run: `cargo run --release --example shield_run [seconds]`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use partner_gateway::config::{Config, Sources};
use partner_gateway::demo::simulator::{Knobs, Simulator};

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let sim = Simulator::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Knobs {
            budget_per_minute: 500,
            ..Knobs::default()
        },
    )
    .await
    .expect("simulator");
    let env = [
        ("PARTNER_GATEWAY__SERVER__LISTEN", "127.0.0.1:0".to_owned()),
        ("PARTNER_GATEWAY__ADMIN__LISTEN", "127.0.0.1:0".to_owned()),
        ("PARTNER_GATEWAY__UPSTREAM__BASE_URL", sim.base_url()),
        ("PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_RPS", "8".to_owned()),
        (
            "PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_SCOPE",
            "credential".to_owned(),
        ),
        ("PARTNER_GATEWAY__CACHE__TTL", "1s".to_owned()),
        (
            "PARTNER_GATEWAY__CACHE__STALE_WHILE_REVALIDATE",
            "1s".to_owned(),
        ),
        ("PARTNER_GATEWAY__CACHE__NEGATIVE_TTL", "10s".to_owned()),
        ("PARTNER_GATEWAY__LOG__LEVEL", "error".to_owned()),
    ];
    let config = Config::load(&Sources {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Sources::default()
    })
    .expect("config");
    let bound = partner_gateway::server::bind(config).await.expect("bind");
    let front = bound.front_addr();
    tokio::spawn(bound.serve(std::future::pending()));

    // The simulator's 12 orders plus unknown ones (404s are upstream requests too).
    let mut paths = Vec::new();
    for (customer, orders) in Simulator::catalog() {
        for order in orders {
            paths.push(format!("/v1/customers/{customer}/orders/{order}"));
        }
        for _ in 0..8 {
            paths.push(format!(
                "/v1/customers/{customer}/orders/{}",
                uuid::Uuid::new_v4()
            ));
        }
    }
    let paths = Arc::new(paths);
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let sent = Arc::new(AtomicU64::new(0));
    let by_status = Arc::new([(); 6].map(|_| AtomicU64::new(0))); // 200, 304, 404, 429, 5xx, other
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for w in 0..16u64 {
        let (client, paths, sent, by_status) = (
            client.clone(),
            paths.clone(),
            sent.clone(),
            by_status.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < deadline {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let path = &paths[(i >> 33) as usize % paths.len()];
                let request = http::Request::get(format!("http://{front}{path}"))
                    .header("authorization", "Bearer partner-tenant")
                    .body(Empty::new())
                    .expect("request");
                sent.fetch_add(1, Ordering::Relaxed);
                let slot = match client.request(request).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.into_body().collect().await;
                        match status {
                            200 => 0,
                            304 => 1,
                            404 => 2,
                            429 => 3,
                            500..=599 => 4,
                            _ => 5,
                        }
                    }
                    Err(_) => 5,
                };
                by_status[slot].fetch_add(1, Ordering::Relaxed);
                // Bursty: pause now and then.
                if i % 97 == 0 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let n = |i: usize| by_status[i].load(Ordering::Relaxed);
    println!("shield run: {seconds} s, gateway rate_limit_rps = 8 (credential scope), simulator budget 500/min per token");
    println!(
        "  client requests sent        {}",
        sent.load(Ordering::Relaxed)
    );
    println!("  client answers 200 / 404    {} / {}", n(0), n(2));
    println!("  client answers 429 (local)  {}", n(3));
    println!("  client answers 5xx / other  {} / {}", n(4), n(5));
    println!("  upstream requests           {}", sim.counters.requests());
    println!("  upstream 429s               {}", sim.counters.throttled());
}
