//! Fleet mode against a real `redis-server` (SPEC §12): replicas find each other, a replica
//! that loses Redis keeps serving alone and rejoins, and nothing in Redis lives forever or
//! holds a credential. Each test starts its own `redis-server` on a free loopback port; where
//! it is not installed the tests say so and do not run (under `CI=true` that is a failure).

mod common {
    pub mod gateway;
    pub mod http;
    pub mod paths;
    pub mod redis;
    pub mod wait;
    // This file uses a part of each of these.
    #[allow(dead_code)]
    pub mod ids;
    #[allow(dead_code)]
    pub mod order_upstream;
    #[allow(dead_code)]
    pub mod orders;
}

use std::time::{Duration, Instant};

use common::{gateway::*, http::*, order_upstream::*, orders::*, redis::*, wait::*};
use http::StatusCode;

const TOKEN: &str = "Bearer fleet-token";
const SECRET: &str = "fleet-secret-fleet-secret-fleet-secret";

async fn replica(up: &OrderUpstream, redis: &RedisServer, extra: &[(&str, &str)]) -> TestGateway {
    let url = redis.url();
    // Generous, so that a loaded test machine does not turn a Redis call into a timeout (and
    // the replica into one working alone) where a test counts upstream requests; the tests of
    // timeouts set their own.
    let mut overrides = vec![
        ("fleet.redis_url", url.as_str()),
        ("fleet.partition_secret", SECRET),
        ("fleet.timeout", "1s"),
    ];
    overrides.extend_from_slice(extra);
    TestGateway::with(&up.base_url, &overrides).await
}

/// A Redis, an upstream and two replicas that both see the fleet (`None`: no redis-server).
async fn two_replicas(
    test: &str,
) -> Option<(RedisServer, OrderUpstream, TestGateway, TestGateway)> {
    let redis = RedisServer::start(test)?;
    let up = OrderUpstream::start().await;
    let a = replica(&up, &redis, &[]).await;
    let b = replica(&up, &redis, &[]).await;
    for gw in [&a, &b] {
        eventually(Duration::from_secs(5), || async {
            fleet_view(gw).await == (true, 2)
        })
        .await;
    }
    Some((redis, up, a, b))
}

/// A write through `gw` on `order` (the upstream answers 2xx), as a partner service sends it.
async fn patch(gw: &TestGateway, order: &str) -> StatusCode {
    let auth = [("authorization", TOKEN)];
    let body = bytes::Bytes::from_static(b"{}");
    send(http::Method::PATCH, &gw.order_url(order), &auth, body)
        .await
        .status
}

/// The `X-Cache` of a GET of `url` with the fleet tests' credential.
async fn x_cache(url: &str) -> Option<String> {
    let reply = get(url, &[("authorization", TOKEN)]).await;
    reply.header("x-cache").map(str::to_owned)
}

/// The `ETag` an order carries at `version`.
fn version_etag(order: &str, version: u32) -> String {
    format!("\"{}\"", etag_for(order, version))
}

async fn fleet_view(gw: &TestGateway) -> (bool, u64) {
    let stats = gw.stats().await;
    (
        stats["fleet"]["up"].as_bool().expect("fleet.up"),
        stats["fleet"]["replicas"].as_u64().expect("fleet.replicas"),
    )
}

async fn metric(gw: &TestGateway, name: &str) -> Option<f64> {
    let text = get(&gw.admin_url("/metrics"), &[]).await.body;
    String::from_utf8_lossy(&text).lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn replicas_count_each_other_and_leave_the_count_when_they_stop() {
    let Some(redis) = RedisServer::start("replicas_count_each_other") else {
        return;
    };
    let up = OrderUpstream::start().await;
    let started = Instant::now();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&up, &redis, &[]).await);
    }
    for gw in &replicas {
        eventually(Duration::from_secs(5), || async {
            fleet_view(gw).await == (true, 3)
        })
        .await;
    }
    // SPEC §12.3: counted by every replica within 2 s (here with a wide margin for CI).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(&replicas[0], "partner_gateway_fleet_up").await,
        Some(1.0)
    );
    assert_eq!(
        metric(&replicas[0], "partner_gateway_fleet_replicas").await,
        Some(3.0)
    );
    let last = replicas.pop().expect("three");
    last.stop().await;
    for gw in &replicas {
        eventually(Duration::from_secs(10), || async {
            fleet_view(gw).await.1 == 2
        })
        .await;
    }
    // A gateway without fleet mode says nothing about a fleet.
    let alone = TestGateway::with(&up.base_url, &[]).await;
    assert!(alone.stats().await.get("fleet").is_none());
    for gw in replicas {
        gw.stop().await;
    }
    alone.stop().await;
}

#[tokio::test]
async fn without_redis_a_replica_serves_alone_and_rejoins_with_an_empty_memory() {
    let Some(mut redis) = RedisServer::start("serves_alone_and_rejoins") else {
        return;
    };
    let up = OrderUpstream::start().await;
    let gw = replica(&up, &redis, &[("cache.ttl", "1h")]).await;
    eventually(Duration::from_secs(5), || async { fleet_view(&gw).await.0 }).await;
    let order = new_order();
    let url = gw.order_url(&order);
    assert_eq!(
        get(&url, &[("authorization", TOKEN)])
            .await
            .header("x-cache"),
        Some("MISS")
    );

    redis.stop();
    eventually(Duration::from_secs(5), || async {
        !fleet_view(&gw).await.0
    })
    .await;
    assert_eq!(metric(&gw, "partner_gateway_fleet_up").await, Some(0.0));
    // Alone: hits as ever, misses go upstream, ready all along, no 5xx.
    let hit = get(&url, &[("authorization", TOKEN)]).await;
    assert_eq!(
        (hit.status, hit.header("x-cache")),
        (StatusCode::OK, Some("HIT"))
    );
    let cold = get(&gw.order_url(&new_order()), &[("authorization", TOKEN)]).await;
    assert_eq!(
        (cold.status, cold.header("x-cache")),
        (StatusCode::OK, Some("MISS"))
    );
    assert_eq!(
        get(&gw.admin_url("/readyz"), &[]).await.status,
        StatusCode::OK
    );

    redis.restart("serves_alone_and_rejoins");
    eventually(Duration::from_secs(5), || async { fleet_view(&gw).await.0 }).await;
    assert_eq!(metric(&gw, "partner_gateway_fleet_up").await, Some(1.0));
    // Rejoined with its memory dropped: a write made elsewhere meanwhile cannot outlive it.
    let after = get(&url, &[("authorization", TOKEN)]).await;
    assert_eq!(after.header("x-cache"), Some("MISS"));
    gw.stop().await;
}

#[tokio::test]
async fn every_key_expires_and_none_holds_a_credential() {
    let Some((redis, _up, a, b)) = two_replicas("every_key_expires").await else {
        return;
    };
    let reply = get(&a.order_url(&new_order()), &[("authorization", TOKEN)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let keys = redis.command("KEYS *");
    let names: Vec<&str> = keys
        .lines()
        .filter(|l| !l.starts_with('*') && !l.starts_with('$'))
        .collect();
    assert!(!names.is_empty(), "{keys}");
    for name in names {
        assert!(
            name.starts_with("partner-gateway:{"),
            "fleet name and hash tag: {name}"
        );
        let ttl = redis.command(&format!("PTTL {name}"));
        let ttl: i64 = ttl.trim().trim_start_matches(':').parse().expect("PTTL");
        assert!(ttl > 0, "{name} has no expiry ({ttl})");
        let dump = redis.command(&format!("DUMP {name}"));
        assert!(!dump.contains("fleet-token") && !name.contains("fleet-token"));
    }
    a.stop().await;
    b.stop().await;
}

async fn l2_hits(gw: &TestGateway) -> Option<f64> {
    metric(gw, "partner_gateway_fleet_l2_lookups_total{result=\"hit\"}").await
}

#[tokio::test]
async fn the_shared_tier_shares_a_fill_and_keeps_credentials_apart() {
    let Some((_redis, up, a, b)) = two_replicas("the_shared_tier_shares_a_fill").await else {
        return;
    };
    let order = new_order();
    let first = get(&a.order_url(&order), &[("authorization", TOKEN)]).await;
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let shared = get(&b.order_url(&order), &[("authorization", TOKEN)]).await;
    assert_eq!(shared.status, StatusCode::OK);
    assert_eq!(shared.header("x-cache"), Some("HIT"));
    assert_eq!(shared.body, first.body);
    assert_eq!(up.hits(), 1, "one upstream request for two replicas");
    assert_eq!(l2_hits(&b).await, Some(1.0));
    // Now in B's memory: the next one is an L1 hit, no Redis.
    let again = get(&b.order_url(&order), &[("authorization", TOKEN)]).await;
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert_eq!(l2_hits(&b).await, Some(1.0));
    // Another credential never reads it, on any replica.
    let other = get(
        &b.order_url(&order),
        &[("authorization", "Bearer someone-else")],
    )
    .await;
    assert_eq!(other.header("x-cache"), Some("MISS"));
    assert_eq!(up.hits(), 2);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn writes_and_purges_on_one_replica_drop_the_shared_entry() {
    let Some((_redis, up, a, b)) = two_replicas("writes_and_purges_drop_the_shared_entry").await
    else {
        return;
    };
    // A write through A: B (which never held the order) must not find the old one in L2.
    let written = new_order();
    assert_eq!(
        x_cache(&a.order_url(&written)).await.as_deref(),
        Some("MISS")
    );
    assert_eq!(patch(&a, &written).await, StatusCode::OK);
    assert_eq!(
        x_cache(&b.order_url(&written)).await.as_deref(),
        Some("MISS")
    );
    assert_eq!(up.hits(), 3);
    // A purge on A's admin port: counted in L1 and L2, and gone for B too.
    let purged_order = new_order();
    assert_eq!(
        x_cache(&a.order_url(&purged_order)).await.as_deref(),
        Some("MISS")
    );
    let path = format!("/cache/customers/{}/orders/{purged_order}", CUSTOMER);
    let purge = send(
        http::Method::DELETE,
        &a.admin_url(&path),
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(purge.status, StatusCode::OK);
    assert_eq!(
        purge.json()["purged"],
        2,
        "one in A's memory, one in the shared tier"
    );
    assert_eq!(
        x_cache(&b.order_url(&purged_order)).await.as_deref(),
        Some("MISS")
    );
    assert_eq!(up.hits(), 5);
    a.stop().await;
    b.stop().await;
}

/// SPEC §4.3 across tiers: `only-if-cached` is answered from what the fleet holds (L2), never
/// from the upstream; with nothing there, `504 NotCached`.
#[tokio::test]
async fn only_if_cached_is_answered_from_the_shared_tier() {
    let Some((_redis, up, a, b)) = two_replicas("only_if_cached_from_the_shared_tier").await else {
        return;
    };
    let auth = ("authorization", TOKEN);
    let only = ("cache-control", "only-if-cached");
    let order = new_order();
    assert_eq!(
        get(&a.order_url(&order), &[auth]).await.header("x-cache"),
        Some("MISS")
    );
    let shared = get(&b.order_url(&order), &[auth, only]).await;
    assert_eq!(shared.status, StatusCode::OK);
    assert_eq!(shared.header("x-cache"), Some("HIT"));
    let nowhere = get(&b.order_url(&new_order()), &[auth, only]).await;
    assert_eq!(nowhere.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(up.hits(), 1, "only-if-cached never asks the upstream");
    a.stop().await;
    b.stop().await;
}

/// SPEC §4.3 holds across tiers: a client's `no-cache` is not answered from L2 either.
#[tokio::test]
async fn no_cache_revalidates_past_the_shared_tier() {
    let Some((_redis, up, a, b)) = two_replicas("no_cache_revalidates_past_the_shared_tier").await
    else {
        return;
    };
    let order = new_order();
    let auth = ("authorization", TOKEN);
    assert_eq!(
        get(&a.order_url(&order), &[auth]).await.header("x-cache"),
        Some("MISS")
    );
    let asked = get(&b.order_url(&order), &[auth, ("cache-control", "no-cache")]).await;
    assert_eq!(asked.status, StatusCode::OK);
    assert_eq!(asked.header("x-cache"), Some("REVALIDATED"));
    assert_eq!(up.hits(), 2, "the upstream was asked");
    a.stop().await;
    b.stop().await;
}

/// Three replicas holding one order in memory; `None` without redis-server.
async fn three_holding(
    test: &str,
) -> Option<(RedisServer, OrderUpstream, Vec<TestGateway>, String)> {
    let (redis, up, replicas) = three_replicas(test, &[("cache.ttl", "1h")]).await?;
    let order = new_order();
    for (gw, state) in replicas.iter().zip(["MISS", "HIT", "HIT"]) {
        let reply = get(&gw.order_url(&order), &[("authorization", TOKEN)]).await;
        assert_eq!(reply.header("x-cache"), Some(state));
    }
    assert_eq!(up.hits(), 1);
    Some((redis, up, replicas, order))
}

/// SPEC §12.3: after a write's answer, no replica that confirmed serves the old version.
#[tokio::test]
async fn a_write_reaches_every_replica_before_it_is_answered() {
    let Some((_redis, up, replicas, order)) = three_holding("a_write_reaches_every_replica").await
    else {
        return;
    };
    let auth = [("authorization", TOKEN)];
    up.bump(&order);
    assert_eq!(patch(&replicas[0], &order).await, StatusCode::OK);
    let (url_b, url_c) = (replicas[1].order_url(&order), replicas[2].order_url(&order));
    let (b, c) = tokio::join!(get(&url_b, &auth), get(&url_c, &auth));
    let new_etag = version_etag(&order, 2);
    for reply in [&b, &c] {
        assert_eq!(
            reply.header("etag"),
            Some(new_etag.as_str()),
            "never the old version"
        );
    }
    let sent = "partner_gateway_fleet_invalidations_total{direction=\"sent\"}";
    let received = "partner_gateway_fleet_invalidations_total{direction=\"received\"}";
    assert_eq!(metric(&replicas[0], sent).await, Some(1.0));
    assert_eq!(metric(&replicas[1], received).await, Some(1.0));
    for gw in replicas {
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_purge_on_one_replica_empties_every_replica() {
    let Some((_redis, _up, replicas, order)) = three_holding("a_purge_empties_every_replica").await
    else {
        return;
    };
    let path = format!("/cache/customers/{CUSTOMER}/orders/{order}");
    let purge = send(
        http::Method::DELETE,
        &replicas[0].admin_url(&path),
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(purge.status, StatusCode::OK);
    assert_eq!(purge.json()["replicas"], 3, "every live replica confirmed");
    for gw in &replicas[1..] {
        assert_eq!(gw.stats().await["entries"], 0);
    }
    for gw in replicas {
        gw.stop().await;
    }
}

/// SPEC §12.2: one fill for the fleet — 300 concurrent requests for one cold key, spread over
/// three replicas, cause exactly one upstream request.
#[tokio::test]
async fn one_cold_key_is_filled_once_for_the_whole_fleet() {
    let Some((_redis, up, replicas)) = three_replicas("one_cold_key_is_filled_once", &[]).await
    else {
        return;
    };
    up.set_delay(Duration::from_millis(300));
    let order = new_order();
    let urls: Vec<String> = (0..300)
        .map(|i| replicas[i % 3].order_url(&order))
        .collect();
    let replies = concurrent_gets(urls, &[("authorization", TOKEN)]).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(up.hits(), 1, "one upstream request for the fleet");
    let waits = "partner_gateway_fleet_lease_waits_total";
    let mut waited = 0.0;
    for gw in &replicas {
        waited += metric(gw, waits).await.unwrap_or(0.0);
    }
    assert!(
        waited >= 2.0,
        "the other replicas waited for the lease ({waited})"
    );
    for gw in replicas {
        gw.stop().await;
    }
}

/// SPEC §12.1: an entry found in the shared tier answers by its age like any entry — past its
/// ttl but within `stale_while_revalidate` it is served `STALE` at once (the client does not
/// wait for the upstream) while one background revalidation refreshes it for the fleet.
#[tokio::test]
async fn a_stale_shared_entry_is_served_stale_while_one_refresh_runs() {
    let windows = [
        ("cache.ttl", "200ms"),
        ("cache.stale_while_revalidate", "1h"),
    ];
    let Some((_redis, up, replicas)) = three_replicas("a_stale_shared_entry", &windows).await
    else {
        return;
    };
    let auth = [("authorization", TOKEN)];
    let order = new_order();
    let first = get(&replicas[0].order_url(&order), &auth).await;
    assert_eq!(first.header("x-cache"), Some("MISS"));
    // Time is the subject: let the entry pass its 200 ms ttl with a wide margin.
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The refresh will take 2 s upstream; the STALE answers must not wait for it.
    up.set_delay(Duration::from_secs(2));
    let started = Instant::now();
    let urls = vec![replicas[1].order_url(&order), replicas[2].order_url(&order)];
    let stale = concurrent_gets(urls, &auth).await;
    for reply in &stale {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-cache"), Some("STALE"));
        assert_eq!(reply.body, first.body);
        assert_eq!(reply.header("etag"), first.header("etag"));
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered without waiting for the 2 s refresh ({:?})",
        started.elapsed()
    );
    // One conditional refresh for the fleet (the two replicas share it through the lease).
    up.wait_hits(2).await;
    let refresh = up.last_headers();
    assert_eq!(
        refresh.get("if-none-match").and_then(|v| v.to_str().ok()),
        first.header("etag"),
        "the refresh revalidates the stale entry"
    );
    // Both replicas' refreshes end (C's waits for B's through the lease) — no more reads here:
    // with a 200 ms ttl a late read would rightly start another refresh.
    eventually(Duration::from_secs(10), || async {
        let mut idle = true;
        for gw in &replicas[1..] {
            idle &= gw.stats().await["fills_in_progress"] == 0;
        }
        idle
    })
    .await;
    assert_eq!(up.hits(), 2, "one refresh for both replicas");
    for gw in replicas {
        gw.stop().await;
    }
}

/// SPEC §13 across the fleet: an order placed through one replica drops the customer's cached
/// subscriptions on every replica (memory and the shared tier) before it is answered.
#[tokio::test]
async fn an_order_placed_on_one_replica_drops_subscriptions_on_all() {
    let resources = [("cache.resources", "orders,subscriptions")];
    let Some((_redis, up, replicas)) =
        three_replicas("an_order_drops_subscriptions", &resources).await
    else {
        return;
    };
    let auth = [("authorization", TOKEN)];
    let subscription = new_order();
    let path = format!("/v1/customers/{CUSTOMER}/subscriptions/{subscription}");
    for gw in &replicas {
        get(&gw.url(&path), &auth).await;
    }
    for gw in &replicas {
        assert_eq!(x_cache(&gw.url(&path)).await.as_deref(), Some("HIT"));
    }
    assert_eq!(up.hits(), 1, "one fill for the fleet");
    let orders = format!("/v1/customers/{CUSTOMER}/orders");
    let placed = send(http::Method::POST, &replicas[0].url(&orders), &auth, "{}").await;
    assert!(placed.status.is_success());
    // Answered only once every replica dropped them from memory; the shared tier too.
    for gw in &replicas {
        assert_eq!(gw.stats().await["resources"]["subscriptions"], 0);
    }
    assert_eq!(
        x_cache(&replicas[1].url(&path)).await.as_deref(),
        Some("MISS")
    );
    assert_eq!(up.hits(), 3, "the fill, the order, one refill");
    for gw in replicas {
        gw.stop().await;
    }
}

/// SPEC §12.2: a fill that takes longer than a lease is taken for keeps its lease (renewed),
/// so the other replicas still wait for it instead of asking the upstream themselves.
#[tokio::test]
async fn a_slow_fill_keeps_its_lease_for_the_fleet() {
    let Some((_redis, up, a, b)) = two_replicas("a_slow_fill_keeps_its_lease").await else {
        return;
    };
    // Longer than the 3 s a lease is taken for at a time.
    up.set_delay(Duration::from_millis(4500));
    let order = new_order();
    let urls = vec![a.order_url(&order), b.order_url(&order)];
    let replies = concurrent_gets(urls, &[("authorization", TOKEN)]).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(up.hits(), 1, "one upstream request for both replicas");
    a.stop().await;
    b.stop().await;
}

/// SPEC §12.2: a replica that dies while it holds a key's lease blocks the others only for the
/// few seconds a lease is taken at a time (it is renewed while the fill runs), not for the
/// whole `upstream.request_timeout` (30 s here).
#[tokio::test]
async fn a_replica_that_dies_mid_fill_holds_the_key_only_seconds() {
    let Some(redis) = RedisServer::start("a_replica_that_dies_mid_fill") else {
        return;
    };
    let up = OrderUpstream::start().await;
    // A runs on a runtime of its own, so that it can die with its fill in flight.
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (url, base) = (redis.url(), up.base_url.clone());
    let a = doomed
        .spawn(async move {
            let fleet = [
                ("fleet.redis_url", url.as_str()),
                ("fleet.partition_secret", SECRET),
                ("fleet.timeout", "1s"),
            ];
            TestGateway::with(&base, &fleet).await
        })
        .await
        .expect("A");
    let b = replica(&up, &redis, &[]).await;
    for gw in [&a, &b] {
        eventually(Duration::from_secs(5), || async {
            fleet_view(gw).await == (true, 2)
        })
        .await;
    }
    let order = new_order();
    up.set_delay(Duration::from_secs(20));
    // A takes the lease and asks the upstream, which holds the answer for 20 s.
    let through_a = a.order_url(&order);
    tokio::spawn(async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let request = http::Request::get(through_a)
            .header("authorization", TOKEN)
            .body(http_body_util::Full::default())
            .expect("request");
        // A dies before it answers: the error is the point.
        let _ = client.request(request).await;
    });
    up.wait_hits(1).await;
    // B waits for A's fill.
    let through_b = b.order_url(&order);
    let waiting = tokio::spawn(async move { get(&through_b, &[("authorization", TOKEN)]).await });
    let waits = "partner_gateway_fleet_lease_waits_total";
    eventually(Duration::from_secs(5), || async {
        metric(&b, waits).await == Some(1.0)
    })
    .await;
    doomed.shutdown_background();
    up.set_delay(Duration::ZERO);
    let died = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("B answered within seconds of A's death, not after the 31 s lease")
        .expect("B's request");
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("x-cache"), Some("MISS"));
    assert!(died.elapsed() < Duration::from_secs(15));
    assert_eq!(up.hits(), 2, "A's lost fill and B's own");
    b.stop().await;
}

/// A rolling upgrade from the version before resources: an order purge published by an old
/// replica (`o:{c}:{o}`; it dropped only its own format of shared keys) is confirmed, and drops
/// this version's entries from memory and from the shared tier.
#[tokio::test]
async fn an_order_purge_from_the_previous_version_is_understood() {
    let Some((redis, up, a, b)) = two_replicas("a_purge_from_the_previous_version").await else {
        return;
    };
    let order = new_order();
    assert_eq!(x_cache(&a.order_url(&order)).await.as_deref(), Some("MISS"));
    assert_eq!(x_cache(&b.order_url(&order)).await.as_deref(), Some("HIT"));
    let message = format!("legacy-1 old-replica o:{CUSTOMER}:{order}");
    redis.command(&format!(
        "PUBLISH partner-gateway:{{partner-gateway}}:invalidate \"{message}\""
    ));
    let acks = "LLEN partner-gateway:{partner-gateway}:ack:legacy-1";
    eventually(Duration::from_secs(5), || async {
        redis.command(acks).starts_with(":2")
    })
    .await;
    for gw in [&a, &b] {
        assert_eq!(gw.stats().await["entries"], 0);
    }
    assert_eq!(x_cache(&b.order_url(&order)).await.as_deref(), Some("MISS"));
    assert_eq!(up.hits(), 2, "the shared copy went too");
    a.stop().await;
    b.stop().await;
}

/// Three replicas sharing one Redis, with `extra` settings; `None` without redis-server.
async fn three_replicas(
    test: &str,
    extra: &[(&str, &str)],
) -> Option<(RedisServer, OrderUpstream, Vec<TestGateway>)> {
    let redis = RedisServer::start(test)?;
    let up = OrderUpstream::start().await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&up, &redis, extra).await);
    }
    for gw in &replicas {
        eventually(Duration::from_secs(5), || async {
            fleet_view(gw).await == (true, 3)
        })
        .await;
    }
    Some((redis, up, replicas))
}

/// SPEC §12.4: `rate_limit_rps` and `rate_limit_burst` are the whole fleet's.
#[tokio::test]
async fn the_budget_is_the_fleets_not_each_replicas() {
    let settings = [
        ("upstream.rate_limit_rps", "1"),
        ("upstream.rate_limit_burst", "3"),
    ];
    let Some((_redis, up, replicas)) = three_replicas("the_budget_is_the_fleets", &settings).await
    else {
        return;
    };
    let started = Instant::now();
    let urls: Vec<String> = (0..30)
        .map(|i| replicas[i % 3].order_url(&new_order()))
        .collect();
    let replies = concurrent_gets(urls, &[("authorization", TOKEN)]).await;
    let elapsed = started.elapsed().as_secs_f64();
    let limited = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    // One bucket of 3 for the fleet, refilling at 1/s (alone, each replica would allow 3).
    let allowed = 3 + elapsed.ceil() as usize;
    assert!(
        up.hits() <= allowed,
        "{} upstream requests in {elapsed:.2} s",
        up.hits()
    );
    assert_eq!(limited + up.hits(), 30);
    for gw in replicas {
        gw.stop().await;
    }
}

/// SPEC §12.4: a cooldown opened on one replica applies on all of them.
#[tokio::test]
async fn a_cooldown_opened_on_one_replica_holds_on_the_others() {
    let Some((_redis, up, replicas)) = three_replicas("a_cooldown_holds_on_the_others", &[]).await
    else {
        return;
    };
    up.set_mode(Mode::Status(429));
    up.add_header("retry-after", "30");
    let auth = [("authorization", TOKEN)];
    let drawn = get(&replicas[0].order_url(&new_order()), &auth).await;
    assert_eq!(drawn.status, StatusCode::TOO_MANY_REQUESTS);
    up.set_mode(Mode::Normal);
    let hits = up.hits();
    for gw in &replicas[1..] {
        let local = get(&gw.order_url(&new_order()), &auth).await;
        assert_eq!(local.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(local.json()["errorName"], "UpstreamThrottled");
    }
    assert_eq!(
        up.hits(),
        hits,
        "the upstream was not asked during the cooldown"
    );
    for gw in replicas {
        gw.stop().await;
    }
}

/// SPEC §12.5: Redis slow (paused) — no request waits past about `fleet.timeout` for it.
#[tokio::test]
async fn a_paused_redis_delays_no_request_past_the_fleet_timeout() {
    let Some(redis) = RedisServer::start("a_paused_redis_delays_no_request") else {
        return;
    };
    let up = OrderUpstream::start().await;
    let gw = replica(&up, &redis, &[("fleet.timeout", "50ms")]).await;
    eventually(Duration::from_secs(5), || async { fleet_view(&gw).await.0 }).await;
    let auth = [("authorization", TOKEN)];
    let warm = new_order();
    assert_eq!(x_cache(&gw.order_url(&warm)).await.as_deref(), Some("MISS"));
    assert!(redis.command("CLIENT PAUSE 4000 ALL").starts_with("+OK"));
    for order in [new_order(), warm] {
        let started = Instant::now();
        let reply = get(&gw.order_url(&order), &auth).await;
        assert_eq!(reply.status, StatusCode::OK);
        // 50 ms for the one Redis call that meets the pause, then none; the 4 s pause is
        // never waited out (a wide margin for a loaded machine).
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(
        !fleet_view(&gw).await.0,
        "the replica works alone meanwhile"
    );
    gw.stop().await;
}

/// The same fleet on a 3-node Redis Cluster (SPEC §12): every operation's keys share a slot.
#[tokio::test]
async fn a_redis_cluster_works_the_same() {
    let Some(nodes) = RedisServer::start_cluster("a_redis_cluster_works_the_same") else {
        return;
    };
    let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
    let seeds = urls.join(",");
    let up = OrderUpstream::start().await;
    let settings = [
        ("fleet.redis_url", seeds.as_str()),
        ("fleet.cluster", "true"),
        ("fleet.partition_secret", SECRET),
        ("fleet.timeout", "1s"),
        ("cache.ttl", "1h"),
    ];
    let a = TestGateway::with(&up.base_url, &settings).await;
    let b = TestGateway::with(&up.base_url, &settings).await;
    for gw in [&a, &b] {
        eventually(Duration::from_secs(10), || async {
            fleet_view(gw).await == (true, 2)
        })
        .await;
    }
    let auth = [("authorization", TOKEN)];
    let order = new_order();
    assert_eq!(x_cache(&a.order_url(&order)).await.as_deref(), Some("MISS"));
    assert_eq!(x_cache(&b.order_url(&order)).await.as_deref(), Some("HIT"));
    assert_eq!(
        up.hits(),
        1,
        "the shared tier on the cluster shared the fill"
    );
    up.bump(&order);
    assert_eq!(patch(&a, &order).await, StatusCode::OK);
    let after = get(&b.order_url(&order), &auth).await;
    let new_etag = version_etag(&order, 2);
    assert_eq!(after.header("etag"), Some(new_etag.as_str()));
    a.stop().await;
    b.stop().await;
}

/// SPEC §12.5: with Redis Cluster, losing any one node while the cluster still serves (its
/// replica promoted) keeps the fleet: nothing, the invalidation channel included, waits for the
/// first URL of `fleet.redis_url` — here the node that is lost.
#[tokio::test]
async fn a_cluster_that_loses_its_first_node_keeps_the_fleet() {
    let test = "a_cluster_that_loses_its_first_node";
    let Some(mut nodes) = RedisServer::start_cluster_with_replicas(test) else {
        return;
    };
    assert_eq!(nodes[0].role(), "master", "the first node is a master");
    let seed: Vec<String> = nodes.iter().map(RedisServer::url).collect();
    let seed = seed.join(",");
    let up = OrderUpstream::start().await;
    let settings = [
        ("fleet.redis_url", seed.as_str()),
        ("fleet.cluster", "true"),
        ("fleet.partition_secret", SECRET),
        ("fleet.timeout", "500ms"),
        ("cache.ttl", "1h"),
    ];
    let a = TestGateway::with(&up.base_url, &settings).await;
    let b = TestGateway::with(&up.base_url, &settings).await;
    for gw in [&a, &b] {
        eventually(Duration::from_secs(10), || async {
            fleet_view(gw).await == (true, 2)
        })
        .await;
    }

    nodes[0].stop();
    let lost = Instant::now();
    // The fleet is whole again: both replicas up, and a purge on A confirmed by B.
    let purge_path = format!("/cache/customers/{CUSTOMER}");
    eventually(Duration::from_secs(15), || async {
        let purge = send(
            http::Method::DELETE,
            &a.admin_url(&purge_path),
            &[],
            bytes::Bytes::new(),
        )
        .await;
        fleet_view(&a).await.0 && fleet_view(&b).await.0 && purge.json()["replicas"] == 2
    })
    .await;
    let whole = lost.elapsed();
    // cluster-node-timeout (1 s) + 2 s, with room for a loaded test machine.
    assert!(
        whole < Duration::from_secs(8),
        "the fleet took {whole:?} to recover"
    );

    // A write through A reaches B's memory before it is answered.
    let order = new_order();
    assert_eq!(x_cache(&b.order_url(&order)).await.as_deref(), Some("MISS"));
    assert_eq!(x_cache(&b.order_url(&order)).await.as_deref(), Some("HIT"));
    up.bump(&order);
    assert_eq!(patch(&a, &order).await, StatusCode::OK);
    let after = get(&b.order_url(&order), &[("authorization", TOKEN)]).await;
    assert_eq!(after.header("etag"), Some(version_etag(&order, 2).as_str()));
    eprintln!("{test}: the fleet was whole again {whole:?} after its first node was lost");
    a.stop().await;
    b.stop().await;
}

/// SPEC §12.5: cut off from Redis, a replica keeps its share of the fleet's budget —
/// `rate_limit_rps` and the burst divided by the live replicas last seen.
#[tokio::test]
async fn alone_a_replica_keeps_its_share_of_the_budget() {
    let settings = [
        ("upstream.rate_limit_rps", "3"),
        ("upstream.rate_limit_burst", "3"),
    ];
    let Some((mut redis, up, replicas)) =
        three_replicas("alone_a_replica_keeps_its_share", &settings).await
    else {
        return;
    };
    redis.stop();
    let alone = &replicas[0];
    eventually(Duration::from_secs(5), || async {
        !fleet_view(alone).await.0
    })
    .await;
    let started = Instant::now();
    let urls: Vec<String> = (0..12).map(|_| alone.order_url(&new_order())).collect();
    let replies = concurrent_gets(urls, &[("authorization", TOKEN)]).await;
    let elapsed = started.elapsed().as_secs_f64();
    // A third of the bucket (1) and of the rate (1/s); with the whole budget it would be 3 + 3/s.
    let share = 1 + elapsed.ceil() as usize;
    assert!(
        up.hits() <= share,
        "{} upstream requests in {elapsed:.2} s",
        up.hits()
    );
    assert!(replies
        .iter()
        .all(|r| r.status != StatusCode::INTERNAL_SERVER_ERROR));
    for gw in replicas {
        gw.stop().await;
    }
}

/// SPEC §12.5: a replica replays the invalidations it made while cut off, so its own writes
/// reach the shared tier and the others when it rejoins.
#[tokio::test]
async fn a_write_made_while_cut_off_is_replayed_on_rejoin() {
    let Some((redis, up, a, b)) = two_replicas("a_write_made_while_cut_off_is_replayed").await
    else {
        return;
    };
    let auth = [("authorization", TOKEN)];
    let order = new_order();
    assert_eq!(x_cache(&a.order_url(&order)).await.as_deref(), Some("MISS"));
    // Redis keeps its data but answers nobody for a while: both replicas lose it.
    assert!(redis.command("CLIENT PAUSE 1500 ALL").starts_with("+OK"));
    eventually(Duration::from_secs(5), || async { !fleet_view(&a).await.0 }).await;
    up.bump(&order);
    assert_eq!(patch(&a, &order).await, StatusCode::OK);
    let sent = "partner_gateway_fleet_invalidations_total{direction=\"sent\"}";
    eventually(Duration::from_secs(10), || async {
        metric(&a, sent).await == Some(1.0) && fleet_view(&b).await.0
    })
    .await;
    // The old version is gone from the shared tier too: B fetches the new one.
    let after = get(&b.order_url(&order), &auth).await;
    let new_etag = version_etag(&order, 2);
    assert_eq!(after.header("etag"), Some(new_etag.as_str()));
    a.stop().await;
    b.stop().await;
}
