//! The cache's promise across a fleet (SPEC §4.2, §12.3), against a real `redis-server`: a read
//! on any replica after a write's answer never gets the older version, and no fill that was
//! sent upstream before an invalidation stores its body in the shared tier after it. Where
//! `redis-server` is not installed the tests say so and do not run (under `CI=true` they fail).

mod common {
    pub mod gateway;
    pub mod http;
    #[allow(dead_code)]
    pub mod order_upstream;
    #[allow(dead_code)]
    pub mod orders;
    pub mod paths;
    pub mod racing_upstream;
    #[allow(dead_code)]
    pub mod redis;
    pub mod wait;
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{gateway::*, http::*, orders::*, racing_upstream::*, redis::*, wait::*};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use partner_gateway::cache::key::{KeyMaker, Keyed};
use partner_gateway::cache::policy::Policy;
use partner_gateway::cache::shared::{Lease, SharedTier};
use partner_gateway::cache::store::Entry;
use partner_gateway::config::{Config, Partition, Sources};
use partner_gateway::fleet::link::Link;
use partner_gateway::guid::Guid;
use partner_gateway::observe::metrics::Metrics;
use partner_gateway::resource::{ItemRef, Purge, Resource};

const AUTH: (&str, &str) = ("authorization", "Bearer fleet-promise");
const SECRET: &str = "fleet-secret-fleet-secret-fleet-secret";

async fn replica(up: &RacingUpstream, redis: &RedisServer) -> TestGateway {
    replica_with(up, redis, &[]).await
}

async fn replica_with(
    up: &RacingUpstream,
    redis: &RedisServer,
    extra: &[(&str, &str)],
) -> TestGateway {
    let url = redis.url();
    let mut overrides = vec![
        ("fleet.redis_url", url.as_str()),
        ("fleet.partition_secret", SECRET),
        ("fleet.timeout", "1s"),
    ];
    overrides.extend_from_slice(extra);
    TestGateway::with(&up.base_url, &overrides).await
}

/// Three replicas with `extra` settings, once each counts all three.
async fn three_replicas(
    up: &RacingUpstream,
    redis: &RedisServer,
    extra: &[(&str, &str)],
) -> Vec<Arc<TestGateway>> {
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Arc::new(replica_with(up, redis, extra).await));
    }
    for gw in &replicas {
        eventually(Duration::from_secs(5), || async {
            let stats = gw.stats().await;
            stats["fleet"]["up"] == true && stats["fleet"]["replicas"] == 3
        })
        .await;
    }
    replicas
}

/// Stops every replica (each once nothing else holds it).
async fn stop_all(replicas: Vec<Arc<TestGateway>>) {
    for gw in replicas {
        if let Ok(gw) = Arc::try_unwrap(gw) {
            gw.stop().await;
        }
    }
}

fn etag(order: &str, version: u32) -> String {
    format!("\"{}\"", etag_for(order, version))
}

#[tokio::test]
async fn a_read_on_any_replica_after_a_write_never_gets_a_fill_sent_before_it() {
    let Some(redis) = RedisServer::start("fleet_promise_race") else {
        return;
    };
    let up = RacingUpstream::start().await;
    let replicas = three_replicas(&up, &redis, &[]).await;
    let order = new_order();

    // B fills: the upstream has read version 1 and answers in 1.5 s.
    up.set_read_delay(Duration::from_millis(1500));
    let url_b = replicas[1].order_url(&order);
    let first = tokio::spawn(async move { get(&url_b, &[AUTH]).await });
    up.wait_for(1, 0).await;

    // A write through A is applied and answered meanwhile.
    up.set_read_delay(Duration::from_millis(100));
    let headers = [AUTH, ("content-type", "application/json")];
    let written = send(
        Method::PATCH,
        &replicas[0].order_url(&order),
        &headers,
        "{}",
    )
    .await;
    assert_eq!(written.status, StatusCode::OK);

    // Reads sent after the write's answer, on the other replicas, get version 2.
    let (url_c, url_b) = (replicas[2].order_url(&order), replicas[1].order_url(&order));
    let (on_c, on_b) = tokio::join!(get(&url_c, &[AUTH]), get(&url_b, &[AUTH]));
    for (name, reply) in [("C", &on_c), ("B", &on_b)] {
        assert_eq!(reply.status, StatusCode::OK, "{name}");
        assert_eq!(
            reply.header("etag"),
            Some(etag(&order, 2).as_str()),
            "{name}"
        );
    }

    // B's older fill answers its own caller version 1 and stores it in neither tier: every
    // replica reads version 2, and so does a new one that has only the shared tier.
    let first = first.await.expect("first read");
    assert_eq!(first.header("etag"), Some(etag(&order, 1).as_str()));
    for gw in &replicas {
        let reply = get(&gw.order_url(&order), &[AUTH]).await;
        assert_eq!(reply.header("etag"), Some(etag(&order, 2).as_str()));
    }
    let fresh = replica(&up, &redis).await;
    eventually(Duration::from_secs(5), || async {
        fresh.stats().await["fleet"]["up"] == true
    })
    .await;
    let gets = up.gets();
    let reply = get(&fresh.order_url(&order), &[AUTH]).await;
    assert_eq!(reply.header("etag"), Some(etag(&order, 2).as_str()));
    assert_eq!(reply.header("x-cache"), Some("HIT"), "from the shared tier");
    assert_eq!(up.gets(), gets, "no upstream request for it");
    fresh.stop().await;
    stop_all(replicas).await;
}

/// SPEC §15.1 in fleet mode: pollers of one pending order on three replicas cost at most one
/// upstream request per `unsettled_ttl` for the whole fleet (its L2 copy lives as the L1 one).
#[tokio::test]
async fn pollers_on_three_replicas_cost_one_upstream_request_per_unsettled_ttl_for_the_fleet() {
    let Some(redis) = RedisServer::start("fleet_promise_unsettled") else {
        return;
    };
    let up = RacingUpstream::start().await;
    up.set_read_delay(Duration::from_millis(50));
    let settings = [("cache.ttl", "30s"), ("cache.unsettled_ttl", "500ms")];
    let replicas = three_replicas(&up, &redis, &settings).await;
    let order = new_order();
    up.set_status(&order, "pending");
    let until = Instant::now() + Duration::from_millis(2500);
    let pollers: Vec<_> = (0..9)
        .map(|n| {
            let (gw, order) = (replicas[n % 3].clone(), order.clone());
            tokio::spawn(async move {
                let mut polls = 0;
                while Instant::now() < until {
                    let reply = get(&gw.order_url(&order), &[AUTH]).await;
                    assert_eq!(reply.status, StatusCode::OK);
                    assert_ne!(reply.header("x-cache"), Some("STALE"));
                    polls += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                polls
            })
        })
        .collect();
    let mut polls = 0;
    for poller in pollers {
        polls += poller.await.expect("poller");
    }
    let asked = up.gets();
    assert!(
        asked <= 2500 / 500 + 2,
        "{asked} upstream requests for {polls} polls"
    );
    assert!(polls >= 150, "the pollers polled ({polls})");
    stop_all(replicas).await;
}

/// The shared tier of a fleet on `redis`, its link up, as a replica's fill uses it.
async fn shared_tier(redis: &RedisServer) -> (SharedTier, Arc<Link>) {
    let env = [
        ("PARTNER_GATEWAY__FLEET__REDIS_URL", redis.url()),
        (
            "PARTNER_GATEWAY__FLEET__PARTITION_SECRET",
            SECRET.to_owned(),
        ),
    ];
    let sources = Sources {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Sources::default()
    };
    let config = Config::load(&sources).expect("config");
    let metrics = Arc::new(Metrics::new());
    let link = Arc::new(Link::new(&config.fleet, metrics.clone()));
    link.set_subscribed(true);
    tokio::spawn(link.clone().watch(Duration::from_millis(50)));
    eventually(Duration::from_secs(5), || async { link.is_up() }).await;
    let policy = Policy::new(&config.cache);
    let tier = SharedTier::new(link.clone(), &config.fleet.name, policy, metrics);
    (tier, link)
}

fn entry(version: u32) -> Entry {
    Entry::new(
        StatusCode::OK,
        Bytes::from(format!("{{\"v\":{version}}}")),
        None,
        Some(HeaderValue::from_str(&format!("\"v{version}\"")).expect("etag")),
        Instant::now(),
    )
}

#[tokio::test]
async fn a_fill_that_read_the_generation_before_a_purge_cannot_store_after_it() {
    let Some(redis) = RedisServer::start("fleet_promise_generation") else {
        return;
    };
    let (tier, _link) = shared_tier(&redis).await;
    let item = ItemRef {
        resource: Resource::Orders,
        customer: Guid::parse(CUSTOMER).expect("customer"),
        id: Guid::parse(&new_order()).expect("order"),
    };
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer t"));
    let Keyed::Key(key) = KeyMaker::new(Partition::Shared).key(item, &headers, None) else {
        panic!("a request with a credential has a key");
    };

    // A fill takes the lease, which reads the customer's generation ...
    let Lease::Held(_, before) = tier.take_lease(&key, "-", Duration::from_secs(3)).await else {
        panic!("the lease is free");
    };
    // ... then a write's invalidation purges the shared tier (on any replica) ...
    tier.purge(Purge::One(item)).await;
    // ... and the older fill's store is refused, atomically, in Redis.
    assert!(!tier.put(&key, &entry(1), before).await, "refused");
    assert!(
        tier.get(&key).await.is_none(),
        "the older body is not there"
    );

    // A fill that read the generation after the purge stores.
    let now = tier.generation(&key).await.expect("generation");
    assert!(now > before);
    assert!(tier.put(&key, &entry(2), now).await);
    let stored = tier.get(&key).await.expect("stored");
    assert_eq!(stored.body, Bytes::from_static(b"{\"v\":2}"));

    // Every key it wrote expires (the generation too).
    let keys = redis.command("KEYS *");
    for key in keys.lines().filter(|k| k.contains(':')) {
        let ttl = redis.command(&format!("PTTL {key}"));
        assert!(
            ttl.trim()
                .trim_start_matches(':')
                .parse::<i64>()
                .is_ok_and(|t| t > 0),
            "{key} has an expiry ({ttl})"
        );
    }
}
