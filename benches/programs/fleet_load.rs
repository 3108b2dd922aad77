//! Load and measurement client for `benches/fleet.sh` (fleet mode, SPEC §12): sweeps over
//! distinct keys, a stampede spread over replicas, write-then-read races, an open-loop rate and
//! a paced mix of hits and misses split in two phases. Every request carries
//! `Authorization: Bearer bench`; `--targets` is a comma-separated list of gateway base URLs,
//! used round-robin. Prints one line of `key=value` figures (latencies in ms).
//!
//! ```text
//! bench-fleet sweep    --targets URL --keys 20000 [--first 0] [--concurrency 1]
//! bench-fleet stampede --targets A,B,C --count 1000 --path /v1/customers/…/orders/…
//! bench-fleet races    --writer A --readers B,C --warm A,B,C --count 1000 --path P
//! bench-fleet rate     --targets A,B,C --rate 50 --seconds 60 [--first 0]
//! bench-fleet mixed    --targets A,B,C --rate 2000 --seconds 20 --split 10 --hot 1000
//! ```
//! Key `i` is `/v1/customers/{CUSTOMER}/orders/{i as a GUID}` (the bench origin answers any;
//! the simulator answers 404 for these, which goes upstream every time).

#[path = "common.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

type Http = Client<HttpConnector, Full<Bytes>>;

/// What came back: status (0 = no answer), `X-Cache`, body, time to the whole body.
struct Reply {
    status: u16,
    cache: String,
    body: Bytes,
    took: Duration,
}

fn client(max_idle: usize) -> Http {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build(connector)
}

fn num(name: &str, default: u64) -> u64 {
    let text = common::arg(name, &default.to_string());
    text.parse()
        .unwrap_or_else(|e| panic!("{name} {text}: not a whole number ({e})"))
}

fn list(name: &str) -> Vec<String> {
    let text = common::arg(name, "");
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('/').to_owned())
        .collect()
}

fn key_path(i: u64) -> String {
    format!(
        "/v1/customers/{}/orders/{:08x}-0000-4000-8000-{:012x}",
        common::CUSTOMER,
        i >> 48,
        i
    )
}

async fn send(http: &Http, method: &str, url: &str, body: &'static str) -> Reply {
    let started = Instant::now();
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", "Bearer bench")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap_or_else(|e| panic!("request {method} {url}: {e}"));
    let mut reply = Reply {
        status: 0,
        cache: String::new(),
        body: Bytes::new(),
        took: Duration::ZERO,
    };
    if let Ok(response) = http.request(request).await {
        let (parts, body) = response.into_parts();
        reply.cache = parts
            .headers
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if let Ok(body) = body.collect().await {
            reply.status = parts.status.as_u16();
            reply.body = body.to_bytes();
        }
    }
    reply.took = started.elapsed();
    reply
}

async fn get(http: &Http, url: &str) -> Reply {
    send(http, "GET", url, "").await
}

/// `attributes.etag` of an order body ("" when there is none).
fn etag(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/attributes/etag")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `name_p50_ms=… name_p99_ms=… name_max_ms=…` of latencies in µs (sorts them).
fn percentiles(name: &str, samples: &mut [u64]) -> String {
    samples.sort_unstable();
    let at = |q: f64| -> f64 {
        if samples.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1] as f64 / 1000.0
    };
    format!(
        "{name}_p50_ms={:.3} {name}_p99_ms={:.3} {name}_max_ms={:.3}",
        at(0.50),
        at(0.99),
        at(1.0)
    )
}

/// Each key of `first..first+keys` once, `concurrency` at a time, through the targets in turn;
/// with `--twice 1`, each key a second time right after the first (figures `again_*`), so that
/// both kinds of request see the same moments of a noisy machine.
async fn sweep(targets: &[String]) -> String {
    let (keys, first, twice) = (
        num("--keys", 20_000),
        num("--first", 0),
        num("--twice", 0) == 1,
    );
    let concurrency = num("--concurrency", 1).max(1);
    let http = client(concurrency as usize);
    let next = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new((Vec::new(), [0u64; 4], Vec::new(), 0u64)));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, next, seen, targets) =
                (http.clone(), next.clone(), seen.clone(), targets.to_vec());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= keys {
                        return;
                    }
                    let target = &targets[n as usize % targets.len()];
                    let url = format!("{target}{}", key_path(first + n));
                    let reply = get(&http, &url).await;
                    let again = match twice {
                        true => Some(get(&http, &url).await),
                        false => None,
                    };
                    let mut seen = seen.lock().expect("lock");
                    if let Some(again) = again {
                        seen.2.push(again.took.as_micros() as u64);
                        seen.3 += u64::from(again.status == 200 && again.cache == "HIT");
                    }
                    seen.0.push(reply.took.as_micros() as u64);
                    let slot = match (reply.status, reply.cache.as_str()) {
                        (200, "HIT") => 0,
                        (200, "MISS") => 1,
                        (200, _) => 2,
                        _ => 3,
                    };
                    seen.1[slot] += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("sweep worker");
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut seen = seen.lock().expect("lock");
    let [hit, miss, other, failed] = seen.1;
    let again_hit = seen.3;
    format!(
        "requests={keys} hit={hit} miss={miss} other_ok={other} failed={failed} seconds={seconds:.2} rps={:.0} {} again_hit={again_hit} {}",
        keys as f64 / seconds,
        percentiles("lat", &mut seen.0),
        percentiles("again", &mut seen.2)
    )
}

/// `--count` requests for one path, one connection each, all sent at once (round-robin).
async fn stampede(targets: &[String]) -> String {
    let count = num("--count", 1000);
    let path = common::arg("--path", &key_path(u64::MAX >> 1));
    let start = Arc::new(tokio::sync::Barrier::new(count as usize));
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let url = format!("{}{path}", targets[i as usize % targets.len()]);
            let start = start.clone();
            tokio::spawn(async move {
                let http = client(1);
                start.wait().await;
                get(&http, &url).await.status
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        if task.await.expect("stampede task") == 200 {
            ok += 1;
        }
    }
    format!("requests={count} ok={ok}")
}

/// Write-then-read races: warm the order on every `--warm` target, PATCH through `--writer`,
/// then GET through every `--readers` target at once; a read with the old etag is stale.
async fn races() -> String {
    let (writer, readers, warm) = (
        common::arg("--writer", ""),
        list("--readers"),
        list("--warm"),
    );
    let path = common::arg("--path", "");
    let count = num("--count", 1000);
    let http = client(16);
    let (mut writes, mut stale, mut unknown, mut failed, mut cached) = (vec![], 0, 0, 0, 0);
    for race in 0..count {
        let mut old = String::new();
        for target in &warm {
            let reply = get(&http, &format!("{target}{path}")).await;
            assert_eq!(reply.status, 200, "warming GET {target}{path}");
            old = etag(&reply.body);
            // What the readers hold now: a read answered from their memory next time.
            if readers.contains(target)
                && get(&http, &format!("{target}{path}")).await.cache == "HIT"
            {
                cached += 1;
            }
        }
        let body: &'static str = if race % 2 == 0 {
            r#"{"status":"active"}"#
        } else {
            r#"{"status":"completed"}"#
        };
        let written = send(&http, "PATCH", &format!("{writer}{path}"), body).await;
        if written.status != 200 {
            failed += 1;
            continue;
        }
        writes.push(written.took.as_micros() as u64);
        let new = etag(&written.body);
        let urls: Vec<String> = readers.iter().map(|t| format!("{t}{path}")).collect();
        let reads = urls.iter().map(|url| get(&http, url));
        for read in futures_util::future::join_all(reads).await {
            let seen = etag(&read.body);
            if seen == old {
                stale += 1;
            } else if seen != new {
                unknown += 1;
            }
        }
    }
    format!(
        "races={count} writes_failed={failed} reads={} stale={stale} other_etag={unknown} readers_cached_before={cached} {}",
        (count - failed) * readers.len() as u64,
        percentiles("write", &mut writes)
    )
}

/// Open loop: `--rate` GETs per second of distinct keys for `--seconds`, whatever comes back.
async fn rate(targets: &[String]) -> String {
    let (per_second, seconds, first) = (num("--rate", 50), num("--seconds", 60), num("--first", 0));
    let http = client(256);
    let total = per_second * seconds;
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticker.tick().await;
        let url = format!(
            "{}{}",
            targets[n as usize % targets.len()],
            key_path(first + n)
        );
        let (http, statuses) = (http.clone(), statuses.clone());
        tasks.push(tokio::spawn(async move {
            let reply = get(&http, &url).await;
            let text = String::from_utf8_lossy(&reply.body);
            let label = match reply.status {
                429 if text.contains("GatewayRateLimited") => "429_gateway".to_owned(),
                429 if text.contains("UpstreamThrottled") => "429_throttled".to_owned(),
                status => status.to_string(),
            };
            *statuses.lock().expect("lock").entry(label).or_default() += 1;
        }));
    }
    let offered_seconds = started.elapsed().as_secs_f64();
    for task in tasks {
        task.await.expect("rate task");
    }
    let statuses = statuses.lock().expect("lock");
    let by_status: Vec<String> = statuses.iter().map(|(s, n)| format!("s{s}={n}")).collect();
    format!(
        "offered={total} offered_seconds={offered_seconds:.2} {}",
        by_status.join(" ")
    )
}

/// Paced mix over the targets: `--hit-percent` of requests for keys `0..--hot` (warmed), the
/// rest for keys never asked before; figures per phase, before and after `--split` seconds.
async fn mixed(targets: &[String]) -> String {
    let (per_second, seconds, split) = (
        num("--rate", 2000),
        num("--seconds", 20),
        num("--split", 10),
    );
    let (hot, hit_percent, workers) = (
        num("--hot", 1000),
        num("--hit-percent", 90),
        num("--concurrency", 16),
    );
    let http = client(workers as usize);
    let interval = Duration::from_secs_f64(workers as f64 / per_second as f64);
    let fresh = Arc::new(AtomicU64::new(1 << 40));
    // Per phase: hit latencies (µs), miss latencies, [requests, 5xx, no answer, hot not HIT].
    let phases = Arc::new(Mutex::new([
        (vec![], vec![], [0u64; 4]),
        (vec![], vec![], [0u64; 4]),
    ]));
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let split = started + Duration::from_secs(split);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (http, fresh, phases, targets) = (
                http.clone(),
                fresh.clone(),
                phases.clone(),
                targets.to_vec(),
            );
            tokio::spawn(async move {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (w + 1);
                let mut due = started + interval.mul_f64(w as f64 / workers as f64);
                for n in 0u64.. {
                    tokio::time::sleep_until(due.into()).await;
                    due += interval;
                    let sent = Instant::now();
                    if sent >= end {
                        return;
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let is_hit = x % 100 < hit_percent;
                    let key = match is_hit {
                        true => (x >> 8) % hot,
                        false => fresh.fetch_add(1, Ordering::Relaxed),
                    };
                    let target = &targets[(n + w) as usize % targets.len()];
                    let reply = get(&http, &format!("{target}{}", key_path(key))).await;
                    let mut phases = phases.lock().expect("lock");
                    let phase = &mut phases[usize::from(sent >= split)];
                    let micros = reply.took.as_micros() as u64;
                    match is_hit {
                        true => phase.0.push(micros),
                        false => phase.1.push(micros),
                    }
                    phase.2[0] += 1;
                    phase.2[1] += u64::from(reply.status >= 500);
                    phase.2[2] += u64::from(reply.status == 0);
                    phase.2[3] += u64::from(is_hit && reply.cache != "HIT");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("mixed worker");
    }
    let mut phases = phases.lock().expect("lock");
    let mut out = Vec::new();
    for (name, phase) in ["before", "after"].iter().zip(phases.iter_mut()) {
        let [requests, server_errors, no_answer, not_hit] = phase.2;
        out.push(format!(
            "{name}_requests={requests} {name}_5xx={server_errors} {name}_no_answer={no_answer} {name}_hot_not_hit={not_hit} {name}_hits={} {name}_misses={} {} {}",
            phase.0.len(),
            phase.1.len(),
            percentiles(&format!("{name}_hit"), &mut phase.0),
            percentiles(&format!("{name}_miss"), &mut phase.1)
        ));
    }
    out.join(" ")
}

#[tokio::main]
async fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let targets = list("--targets");
    if targets.is_empty() && mode != "races" {
        panic!("--targets URL[,URL…] is required");
    }
    let line = match mode.as_str() {
        "sweep" => sweep(&targets).await,
        "stampede" => stampede(&targets).await,
        "races" => races().await,
        "rate" => rate(&targets).await,
        "mixed" => mixed(&targets).await,
        other => {
            eprintln!("usage: bench-fleet sweep|stampede|races|rate|mixed … (got {other:?})");
            std::process::exit(2);
        }
    };
    println!("{line}");
}
