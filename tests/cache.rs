//! The order cache from outside (SPEC §3.3, §4): states, fills, conditionals, partitions,
//! invalidation, bounds.

mod common {
    pub mod gateway;
    pub mod http;
    pub mod ids;
    pub mod order_upstream;
    pub mod orders;
    pub mod paths;
    pub mod wait;
}

use std::time::Duration;

use bytes::Bytes;
use common::{gateway::*, http::*, ids::*, order_upstream::*, orders::*, paths::*, wait::*};
use http::{Method, StatusCode};
use httpmock::prelude::*;

const TOKEN_A: &str = "Bearer token-a";
const TOKEN_B: &str = "Bearer token-b";

fn state(reply: &Reply) -> &str {
    reply.header("x-cache").unwrap_or("<none>")
}

#[tokio::test]
async fn miss_then_hit_with_own_ids_age_etag_and_unchanged_bytes() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let order = new_order();
    let url = gw.order_url(&order);
    let first = get(
        &url,
        &[("authorization", TOKEN_A), ("ms-correlationid", GUID_A)],
    )
    .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(state(&first), "MISS");
    assert_eq!(first.header("ms-correlationid"), Some(GUID_A));
    let etag = format!("\"{}\"", etag_for(&order, 1));
    assert_eq!(first.header("etag"), Some(etag.as_str()));
    assert_eq!(first.header("age"), Some("0"));
    assert_eq!(
        first.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(first.body, Bytes::from(order_json(CUSTOMER, &order, 1)));
    assert!(first.header("date").is_some());

    let second = get(
        &url,
        &[("authorization", TOKEN_A), ("ms-correlationid", GUID_B)],
    )
    .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(state(&second), "HIT");
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("etag"), Some(etag.as_str()));
    assert!(second.header("age").is_some());
    assert!(second.header("date").is_some());
    // The cached answer carries this request's IDs, never the filler's.
    assert_eq!(second.header("ms-correlationid"), Some(GUID_B));
    assert_ne!(second.header("ms-requestid"), first.header("ms-requestid"));
    assert_eq!(up.hits(), 1);

    // Upper-case ids in the path reach the same entry.
    let upper = get(
        &gw.url(&order_path(&CUSTOMER.to_uppercase(), &order.to_uppercase())),
        &[("authorization", TOKEN_A)],
    )
    .await;
    assert_eq!(state(&upper), "HIT");
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn head_is_answered_from_the_same_entry_without_a_body() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let order = new_order();
    let url = gw.order_url(&order);
    let head = send(
        Method::HEAD,
        &url,
        &[("authorization", TOKEN_A)],
        Bytes::new(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(state(&head), "MISS");
    assert!(head.body.is_empty());
    let len = order_json(CUSTOMER, &order, 1).len().to_string();
    assert_eq!(head.header("content-length"), Some(len.as_str()));
    let get_reply = get(&url, &[("authorization", TOKEN_A)]).await;
    assert_eq!(state(&get_reply), "HIT");
    assert_eq!(get_reply.body.len().to_string(), len);
    let head2 = send(
        Method::HEAD,
        &url,
        &[("authorization", TOKEN_A)],
        Bytes::new(),
    )
    .await;
    assert_eq!(state(&head2), "HIT");
    assert!(head2.body.is_empty());
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn stale_while_revalidate_serves_at_once_and_refreshes_once() {
    let Warmed { up, gw, order } = Warmed::start(
        &[
            ("cache.ttl", "200ms"),
            ("cache.stale_while_revalidate", "30s"),
        ],
        TOKEN_A,
    )
    .await;
    let url = gw.order_url(&order);
    tokio::time::sleep(Duration::from_millis(400)).await;
    up.set_delay(Duration::from_millis(1000));
    // A burst of requests in the stale window: all STALE at once, one refresh upstream.
    let urls = vec![url.clone(); 10];
    for reply in concurrent_gets(urls, &[("authorization", TOKEN_A)]).await {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(state(&reply), "STALE");
    }
    up.wait_hits(2).await;
    eventually(Duration::from_secs(10), || async {
        state(&get(&url, &[("authorization", TOKEN_A)]).await) == "HIT"
    })
    .await;
    assert_eq!(up.hits(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn expired_entries_are_revalidated_with_if_none_match() {
    let Warmed { up, gw, order } = Warmed::start(
        &[
            ("cache.ttl", "100ms"),
            ("cache.stale_while_revalidate", "0s"),
        ],
        TOKEN_A,
    )
    .await;
    let url = gw.order_url(&order);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let reply = get(&url, &[("authorization", TOKEN_A)]).await;
    assert_eq!(state(&reply), "REVALIDATED");
    assert_eq!(reply.body, Bytes::from(order_json(CUSTOMER, &order, 1)));
    assert_eq!(reply.header("age"), Some("0"));
    assert_eq!(up.inm_hits(), 1);
    // The refreshed entry is fresh again.
    assert_eq!(
        state(&get(&url, &[("authorization", TOKEN_A)]).await),
        "HIT"
    );
    assert_eq!(up.hits(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn revalidation_by_refetch_compares_attributes_etag() {
    let Warmed { up, gw, order } = Warmed::start(
        &[
            ("cache.ttl", "100ms"),
            ("cache.stale_while_revalidate", "0s"),
        ],
        TOKEN_A,
    )
    .await;
    // Like Partner Center: If-None-Match is ignored, the body's etag tells. (The fill above
    // sent none.)
    up.honor_if_none_match(false);
    let url = gw.order_url(&order);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        state(&get(&url, &[("authorization", TOKEN_A)]).await),
        "REVALIDATED"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    up.bump(&order);
    let changed = get(&url, &[("authorization", TOKEN_A)]).await;
    assert_eq!(state(&changed), "MISS");
    let etag = format!("\"{}\"", etag_for(&order, 2));
    assert_eq!(changed.header("etag"), Some(etag.as_str()));
    assert_eq!(changed.body, Bytes::from(order_json(CUSTOMER, &order, 2)));
    gw.stop().await;
}

#[tokio::test]
async fn stale_is_served_when_the_upstream_fails_within_stale_if_error() {
    let Warmed { up, gw, order } = Warmed::start(
        &[
            ("cache.ttl", "100ms"),
            ("cache.stale_while_revalidate", "0s"),
            ("cache.stale_if_error", "5m"),
            ("upstream.request_timeout", "300ms"),
        ],
        TOKEN_A,
    )
    .await;
    let url = gw.order_url(&order);
    let first_body = Bytes::from(order_json(CUSTOMER, &order, 1));
    for (mode, delay) in [
        (Mode::Status(500), Duration::ZERO),
        (Mode::Status(503), Duration::ZERO),
        (Mode::Reset, Duration::ZERO),
        (Mode::Normal, Duration::from_secs(3)),
    ] {
        tokio::time::sleep(Duration::from_millis(200)).await;
        up.set_mode(mode);
        up.set_delay(delay);
        let reply = get(&url, &[("authorization", TOKEN_A)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{mode:?}");
        assert_eq!(state(&reply), "STALE", "{mode:?} {delay:?}");
        assert_eq!(reply.body, first_body);
    }
    // Refused: nothing listens any more.
    up.stop().await;
    let reply = get(&url, &[("authorization", TOKEN_A)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(state(&reply), "STALE");
    // A cold key has nothing to fall back on.
    let cold = get(&gw.order_url(&new_order()), &[("authorization", TOKEN_A)]).await;
    assert_eq!(cold.status, StatusCode::BAD_GATEWAY);
    assert_eq!(cold.header("x-cache"), None);
    gw.stop().await;
}

/// A purge while a revalidation is in flight: if the upstream then fails, the purged version
/// is not handed out as `STALE` (not even to the requests that joined the fill after the purge).
#[tokio::test]
async fn a_purged_entry_does_not_come_back_as_stale_when_the_upstream_fails() {
    let Warmed { up, gw, order } = Warmed::start(
        &[
            ("cache.ttl", "100ms"),
            ("cache.stale_while_revalidate", "0s"),
            ("cache.stale_if_error", "5m"),
        ],
        TOKEN_A,
    )
    .await;
    let url = gw.order_url(&order);
    // Time is the subject: past the 100 ms ttl with a wide margin.
    tokio::time::sleep(Duration::from_millis(300)).await;
    up.set_mode(Mode::Status(503));
    up.set_delay(Duration::from_millis(800));
    let revalidating = {
        let url = url.clone();
        tokio::spawn(async move { get(&url, &[("authorization", TOKEN_A)]).await })
    };
    up.wait_hits(2).await;
    let purge = format!("/cache/customers/{CUSTOMER}/orders/{order}");
    let purged = send(Method::DELETE, &gw.admin_url(&purge), &[], Bytes::new()).await;
    assert_eq!(purged.json()["purged"], 1);
    let joined = get(&url, &[("authorization", TOKEN_A)]).await;
    let first = revalidating.await.expect("request");
    for reply in [&first, &joined] {
        assert_ne!(state(reply), "STALE", "the purged version came back");
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    gw.stop().await;
}

#[tokio::test]
async fn beyond_stale_if_error_the_failure_reaches_the_client() {
    let Warmed { up, gw, order } = Warmed::start(
        &[
            ("cache.ttl", "100ms"),
            ("cache.stale_while_revalidate", "0s"),
            ("cache.stale_if_error", "0s"),
        ],
        TOKEN_A,
    )
    .await;
    let url = gw.order_url(&order);
    tokio::time::sleep(Duration::from_millis(250)).await;
    up.set_mode(Mode::Status(500));
    let reply = get(&url, &[("authorization", TOKEN_A)]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(state(&reply), "MISS");
    assert!(String::from_utf8_lossy(&reply.body).contains("simulated"));
    gw.stop().await;
}

#[tokio::test]
async fn concurrent_cold_requests_cause_one_upstream_request() {
    let up = OrderUpstream::start().await;
    up.set_delay(Duration::from_millis(300));
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let order = new_order();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let url = gw.order_url(&order);
        tasks.push(tokio::spawn(async move {
            let id = uuid::Uuid::new_v4().to_string();
            let reply = get(&url, &[("authorization", TOKEN_A), ("ms-requestid", &id)]).await;
            (i, id, reply)
        }));
    }
    for task in tasks {
        let (_, id, reply) = task.await.expect("task");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, Bytes::from(order_json(CUSTOMER, &order, 1)));
        // Every waiter gets its own IDs on the shared answer.
        assert_eq!(reply.header("ms-requestid"), Some(id.as_str()));
    }
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn concurrent_requests_share_one_uncacheable_answer() {
    let up = OrderUpstream::start().await;
    up.set_delay(Duration::from_millis(300));
    up.set_mode(Mode::Status(503));
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let urls = vec![gw.order_url(&new_order()); 20];
    for reply in concurrent_gets(urls, &[("authorization", TOKEN_A)]).await {
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(state(&reply), "MISS");
        assert!(String::from_utf8_lossy(&reply.body).contains("simulated"));
    }
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_fill_completes_when_its_client_hangs_up() {
    let up = OrderUpstream::start().await;
    up.set_delay(Duration::from_millis(500));
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let url = gw.order_url(&new_order());
    let impatient = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[("authorization", TOKEN_A)]).await }
    });
    up.wait_hits(1).await;
    impatient.abort();
    eventually(Duration::from_secs(10), || async {
        gw.stats().await["entries"] == 1
    })
    .await;
    let reply = get(&url, &[("authorization", TOKEN_A)]).await;
    assert_eq!(state(&reply), "HIT");
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn uncacheable_answers_pass_through_as_received_and_are_not_stored() {
    let upstream = MockServer::start_async().await;
    let big = format!(
        r#"{{"id":"ORDER","attributes":{{"etag":"e"}},"pad":"{}"}}"#,
        "x".repeat(5000)
    );
    type Case = (&'static str, u16, Vec<(&'static str, &'static str)>, String);
    let cases: Vec<Case> = vec![
        (
            "status",
            202,
            vec![("content-type", "application/json")],
            r#"{"id":"ORDER","attributes":{"etag":"e"}}"#.to_owned(),
        ),
        (
            "not_json",
            200,
            vec![("content-type", "text/plain")],
            "just text".to_owned(),
        ),
        (
            "broken_json",
            200,
            vec![("content-type", "application/json")],
            "{\"id\":".to_owned(),
        ),
        (
            "id_mismatch",
            200,
            vec![("content-type", "application/json")],
            r#"{"id":"00000000-0000-0000-0000-000000000000","attributes":{"etag":"e"}}"#.to_owned(),
        ),
        (
            "no_etag",
            200,
            vec![("content-type", "application/json")],
            r#"{"id":"ORDER","attributes":{}}"#.to_owned(),
        ),
        (
            "no_store",
            200,
            vec![
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ],
            r#"{"id":"ORDER","attributes":{"etag":"e"}}"#.to_owned(),
        ),
        (
            "too_large",
            200,
            vec![("content-type", "application/json")],
            big,
        ),
    ];
    let gw = TestGateway::with(&upstream.base_url(), &[("cache.max_entry_bytes", "4096")]).await;
    for (name, status, headers, body) in cases {
        let order = new_order();
        let url = gw.order_url(&order);
        let body = body.replace("ORDER", &order);
        let mock = upstream
            .mock_async(|when, then| {
                when.method(GET).path(order_path(CUSTOMER, &order));
                let mut t = then.status(status).header("x-upstream-marker", name);
                for (k, v) in &headers {
                    t = t.header(*k, *v);
                }
                t.body(body.as_str());
            })
            .await;
        for round in 0..2 {
            let reply = get(&url, &[("authorization", TOKEN_A)]).await;
            assert_eq!(reply.status.as_u16(), status, "{name}");
            assert_eq!(reply.body, Bytes::from(body.clone()), "{name}");
            assert_eq!(reply.header("x-upstream-marker"), Some(name), "{name}");
            for (k, v) in &headers {
                assert_eq!(reply.header(k), Some(*v), "{name} {k}");
            }
            assert_eq!(state(&reply), "MISS", "{name} round {round}");
        }
        mock.assert_calls_async(2).await;
    }
    assert_eq!(gw.stats().await["entries"], 0);
    gw.stop().await;
}

#[tokio::test]
async fn if_none_match_gets_304_even_right_after_a_miss() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let order = new_order();
    let url = gw.order_url(&order);
    let etag = format!("\"{}\"", etag_for(&order, 1));
    let weak = format!("W/{etag}");
    let list = format!("\"other\", {etag}");
    let after_miss = get(
        &url,
        &[
            ("authorization", TOKEN_A),
            ("if-none-match", &etag),
            ("ms-correlationid", GUID_A),
        ],
    )
    .await;
    assert_eq!(after_miss.status, StatusCode::NOT_MODIFIED);
    assert_eq!(state(&after_miss), "MISS");
    assert_eq!(after_miss.header("etag"), Some(etag.as_str()));
    assert!(after_miss.header("age").is_some());
    assert_eq!(after_miss.header("ms-correlationid"), Some(GUID_A));
    assert!(after_miss.body.is_empty());
    for inm in [etag.as_str(), weak.as_str(), list.as_str(), "*"] {
        let reply = get(&url, &[("authorization", TOKEN_A), ("if-none-match", inm)]).await;
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "{inm}");
        assert_eq!(state(&reply), "HIT");
        assert_eq!(reply.header("etag"), Some(etag.as_str()));
    }
    let other = get(
        &url,
        &[("authorization", TOKEN_A), ("if-none-match", "\"old\"")],
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);
    assert!(!other.body.is_empty());
    assert_eq!(up.hits(), 1);
    // The client's conditional never reaches the upstream on a fill.
    assert!(up.last_headers().get("if-none-match").is_none());
    gw.stop().await;
}

#[tokio::test]
async fn request_cache_control_directives() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let order = new_order();
    let url = gw.order_url(&order);
    let auth = ("authorization", TOKEN_A);

    let cold = get(&url, &[auth, ("cache-control", "only-if-cached")]).await;
    assert_eq!(cold.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(cold.json()["errorName"], "NotCached");
    assert_eq!(up.hits(), 0);

    assert_eq!(state(&get(&url, &[auth]).await), "MISS");
    let warm = get(&url, &[auth, ("cache-control", "only-if-cached")]).await;
    assert_eq!(state(&warm), "HIT");

    for cc in ["no-cache", "max-age=0"] {
        let hits = up.hits();
        let reply = get(&url, &[auth, ("cache-control", cc)]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(state(&reply), "REVALIDATED", "{cc}");
        assert_eq!(up.hits(), hits + 1, "{cc}");
    }
    let hits = up.hits();
    let bypass = get(&url, &[auth, ("cache-control", "no-store")]).await;
    assert_eq!(state(&bypass), "BYPASS");
    assert_eq!(bypass.status, StatusCode::OK);
    assert_eq!(up.hits(), hits + 1);
    // The entry is left as it was.
    assert_eq!(state(&get(&url, &[auth]).await), "HIT");
    assert_eq!(up.hits(), hits + 1);
    gw.stop().await;
}

#[tokio::test]
async fn credential_partitions_never_share_and_no_token_is_never_cached() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let order = new_order();
    let url = gw.order_url(&order);
    assert_eq!(
        state(&get(&url, &[("authorization", TOKEN_A)]).await),
        "MISS"
    );
    assert_eq!(
        state(&get(&url, &[("authorization", TOKEN_B)]).await),
        "MISS"
    );
    assert_eq!(
        state(&get(&url, &[("authorization", TOKEN_A)]).await),
        "HIT"
    );
    assert_eq!(
        state(&get(&url, &[("authorization", TOKEN_B)]).await),
        "HIT"
    );
    assert_eq!(up.hits(), 2);
    for _ in 0..2 {
        let anonymous = get(&url, &[]).await;
        assert_eq!(state(&anonymous), "BYPASS");
    }
    assert_eq!(up.hits(), 4);
    // The locale is part of the key.
    let fr = get(&url, &[("authorization", TOKEN_A), ("x-locale", "fr-FR")]).await;
    assert_eq!(state(&fr), "MISS");
    assert_eq!(up.hits(), 5);
    gw.stop().await;
}

/// One HTTP/1.1 exchange on an open connection: the `X-Cache` of the answer, body read.
async fn exchange_on(stream: &mut tokio::net::TcpStream, path: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("answer within 10 s")
            .expect("read");
        assert!(n > 0, "the gateway closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    let length: usize = header("content-length")
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "the gateway closed the connection mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    header("x-cache")
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase()
}

#[tokio::test]
async fn credentials_alternating_on_one_connection_keep_their_own_partitions() {
    // The credential fingerprint is remembered per connection; a connection that switches
    // credentials must still never see another credential's entry.
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let path = order_path(CUSTOMER, &new_order());
    let mut stream = tokio::net::TcpStream::connect(gw.front)
        .await
        .expect("connect");
    let mut states = Vec::new();
    for token in [TOKEN_A, TOKEN_B, TOKEN_A, TOKEN_B, "Bearer token-c"] {
        states.push(exchange_on(&mut stream, &path, token).await);
    }
    assert_eq!(states, ["MISS", "MISS", "HIT", "HIT", "MISS"]);
    assert_eq!(up.hits(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn shared_partition_serves_every_credential_but_not_anonymous_calls() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[("cache.partition", "shared")]).await;
    let order = new_order();
    let url = gw.order_url(&order);
    assert_eq!(
        state(&get(&url, &[("authorization", TOKEN_A)]).await),
        "MISS"
    );
    assert_eq!(
        state(&get(&url, &[("authorization", TOKEN_B)]).await),
        "HIT"
    );
    assert_eq!(state(&get(&url, &[]).await), "BYPASS");
    assert_eq!(up.hits(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn disabled_cache_forwards_everything_as_bypass() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[("cache.enabled", "false")]).await;
    let order = new_order();
    let url = gw.order_url(&order);
    for _ in 0..2 {
        let reply = get(&url, &[("authorization", TOKEN_A)]).await;
        assert_eq!(reply.status, StatusCode::OK);
        // The gateway's X-Cache replaces the upstream's own on order answers.
        assert_eq!(state(&reply), "BYPASS");
    }
    assert_eq!(up.hits(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn successful_unsafe_requests_invalidate_every_partition_of_the_order() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let order = new_order();
    let url = gw.order_url(&order);
    for token in [TOKEN_A, TOKEN_B] {
        assert_eq!(state(&get(&url, &[("authorization", token)]).await), "MISS");
        assert_eq!(state(&get(&url, &[("authorization", token)]).await), "HIT");
    }
    // The OrderUpstream answers any method on the order path with 200.
    let patch = send(Method::PATCH, &url, &[("authorization", TOKEN_A)], "{}").await;
    assert_eq!(patch.status, StatusCode::OK);
    // A forwarded answer keeps the upstream's own X-Cache; the gateway adds none.
    assert_eq!(patch.header("x-cache"), Some("upstream-said"));
    up.bump(&order);
    for token in [TOKEN_A, TOKEN_B] {
        let reply = get(&url, &[("authorization", token)]).await;
        assert_eq!(state(&reply), "MISS", "{token}");
        let etag = format!("\"{}\"", etag_for(&order, 2));
        assert_eq!(reply.header("etag"), Some(etag.as_str()));
    }
    // Below the order path counts too.
    let below = gw.url(&format!("{}/lineitems/0", order_path(CUSTOMER, &order)));
    let post = send(Method::POST, &below, &[("authorization", TOKEN_A)], "{}").await;
    assert_eq!(post.status, StatusCode::OK);
    assert_eq!(
        state(&get(&url, &[("authorization", TOKEN_A)]).await),
        "MISS"
    );
    // A failed unsafe request leaves the entry alone.
    up.set_mode(Mode::Status(409));
    let conflict = send(Method::PATCH, &url, &[("authorization", TOKEN_A)], "{}").await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    up.set_mode(Mode::Normal);
    assert_eq!(
        state(&get(&url, &[("authorization", TOKEN_A)]).await),
        "HIT"
    );
    gw.stop().await;
}

#[tokio::test]
async fn admin_purges_by_order_customer_and_everything() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let other_customer = "11111111-2222-3333-4444-555555555555";
    let (o1, o2) = (new_order(), new_order());
    for token in [TOKEN_A, TOKEN_B] {
        for o in [&o1, &o2] {
            get(&gw.order_url(o), &[("authorization", token)]).await;
        }
        get(
            &gw.url(&order_path(other_customer, &o1)),
            &[("authorization", token)],
        )
        .await;
    }
    assert_eq!(gw.stats().await["entries"], 6);
    let purge = |path: String| {
        let url = gw.admin_url(&path);
        async move { send(Method::DELETE, &url, &[], Bytes::new()).await }
    };
    let r = purge(format!(
        "/cache/customers/{CUSTOMER}/orders/{}",
        o1.to_uppercase()
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.json(), serde_json::json!({"purged": 2}));
    assert_eq!(
        state(&get(&gw.order_url(&o1), &[("authorization", TOKEN_A)]).await),
        "MISS"
    );
    assert_eq!(
        state(&get(&gw.order_url(&o2), &[("authorization", TOKEN_A)]).await),
        "HIT"
    );
    let r = purge(format!("/cache/customers/{CUSTOMER}")).await;
    assert_eq!(r.json(), serde_json::json!({"purged": 3}));
    let r = purge("/cache".to_owned()).await;
    assert_eq!(r.json(), serde_json::json!({"purged": 2}));
    assert_eq!(gw.stats().await["entries"], 0);
    let bad = purge("/cache/customers/nope".to_owned()).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let wrong_method = get(&gw.admin_url("/cache"), &[]).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    // Not on the front port: there it is just a path forwarded upstream.
    let front = send(Method::DELETE, &gw.url("/cache"), &[], Bytes::new()).await;
    assert_ne!(front.header("content-type"), Some("application/json"));
    gw.stop().await;
}

#[tokio::test]
async fn negative_caching_remembers_404_per_key() {
    let upstream = MockServer::start_async().await;
    let order = new_order();
    let missing = upstream
        .mock_async(|when, then| {
            when.method(GET).path(order_path(CUSTOMER, &order));
            then.status(404)
                .header("content-type", "application/json")
                .body(r#"{"code":404,"description":"not found","data":[],"source":"PartnerFD"}"#);
        })
        .await;
    let gw = TestGateway::with(&upstream.base_url(), &[("cache.negative_ttl", "30s")]).await;
    let url = gw.order_url(&order);
    let first = get(&url, &[("authorization", TOKEN_A)]).await;
    assert_eq!(first.status, StatusCode::NOT_FOUND);
    assert_eq!(state(&first), "MISS");
    let second = get(&url, &[("authorization", TOKEN_A)]).await;
    assert_eq!(second.status, StatusCode::NOT_FOUND);
    assert_eq!(state(&second), "HIT");
    assert_eq!(second.body, first.body);
    assert!(second.header("age").is_some());
    missing.assert_calls_async(1).await;
    gw.stop().await;

    // With the default negative_ttl of 0, 404s are not remembered.
    let gw = TestGateway::with(&upstream.base_url(), &[]).await;
    let url = gw.order_url(&order);
    for _ in 0..2 {
        let reply = get(&url, &[("authorization", TOKEN_A)]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(state(&reply), "MISS");
    }
    missing.assert_calls_async(3).await;
    gw.stop().await;
}

#[tokio::test]
async fn the_cache_stays_within_max_bytes() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(
        &up.base_url,
        &[
            ("cache.max_bytes", "20000"),
            ("cache.max_entry_bytes", "4096"),
        ],
    )
    .await;
    for _ in 0..60 {
        let reply = get(&gw.order_url(&new_order()), &[("authorization", TOKEN_A)]).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let stats = gw.stats().await;
    let entries = stats["entries"].as_u64().expect("entries");
    let bytes = stats["bytes"].as_u64().expect("bytes");
    assert!(bytes <= 20000, "weighted size {bytes} over the bound");
    assert!(entries > 0 && entries < 60, "{entries} entries");
    gw.stop().await;
}

/// SPEC §2: `cache.max_bytes` alone is a valid configuration; the smaller of it and
/// `cache.max_entry_bytes` is the body limit in force.
#[tokio::test]
async fn max_bytes_alone_starts_and_is_the_entry_limit() {
    let upstream = MockServer::start_async().await;
    let gw = TestGateway::with(&upstream.base_url(), &[("cache.max_bytes", "8192")]).await;
    let (small, big) = (new_order(), new_order());
    let body = |order: &str, pad: usize| {
        format!(
            r#"{{"id":"{order}","attributes":{{"etag":"e1"}},"pad":"{}"}}"#,
            "x".repeat(pad)
        )
    };
    let mut mocks = Vec::new();
    for (order, pad) in [(&small, 100), (&big, 9000)] {
        let text = body(order, pad);
        let mock = upstream
            .mock_async(|when, then| {
                when.method(GET).path(order_path(CUSTOMER, order));
                then.status(200)
                    .header("content-type", "application/json")
                    .body(text.as_str());
            })
            .await;
        mocks.push(mock);
    }
    let states = |order: &String| {
        let url = gw.order_url(order);
        async move {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let reply = get(&url, &[("authorization", TOKEN_A)]).await;
                assert_eq!(reply.status, StatusCode::OK);
                seen.push(state(&reply).to_owned());
            }
            seen
        }
    };
    assert_eq!(states(&small).await, ["MISS", "HIT"]);
    // Over 8192 bytes (under the default max_entry_bytes of 1 MiB): passed through, not stored.
    assert_eq!(states(&big).await, ["MISS", "MISS"]);
    mocks[0].assert_calls_async(1).await;
    mocks[1].assert_calls_async(2).await;
    gw.stop().await;
}
