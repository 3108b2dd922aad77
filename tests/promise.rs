//! The cache's promise from outside (SPEC §4.2, §4.4): once a write through the gateway is
//! answered, no client reads the older version — under races with fills in flight, when the
//! writing client hangs up, when the write's outcome is unknown — and no client gets a body in a
//! content coding it did not accept.
//!
//! Each race is made deterministic with an upstream that, like a real service, reads an order
//! when the request arrives and answers a moment later (`RacingUpstream`).

mod common {
    pub mod gateway;
    pub mod http;
    #[allow(dead_code)]
    pub mod order_upstream;
    #[allow(dead_code)]
    pub mod orders;
    pub mod paths;
    pub mod racing_upstream;
    pub mod wait;
}

use std::time::Duration;

use common::{gateway::*, http::*, orders::*, racing_upstream::*, wait::*};
use http::{Method, StatusCode};
use tokio::io::AsyncWriteExt;

const AUTH: (&str, &str) = ("authorization", "Bearer promise");

fn etag(order: &str, version: u32) -> String {
    format!("\"{}\"", etag_for(order, version))
}

fn x_cache(reply: &Reply) -> &str {
    reply.header("x-cache").unwrap_or("<none>")
}

async fn patch(gw: &TestGateway, order: &str) -> Reply {
    let headers = [AUTH, ("content-type", "application/json")];
    send(Method::PATCH, &gw.order_url(order), &headers, "{}").await
}

async fn metrics(gw: &TestGateway) -> String {
    String::from_utf8_lossy(&get(&gw.admin_url("/metrics"), &[]).await.body).into_owned()
}

#[tokio::test]
async fn a_read_after_a_writes_answer_never_gets_the_fill_that_was_in_flight() {
    let up = RacingUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let order = new_order();

    // A fill is in flight: the upstream has read version 1 and answers in 1.5 s.
    up.set_read_delay(Duration::from_millis(1500));
    let url = gw.order_url(&order);
    let first = tokio::spawn(async move { get(&url, &[AUTH]).await });
    up.wait_for(1, 0).await;

    // A write is applied and answered meanwhile.
    up.set_read_delay(Duration::from_millis(100));
    assert_eq!(patch(&gw, &order).await.status, StatusCode::OK);

    // A read sent after the write's answer gets version 2, not the older fill's version 1.
    let after = get(&gw.order_url(&order), &[AUTH]).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.header("etag"), Some(etag(&order, 2).as_str()));
    assert_eq!(x_cache(&after), "MISS");

    // The read that asked before the write may get version 1; its fill stores nothing.
    let first = first.await.expect("first read");
    assert_eq!(first.header("etag"), Some(etag(&order, 1).as_str()));
    let later = get(&gw.order_url(&order), &[AUTH]).await;
    assert_eq!(later.header("etag"), Some(etag(&order, 2).as_str()));
    assert_eq!(x_cache(&later), "HIT");
    assert_eq!(up.gets(), 2, "one fill before the write, one after");
    gw.stop().await;
}

/// Requests counted with status 499 (the client left before the answer).
async fn left_early(gw: &TestGateway) -> u64 {
    let text = metrics(gw).await;
    let counted = text.lines().filter(|l| {
        l.starts_with("partner_gateway_requests_total{") && l.contains("status=\"499\"")
    });
    counted
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A PATCH of `order` over HTTP/1.1 whose client closes the connection once the upstream has
/// the write.
async fn hang_up_over_http1(gw: &TestGateway, up: &RacingUpstream, order: &str) {
    let writes = up.writes();
    let mut client = tokio::net::TcpStream::connect(gw.front)
        .await
        .expect("connect");
    let path = common::paths::order_path(CUSTOMER, order);
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nhost: gateway\r\nauthorization: {}\r\n\
         content-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}",
        AUTH.1
    );
    client.write_all(head.as_bytes()).await.expect("write");
    up.wait_for(0, writes + 1).await;
    drop(client);
}

/// The same over HTTP/2 (h2c): the client cancels its stream, and the server drops the
/// request's future at once.
async fn hang_up_over_http2(gw: &TestGateway, up: &RacingUpstream, order: &str) {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let writes = up.writes();
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    let request = http::Request::patch(gw.order_url(order))
        .header(AUTH.0, AUTH.1)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from_static(b"{}")))
        .expect("request");
    let sending = tokio::spawn(async move { client.request(request).await });
    up.wait_for(0, writes + 1).await;
    sending.abort();
    let _ = sending.await;
}

#[tokio::test]
async fn a_client_that_hangs_up_during_a_write_still_invalidates_and_is_logged_499() {
    let up = RacingUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let order = new_order();
    assert_eq!(x_cache(&get(&gw.order_url(&order), &[AUTH]).await), "MISS");
    // The write reaches the upstream (applied on arrival, answered in 1 s); the client hangs up.
    up.set_write_delay(Duration::from_secs(1));
    for (version, protocol) in [(2, "HTTP/2"), (3, "HTTP/1.1")] {
        assert_eq!(x_cache(&get(&gw.order_url(&order), &[AUTH]).await), "HIT");
        let before = left_early(&gw).await;
        match protocol {
            "HTTP/2" => hang_up_over_http2(&gw, &up, &order).await,
            _ => hang_up_over_http1(&gw, &up, &order).await,
        }
        // The request still ends — counted with status 499 once its invalidation is done ...
        eventually(Duration::from_secs(10), || async {
            left_early(&gw).await > before
        })
        .await;
        // ... and the next read is the new version.
        let after = get(&gw.order_url(&order), &[AUTH]).await;
        assert_eq!(
            after.header("etag"),
            Some(etag(&order, version).as_str()),
            "{protocol}"
        );
        assert_eq!(x_cache(&after), "MISS", "{protocol}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_write_whose_outcome_is_unknown_invalidates_as_a_2xx_would() {
    let up = RacingUpstream::start().await;
    let overrides = [
        ("upstream.request_timeout", "300ms"),
        ("server.max_body_bytes", "1024"),
    ];
    let gw = TestGateway::with(&up.base_url, &overrides).await;
    let order = new_order();
    get(&gw.order_url(&order), &[AUTH]).await;
    assert_eq!(x_cache(&get(&gw.order_url(&order), &[AUTH]).await), "HIT");

    // Applied upstream, but no answer head within the timeout.
    up.set_write_delay(Duration::from_secs(3));
    assert_eq!(patch(&gw, &order).await.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(up.writes(), 1);
    let after = get(&gw.order_url(&order), &[AUTH]).await;
    assert_eq!(after.header("etag"), Some(etag(&order, 2).as_str()));
    assert_eq!(x_cache(&after), "MISS");

    // A write the gateway refused itself never left it: nothing is dropped.
    get(&gw.order_url(&order), &[AUTH]).await;
    let too_large = vec![b' '; 2048];
    let refused = send(Method::PATCH, &gw.order_url(&order), &[AUTH], too_large).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(up.writes(), 1, "never sent");
    assert_eq!(x_cache(&get(&gw.order_url(&order), &[AUTH]).await), "HIT");
    gw.stop().await;
}

/// The four kinds of client the issue names, as (label, Accept-Encoding).
const CLIENTS: [(&str, Option<&str>); 4] = [
    ("python requests", Some("gzip, deflate")),
    ("identity only", Some("identity")),
    ("no header", None),
    ("nothing at all", Some("*;q=0")),
];

async fn read_as(gw: &TestGateway, order: &str, accept: Option<&str>) -> Reply {
    match accept {
        Some(accept) => get(&gw.order_url(order), &[AUTH, ("accept-encoding", accept)]).await,
        None => get(&gw.order_url(order), &[AUTH]).await,
    }
}

/// Every client, at once (so they coalesce on one fill), then again; each answer identity
/// coded, the order itself, and one upstream request in all.
async fn every_client_reads_identity(coding: Coding) {
    let up = RacingUpstream::start().await;
    up.set_coding(coding);
    up.set_read_delay(Duration::from_millis(300));
    let gw = std::sync::Arc::new(TestGateway::with(&up.base_url, &[]).await);
    let order = new_order();
    let readers = CLIENTS.map(|(label, accept)| {
        let (gw, order) = (gw.clone(), order.clone());
        tokio::spawn(async move { (label, read_as(&gw, &order, accept).await) })
    });
    for reader in readers {
        let (label, reply) = reader.await.expect("reader");
        assert_eq!(reply.status, StatusCode::OK, "{label}");
        assert_eq!(
            reply.header("content-encoding"),
            None,
            "{label}: identity coded"
        );
        assert_eq!(
            reply.json()["id"],
            order.as_str(),
            "{label}: the order, readable"
        );
        assert_eq!(
            reply.header("etag"),
            Some(etag(&order, 1).as_str()),
            "{label}"
        );
    }
    for (label, accept) in CLIENTS {
        let reply = read_as(&gw, &order, accept).await;
        assert_eq!(x_cache(&reply), "HIT", "{label}: stored once, for everyone");
        assert_eq!(reply.header("content-encoding"), None, "{label}");
    }
    assert_eq!(up.gets(), 1, "one fill for every coding");
    assert_eq!(up.accept_encodings(), vec![Some("identity".to_owned())]);
    if let Ok(gw) = std::sync::Arc::try_unwrap(gw) {
        gw.stop().await;
    }
}

#[tokio::test]
async fn an_upstream_that_honours_gzip_is_asked_for_identity_and_every_client_reads() {
    every_client_reads_identity(Coding::HonourGzip).await;
}

#[tokio::test]
async fn gzip_sent_anyway_is_stored_decoded_and_answered_identity_to_every_client() {
    every_client_reads_identity(Coding::AlwaysGzip).await;
}

#[tokio::test]
async fn another_coding_is_not_stored_and_reaches_only_clients_that_accept_it() {
    let up = RacingUpstream::start().await;
    up.set_coding(Coding::AlwaysBr);
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let order = new_order();
    let brotli = read_as(&gw, &order, Some("br")).await;
    assert_eq!(brotli.status, StatusCode::OK);
    assert_eq!(brotli.header("content-encoding"), Some("br"));
    assert_eq!(x_cache(&brotli), "MISS");

    // Not stored: the next reader asks the upstream again. One that does not accept `br` gets
    // no `br` body from the fill (it asks with its own Accept-Encoding; this upstream answers
    // `br` to anything, which the gateway passes on as any proxy does).
    let again = read_as(&gw, &order, Some("br")).await;
    assert_eq!(x_cache(&again), "MISS");
    assert_eq!(up.gets(), 2);
    let gzip_only = read_as(&gw, &order, Some("gzip")).await;
    assert_eq!(x_cache(&gzip_only), "MISS");
    assert_eq!(up.gets(), 4, "the fill, then the caller's own request");
    assert_eq!(
        up.accept_encodings()[2..],
        [Some("identity".to_owned()), Some("gzip".to_owned())],
        "the fill asks for identity, the caller's own request carries its own value"
    );
    let text = metrics(&gw).await;
    assert!(
        text.lines()
            .any(|l| l.contains("cache_not_stored_total{") && l.contains("reason=\"encoding\"")),
        "not-stored reason encoding counted:\n{text}"
    );
    gw.stop().await;
}
