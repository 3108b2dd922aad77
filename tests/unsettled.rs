//! Unsettled bodies from outside (SPEC §15.1): a `pending` order is fresh for
//! `cache.unsettled_ttl`, then revalidated before the answer (never STALE under
//! stale-while-revalidate, STALE still under stale-if-error); a settled one lives `cache.ttl`;
//! pollers still cost one upstream request per key per `unsettled_ttl`.

mod common {
    pub mod gateway;
    pub mod http;
    #[allow(dead_code)]
    pub mod order_upstream;
    #[allow(dead_code)]
    pub mod orders;
    pub mod paths;
    pub mod racing_upstream;
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{gateway::*, http::*, orders::*, racing_upstream::*};
use http::StatusCode;

const AUTH: (&str, &str) = ("authorization", "Bearer unsettled");

/// Short lifetimes with wide margins: unsettled bodies 300 ms, settled ones 30 s.
const SHORT: [(&str, &str); 2] = [("cache.ttl", "30s"), ("cache.unsettled_ttl", "300ms")];

fn x_cache(reply: &Reply) -> &str {
    reply.header("x-cache").unwrap_or("<none>")
}

fn status_of(reply: &Reply) -> String {
    reply.json()["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Sleeps past `unsettled_ttl` (300 ms) with room to spare; the subject here is time itself.
async fn past_unsettled_ttl() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}

async fn read(gw: &TestGateway, order: &str) -> Reply {
    get(&gw.order_url(order), &[AUTH]).await
}

#[tokio::test]
async fn a_pending_order_lives_unsettled_ttl_and_a_completed_one_ttl() {
    let up = RacingUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &SHORT).await;
    let (pending, settled) = (new_order(), new_order());
    up.set_status(&pending, "Pending");

    for order in [&pending, &settled] {
        assert_eq!(x_cache(&read(&gw, order).await), "MISS");
        assert_eq!(x_cache(&read(&gw, order).await), "HIT");
    }
    past_unsettled_ttl().await;
    // The pending body is asked about again before the answer (the upstream confirms it:
    // REVALIDATED), where a settled body would have been HIT — and never STALE.
    let again = read(&gw, &pending).await;
    assert_eq!(x_cache(&again), "REVALIDATED");
    assert_eq!(status_of(&again), "Pending");
    assert_eq!(x_cache(&read(&gw, &settled).await), "HIT");
    assert_eq!(up.gets(), 3);

    // Partner Center completes it on its own: the next poll after unsettled_ttl reads it.
    up.complete(&pending);
    past_unsettled_ttl().await;
    let done = read(&gw, &pending).await;
    assert_eq!(x_cache(&done), "MISS", "a new etag");
    assert_eq!(status_of(&done), "completed");
    assert_eq!(
        done.header("etag"),
        Some(format!("\"{}\"", etag_for(&pending, 2)).as_str())
    );
    // Settled now: it lives cache.ttl like any order.
    past_unsettled_ttl().await;
    assert_eq!(x_cache(&read(&gw, &pending).await), "HIT");
    gw.stop().await;
}

#[tokio::test]
async fn an_unsettled_entry_is_never_stale_under_swr_but_stands_in_when_the_upstream_fails() {
    let up = RacingUpstream::start().await;
    let settings = [
        ("cache.ttl", "1s"),
        ("cache.unsettled_ttl", "300ms"),
        ("cache.stale_while_revalidate", "30s"),
        ("cache.stale_if_error", "30s"),
    ];
    let gw = TestGateway::with(&up.base_url, &settings).await;
    let order = new_order();
    up.set_status(&order, "pending");
    assert_eq!(x_cache(&read(&gw, &order).await), "MISS");
    past_unsettled_ttl().await;
    up.fail_with(Some(503));
    let stood_in = read(&gw, &order).await;
    assert_eq!(stood_in.status, StatusCode::OK);
    assert_eq!(
        x_cache(&stood_in),
        "STALE",
        "stale-if-error applies to it as to any entry"
    );
    assert_eq!(status_of(&stood_in), "pending");
    assert_eq!(up.gets(), 2, "asked first, then stood in");
    gw.stop().await;
}

#[tokio::test]
async fn unsettled_ttl_zero_passes_unsettled_bodies_without_storing_them() {
    let up = RacingUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[("cache.unsettled_ttl", "0s")]).await;
    let order = new_order();
    up.set_status(&order, "unknown");
    for n in 1..=3 {
        let reply = read(&gw, &order).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(x_cache(&reply), "MISS");
        assert_eq!(up.gets(), n);
    }
    let metrics = get(&gw.admin_url("/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let counted = text.lines().find_map(|l| {
        let rest =
            l.strip_prefix("partner_gateway_cache_not_stored_total{reason=\"unsettled\"} ")?;
        rest.trim().parse::<f64>().ok()
    });
    assert_eq!(counted, Some(3.0), "{text}");
    // Settled bodies are stored as ever.
    up.complete(&order);
    read(&gw, &order).await;
    assert_eq!(x_cache(&read(&gw, &order).await), "HIT");
    gw.stop().await;
}

#[tokio::test]
async fn the_statuses_come_from_the_configuration() {
    let up = RacingUpstream::start().await;
    let settings = [
        ("cache.ttl", "30s"),
        ("cache.unsettled_ttl", "300ms"),
        // The environment's comma-separated form.
        ("cache.unsettled_statuses", "provisioning, AWAITING"),
    ];
    let gw = TestGateway::with(&up.base_url, &settings).await;
    let (listed, other, pending) = (new_order(), new_order(), new_order());
    up.set_status(&listed, "Provisioning");
    up.set_status(&other, "awaiting");
    up.set_status(&pending, "pending");
    for order in [&listed, &other, &pending] {
        read(&gw, order).await;
    }
    past_unsettled_ttl().await;
    assert_eq!(x_cache(&read(&gw, &listed).await), "REVALIDATED");
    assert_eq!(x_cache(&read(&gw, &other).await), "REVALIDATED");
    assert_eq!(
        x_cache(&read(&gw, &pending).await),
        "HIT",
        "not in this list"
    );
    gw.stop().await;
}

#[tokio::test]
async fn pollers_cost_one_upstream_request_per_unsettled_ttl() {
    let up = RacingUpstream::start().await;
    up.set_read_delay(Duration::from_millis(100));
    let gw = Arc::new(TestGateway::with(&up.base_url, &SHORT).await);
    let order = new_order();
    up.set_status(&order, "pending");

    // 20 concurrent cold requests: one upstream request.
    let cold: Vec<_> = (0..20)
        .map(|_| {
            let (gw, order) = (gw.clone(), order.clone());
            tokio::spawn(async move { read(&gw, &order).await })
        })
        .collect();
    for reply in cold {
        assert_eq!(reply.await.expect("reader").status, StatusCode::OK);
    }
    assert_eq!(up.gets(), 1);

    // 10 pollers, one read every 50 ms each, for 1.5 s: at most one upstream request per
    // 300 ms (+ the one in flight at the end), never a STALE answer.
    let until = Instant::now() + Duration::from_millis(1500);
    let pollers: Vec<_> = (0..10)
        .map(|_| {
            let (gw, order) = (gw.clone(), order.clone());
            tokio::spawn(async move {
                let mut states = Vec::new();
                while Instant::now() < until {
                    states.push(x_cache(&read(&gw, &order).await).to_owned());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                states
            })
        })
        .collect();
    let mut answers = 0;
    for poller in pollers {
        let states = poller.await.expect("poller");
        assert!(states.iter().all(|s| s != "STALE"), "{states:?}");
        answers += states.len();
    }
    let asked = up.gets() - 1;
    assert!(
        asked <= 1500 / 300 + 1,
        "{asked} upstream requests for {answers} polls"
    );
    assert!(answers >= 100, "the pollers polled ({answers})");
    if let Ok(gw) = Arc::try_unwrap(gw) {
        gw.stop().await;
    }
}
