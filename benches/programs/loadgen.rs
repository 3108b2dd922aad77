//! Load generator for `benches/figures.sh`: fills, stampedes and mixed load against a gateway.
//!
//! ```text
//! bench-loadgen fill     --target http://127.0.0.1:8080 --count 100000 [--concurrency 64]
//! bench-loadgen stampede --target http://127.0.0.1:8080 --count 1000 --path /v1/customers/…
//! bench-loadgen mixed    --target http://127.0.0.1:8080 --seconds 600 --keys 200000 [--hot 1000]
//! ```
//! Every request carries `Authorization: Bearer bench`. Prints one `key=value` line per figure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

const CUSTOMER: &str = "4a2f6c1e-8b3d-4e5f-9a7b-1c2d3e4f5a60";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(name: &str, default: u64) -> u64 {
    arg(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn order_path(i: u64) -> String {
    format!(
        "/v1/customers/{CUSTOMER}/orders/{:08x}-0000-4000-8000-{:012x}",
        i >> 48,
        i
    )
}

type Http = Client<HttpConnector, Empty<Bytes>>;

fn client(max_idle: usize) -> Http {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build_http()
}

/// One GET; returns the status (0 when no answer).
async fn get(client: &Http, url: &str) -> u16 {
    let Ok(request) = http::Request::get(url)
        .header("authorization", "Bearer bench")
        .body(Empty::new())
    else {
        return 0;
    };
    match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            status
        }
        Err(_) => 0,
    }
}

#[tokio::main]
async fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let target = arg("--target").unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    match mode.as_str() {
        "fill" => {
            let count = num("--count", 100_000);
            let concurrency = num("--concurrency", 64);
            let next = Arc::new(AtomicU64::new(0));
            let ok = Arc::new(AtomicU64::new(0));
            let http = client(concurrency as usize);
            let started = Instant::now();
            let workers: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (next, ok, http, target) =
                        (next.clone(), ok.clone(), http.clone(), target.clone());
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= count {
                                return;
                            }
                            if get(&http, &format!("{target}{}", order_path(i))).await == 200 {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.await;
            }
            println!(
                "filled={} ok={} seconds={:.1}",
                count,
                ok.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
        }
        "stampede" => {
            let count = num("--count", 1000);
            let path = arg("--path").unwrap_or_else(|| order_path(u64::MAX >> 1));
            let url = format!("{target}{path}");
            // One connection per request, all opened before any request is sent.
            let start = Arc::new(tokio::sync::Barrier::new(count as usize));
            let tasks: Vec<_> = (0..count)
                .map(|_| {
                    let (start, url) = (start.clone(), url.clone());
                    tokio::spawn(async move {
                        let http = client(1);
                        start.wait().await;
                        get(&http, &url).await
                    })
                })
                .collect();
            let mut ok = 0;
            for t in tasks {
                if t.await.unwrap_or(0) == 200 {
                    ok += 1;
                }
            }
            println!("stampede_requests={count} stampede_ok={ok}");
        }
        "mixed" => {
            let seconds = num("--seconds", 600);
            let keys = num("--keys", 200_000);
            let hot = num("--hot", 1000);
            let concurrency = num("--concurrency", 32);
            let done = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let http = client(concurrency as usize);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let workers: Vec<_> = (0..concurrency)
                .map(|w| {
                    let (done, errors, http, target) =
                        (done.clone(), errors.clone(), http.clone(), target.clone());
                    tokio::spawn(async move {
                        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ w;
                        while Instant::now() < deadline {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            // 90 % hits on the hot set, 10 % anywhere in the key space.
                            let i = if x.is_multiple_of(10) {
                                (x >> 8) % keys
                            } else {
                                (x >> 8) % hot
                            };
                            if get(&http, &format!("{target}{}", order_path(i))).await != 200 {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.await;
            }
            println!(
                "mixed_requests={} mixed_errors={}",
                done.load(Ordering::Relaxed),
                errors.load(Ordering::Relaxed)
            );
        }
        other => {
            eprintln!("usage: bench-loadgen fill|stampede|mixed --target URL …  (got {other:?})");
            std::process::exit(2);
        }
    }
}
