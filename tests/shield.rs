//! The rate-limit shield from outside (SPEC §6).

mod common {
    pub mod gateway;
    pub mod held;
    pub mod http;
    pub mod order_upstream;
    pub mod orders;
    pub mod paths;
}

use std::time::{Duration, Instant};

use common::{gateway::*, held::*, http::*, order_upstream::*, orders::*};
use http::StatusCode;

const TOKEN: &str = "Bearer t";
const AUTH: (&str, &str) = ("authorization", TOKEN);
const AUTH_A: (&str, &str) = ("authorization", "Bearer a");
const AUTH_B: (&str, &str) = ("authorization", "Bearer b");

fn retry_after(reply: &Reply) -> u64 {
    reply
        .header("retry-after")
        .unwrap_or_else(|| panic!("Retry-After on {:?}", reply.status))
        .parse()
        .expect("delta-seconds")
}

#[tokio::test]
async fn a_burst_over_cold_orders_stays_within_the_token_bucket() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[("upstream.rate_limit_rps", "10")]).await;
    let orders: Vec<String> = (0..100).map(|_| new_order()).collect();
    let started = Instant::now();
    let urls = (0..200).map(|i| gw.order_url(&orders[i % 100])).collect();
    let replies = concurrent_gets(urls, &[AUTH]).await;
    let (mut ok, mut limited) = (0, 0);
    for reply in replies {
        match reply.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry_after(&reply) >= 1);
                assert_eq!(reply.json()["errorName"], "GatewayRateLimited");
                limited += 1;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Burst of 10 plus 10 per second of elapsed time, plus one for rounding.
    let allowed = 10.0 + 10.0 * elapsed + 1.0;
    assert!(
        (up.hits() as f64) <= allowed,
        "{} upstream requests in {elapsed:.2}s",
        up.hits()
    );
    assert!(limited > 0 && ok > 0, "ok {ok}, limited {limited}");
    gw.stop().await;
}

/// Runs `attempt` until it reports it ran fast enough for its timing premise (bounded).
async fn within_one_second<F, Fut>(mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..5 {
        if attempt().await {
            return;
        }
    }
    panic!("the machine was too slow five times in a row for a 1 s refill window");
}

#[tokio::test]
async fn hits_and_stale_answers_spend_no_tokens() {
    within_one_second(|| async {
        let up = OrderUpstream::start().await;
        let gw = TestGateway::with(
            &up.base_url,
            &[
                ("upstream.rate_limit_rps", "1"),
                ("upstream.rate_limit_burst", "2"),
                ("cache.ttl", "100ms"),
                ("cache.stale_while_revalidate", "30s"),
            ],
        )
        .await;
        let (a, b) = (new_order(), new_order());
        let started = Instant::now();
        assert_eq!(get(&gw.order_url(&a), &[AUTH]).await.status, StatusCode::OK);
        assert_eq!(get(&gw.order_url(&b), &[AUTH]).await.status, StatusCode::OK);
        // The bucket is empty now; hits still answer.
        for _ in 0..30 {
            let reply = get(&gw.order_url(&b), &[AUTH]).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.header("x-cache"), Some("HIT"));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        // A is stale: served at once, its refresh refused by the empty bucket.
        let stale = get(&gw.order_url(&a), &[AUTH]).await;
        assert_eq!(stale.status, StatusCode::OK);
        assert_eq!(stale.header("x-cache"), Some("STALE"));
        let cold = get(&gw.order_url(&new_order()), &[AUTH]).await;
        let fast = started.elapsed() < Duration::from_millis(900);
        if fast {
            assert_eq!(cold.status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(cold.json()["errorName"], "GatewayRateLimited");
            assert!(retry_after(&cold) >= 1);
            assert_eq!(up.hits(), 2);
        }
        gw.stop().await;
        fast
    })
    .await;
}

#[tokio::test]
async fn upstream_429_opens_a_cooldown_in_its_scope() {
    let Warmed {
        up,
        gw,
        order: stale_order,
    } = Warmed::start(
        &[
            ("cache.ttl", "100ms"),
            ("cache.stale_while_revalidate", "0s"),
            // One scope for every caller, so the anonymous request below shares it.
            ("upstream.rate_limit_scope", "global"),
        ],
        TOKEN,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;

    up.set_mode(Mode::Status(429));
    up.add_header("retry-after", "4");
    let drawn = get(&gw.order_url(&new_order()), &[AUTH]).await;
    // The request that drew the 429 gets it as received.
    assert_eq!(drawn.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(drawn.header("retry-after"), Some("4"));
    assert!(String::from_utf8_lossy(&drawn.body).contains("simulated"));
    let hits = up.hits();
    up.set_mode(Mode::Normal);

    // During the cooldown: a cold key gets a local 429, the upstream is not contacted...
    let cold_order = new_order();
    let local = get(&gw.order_url(&cold_order), &[AUTH]).await;
    assert_eq!(local.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(local.json()["errorName"], "UpstreamThrottled");
    let wait = retry_after(&local);
    assert!((1..=4).contains(&wait), "{wait}");
    // ...also for an order request that would bypass the cache...
    let anonymous = get(&gw.order_url(&new_order()), &[]).await;
    assert_eq!(anonymous.json()["errorName"], "UpstreamThrottled");
    // ...an expired entry is served stale...
    let stale = get(&gw.order_url(&stale_order), &[AUTH]).await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.header("x-cache"), Some("STALE"));
    assert_eq!(up.hits(), hits);
    // ...and forwarded (non-order) requests are not affected.
    let other = get(&gw.url("/v1/customers/x/subscriptions"), &[AUTH]).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(up.hits(), hits + 1);

    // After the cooldown the upstream is used again.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let after = get(&gw.order_url(&cold_order), &[AUTH]).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.header("x-cache"), Some("MISS"));
    assert_eq!(up.hits(), hits + 2);
    gw.stop().await;
}

#[tokio::test]
async fn http_date_retry_after_sets_the_cooldown() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    up.set_mode(Mode::Status(429));
    let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(4));
    up.add_header("retry-after", &at);
    assert_eq!(
        get(&gw.order_url(&new_order()), &[AUTH]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let local = get(&gw.order_url(&new_order()), &[AUTH]).await;
    assert_eq!(local.json()["errorName"], "UpstreamThrottled");
    let wait = retry_after(&local);
    assert!((2..=4).contains(&wait), "{wait}");
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn credential_scope_keeps_tokens_apart() {
    within_one_second(|| async {
        let up = OrderUpstream::start().await;
        let gw = TestGateway::with(
            &up.base_url,
            &[
                ("upstream.rate_limit_rps", "1"),
                ("upstream.rate_limit_burst", "2"),
                ("upstream.rate_limit_scope", "credential"),
            ],
        )
        .await;
        let started = Instant::now();
        for _ in 0..2 {
            assert_eq!(
                get(&gw.order_url(&new_order()), &[AUTH_A]).await.status,
                StatusCode::OK
            );
        }
        let a = get(&gw.order_url(&new_order()), &[AUTH_A]).await;
        let b = get(&gw.order_url(&new_order()), &[AUTH_B]).await;
        let fast = started.elapsed() < Duration::from_millis(900);
        if fast {
            assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(a.json()["errorName"], "GatewayRateLimited");
            assert_eq!(b.status, StatusCode::OK);
        }
        gw.stop().await;
        fast
    })
    .await;
}

#[tokio::test]
async fn cooldowns_are_per_credential_by_default() {
    let up = OrderUpstream::start().await;
    // No scope set: SPEC §6 makes `credential` the default, so one caller's 429 never stops
    // another tenant (or callers without Authorization).
    let gw = TestGateway::with(&up.base_url, &[]).await;
    up.set_mode(Mode::Status(429));
    up.add_header("retry-after", "30");
    assert_eq!(
        get(&gw.order_url(&new_order()), &[AUTH_A]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    up.set_mode(Mode::Normal);
    let a = get(&gw.order_url(&new_order()), &[AUTH_A]).await;
    assert_eq!(a.json()["errorName"], "UpstreamThrottled");
    let b = get(&gw.order_url(&new_order()), &[AUTH_B]).await;
    assert_eq!(b.status, StatusCode::OK);
    let anonymous = get(&gw.order_url(&new_order()), &[]).await;
    assert_eq!(anonymous.status, StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn max_in_flight_bounds_upstream_concurrency() {
    let up = OrderUpstream::start().await;
    up.set_delay(Duration::from_millis(150));
    let gw = TestGateway::with(
        &up.base_url,
        &[
            ("upstream.max_in_flight", "2"),
            ("upstream.queue_timeout", "20s"),
        ],
    )
    .await;
    let urls = (0..10).map(|_| gw.order_url(&new_order())).collect();
    for reply in concurrent_gets(urls, &[AUTH]).await {
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(up.hits(), 10);
    assert_eq!(up.max_concurrency(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn waiting_longer_than_queue_timeout_is_a_429() {
    let held = HeldUpstream::start().await;
    let gw = TestGateway::with(
        &held.base_url,
        &[
            ("upstream.max_in_flight", "1"),
            ("upstream.queue_timeout", "100ms"),
        ],
    )
    .await;
    let url = gw.url("/v1/slow");
    let first = tokio::spawn(async move { get(&url, &[]).await });
    held.arrived().await;
    let second = get(&gw.order_url(&new_order()), &[AUTH]).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.json()["errorName"], "GatewayRateLimited");
    assert!(retry_after(&second) >= 1);
    held.release();
    assert_eq!(first.await.expect("task").status, StatusCode::OK);
    gw.stop().await;
}
