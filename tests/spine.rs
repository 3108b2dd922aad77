//! The spine from outside: forwarding, correlation, routing errors, limits, h2c, admin, drain.

mod common {
    pub mod gateway;
    pub mod held;
    pub mod http;
    pub mod ids;
    pub mod paths;
    pub mod wait;
}

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{gateway::*, held::*, http::*, ids::*, paths::*, wait::*};
use http::{Method, StatusCode};
use httpmock::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn forwards_status_headers_and_body_both_ways() {
    let upstream = MockServer::start_async().await;
    let host = format!("127.0.0.1:{}", upstream.port());
    let created = upstream
        .mock_async(|when, then| {
            when.method(POST)
                .path("/v1/customers/c1/carts")
                .query_param("a", "b")
                .header("authorization", "Bearer token-1")
                .header("x-end-to-end", "kept")
                .header("host", host.as_str())
                .header("via", "1.1 partner-gateway")
                .header_missing("keep-alive")
                .header_missing("x-hop")
                .header_missing("te")
                .header_missing("proxy-connection")
                .body("{\"q\":1}");
            then.status(201)
                .header("content-type", "application/json")
                .header("x-upstream", "yes")
                .header("x-cache", "upstream-own")
                .header("connection", "x-down-hop")
                .header("x-down-hop", "secret")
                .header("keep-alive", "timeout=5")
                .body("{\"created\":true}");
        })
        .await;
    let missing = upstream
        .mock_async(|when, then| {
            when.method(GET).path("/v1/missing");
            then.status(404).body("nope");
        })
        .await;
    let broken = upstream
        .mock_async(|when, then| {
            when.method(DELETE).path("/v1/broken");
            then.status(500).body("boom");
        })
        .await;
    let gw = TestGateway::with(&upstream.base_url(), &[]).await;

    let reply = send(
        Method::POST,
        &gw.url("/v1/customers/c1/carts?a=b"),
        &[
            ("authorization", "Bearer token-1"),
            ("x-end-to-end", "kept"),
            ("connection", "x-hop"),
            ("x-hop", "dropped"),
            ("keep-alive", "timeout=1"),
            ("te", "trailers"),
            ("proxy-connection", "keep-alive"),
        ],
        "{\"q\":1}",
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body, Bytes::from("{\"created\":true}"));
    assert_eq!(reply.header("x-upstream"), Some("yes"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    // Forwarded answers carry the upstream's own X-Cache untouched and none of the gateway's.
    assert_eq!(reply.header("x-cache"), Some("upstream-own"));
    assert_eq!(reply.header("via"), Some("1.1 partner-gateway"));
    assert_eq!(reply.header("x-down-hop"), None);
    assert_eq!(reply.header("keep-alive"), None);
    created.assert_calls_async(1).await;

    let reply = get(&gw.url("/v1/missing"), &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body, Bytes::from("nope"));
    missing.assert_calls_async(1).await;

    let reply = send(Method::DELETE, &gw.url("/v1/broken"), &[], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.body, Bytes::from("boom"));
    broken.assert_calls_async(1).await;
    gw.stop().await;
}

#[tokio::test]
async fn base_url_path_prefix_is_prepended() {
    let upstream = MockServer::start_async().await;
    let mock = upstream
        .mock_async(|when, then| {
            when.method(GET).path("/pc/v1/profiles/x");
            then.status(200).body("prefixed");
        })
        .await;
    let gw = TestGateway::with(&format!("{}/pc/", upstream.base_url()), &[]).await;
    let reply = get(&gw.url("/v1/profiles/x"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, Bytes::from("prefixed"));
    mock.assert_calls_async(1).await;
    gw.stop().await;
}

#[tokio::test]
async fn correlation_ids_are_generated_kept_or_replaced_and_sent_upstream() {
    let upstream = MockServer::start_async().await;
    let kept = upstream
        .mock_async(|when, then| {
            when.path("/kept")
                .header("ms-correlationid", GUID_A)
                .header("ms-requestid", GUID_B);
            then.status(200)
                .header("ms-correlationid", "upstream-should-not-win");
        })
        .await;
    let generated = upstream
        .mock_async(|when, then| {
            when.path("/generated")
                .header_exists("ms-correlationid")
                .header_exists("ms-requestid")
                .header_not("ms-requestid", "not-a-guid");
            then.status(204);
        })
        .await;
    let gw = TestGateway::with(&upstream.base_url(), &[]).await;

    let reply = get(
        &gw.url("/kept"),
        &[("ms-correlationid", GUID_A), ("ms-requestid", GUID_B)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("ms-correlationid"), Some(GUID_A));
    assert_eq!(reply.header("ms-requestid"), Some(GUID_B));
    kept.assert_calls_async(1).await;

    let reply = get(&gw.url("/generated"), &[("ms-requestid", "not-a-guid")]).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let corr = reply.header("ms-correlationid").expect("correlation id");
    let req = reply.header("ms-requestid").expect("request id");
    assert!(uuid::Uuid::parse_str(corr).is_ok(), "{corr}");
    assert!(uuid::Uuid::parse_str(req).is_ok(), "{req}");
    assert_ne!(corr, req);
    generated.assert_calls_async(1).await;
    gw.stop().await;
}

#[tokio::test]
async fn invalid_order_ids_get_400_with_ids_and_no_upstream_traffic() {
    let upstream = MockServer::start_async().await;
    let any = upstream
        .mock_async(|_when, then| {
            then.status(200);
        })
        .await;
    let gw = TestGateway::with(&upstream.base_url(), &[]).await;
    for path in [
        order_path("not-a-guid", GUID_B),
        order_path(GUID_A, &format!("{{{GUID_B}}}")),
        order_path(GUID_A, &GUID_B.replace('-', "")),
    ] {
        let reply = get(&gw.url(&path), &[("ms-correlationid", GUID_A)]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.header("ms-correlationid"), Some(GUID_A));
        assert!(reply.header("ms-requestid").is_some());
        assert_eq!(reply.header("x-cache"), None);
        let json = reply.json();
        assert_eq!(json["code"], 400);
        assert_eq!(json["errorName"], "InvalidIdentifier");
        assert_eq!(json["source"], "partner-gateway");
        assert_eq!(json["data"], serde_json::json!([]));
    }
    any.assert_calls_async(0).await;
    gw.stop().await;
}

#[tokio::test]
async fn five_megabytes_stream_through_both_ways_intact() {
    let upstream = MockServer::start_async().await;
    let big: String = (0..5 * 1024 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let echo = upstream
        .mock_async(|when, then| {
            when.method(POST).path("/upload").body(big.as_str());
            then.status(200).body(big.as_str());
        })
        .await;
    let gw = TestGateway::with(&upstream.base_url(), &[]).await;
    let reply = send(Method::POST, &gw.url("/upload"), &[], big.clone()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), big.len());
    assert!(reply.body == big.as_bytes());
    echo.assert_calls_async(1).await;
    gw.stop().await;
}

/// A one-shot raw upstream: answers the first request with `head` + first chunk, then waits
/// for `release` before finishing the chunked body.
async fn stalling_upstream() -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 8192];
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.expect("read");
            if n == 0 {
                return;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await
            .expect("write");
        let _ = rx.await;
        let _ = socket.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await;
    });
    (format!("http://{addr}"), tx)
}

#[tokio::test]
async fn response_bodies_stream_before_the_upstream_finishes() {
    use http_body_util::BodyExt;
    let (base, release) = stalling_upstream().await;
    let gw = TestGateway::with(&base, &[]).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(gw.url("/stream").parse().expect("uri")),
    )
    .await
    .expect("head in time")
    .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    // The first chunk arrives while the upstream is still holding the rest back.
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("first chunk streamed")
        .expect("frame")
        .expect("ok");
    assert_eq!(frame.into_data().expect("data"), Bytes::from("first"));
    release.send(()).expect("release");
    let rest = body.collect().await.expect("rest").to_bytes();
    assert_eq!(rest, Bytes::from("second"));
    gw.stop().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    use http_body_util::BodyExt;
    let upstream = MockServer::start_async().await;
    let mock = upstream
        .mock_async(|when, then| {
            when.method(GET).path("/v1/h2");
            then.status(200).body("over h2c");
        })
        .await;
    let gw = TestGateway::with(&upstream.base_url(), &[]).await;
    // HTTP/2 with prior knowledge is what is under test here, so not `get` (HTTP/1.1).
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<Bytes>>();
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        client.get(gw.url("/v1/h2").parse().expect("uri")),
    )
    .await
    .expect("response in time")
    .expect("response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .headers()
        .get("ms-correlationid")
        .is_some_and(|v| v.to_str().is_ok()));
    let body = response.into_body().collect().await.expect("body");
    assert_eq!(body.to_bytes(), Bytes::from("over h2c"));
    mock.assert_calls_async(1).await;
    gw.stop().await;
}

/// An address on which nothing listens.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn refused_upstream_is_a_502_json_with_ids() {
    let gw = TestGateway::with(&closed_port().await, &[]).await;
    let reply = get(&gw.url("/v1/anything"), &[("ms-requestid", GUID_B)]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.header("ms-requestid"), Some(GUID_B));
    let json = reply.json();
    assert_eq!(json["errorName"], "UpstreamUnavailable");
    // SPEC §7: no OS error and no upstream address in what the client reads.
    let description = json["description"].as_str().expect("description");
    for internal in ["os error", "refused", "127.0.0.1", "tcp"] {
        assert!(!description.contains(internal), "{description}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn connect_timeout_is_a_502() {
    // A listener with a tiny backlog that never accepts: once the queue is full, the kernel
    // drops further SYNs and connecting hangs until the gateway's connect timeout.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let gw = TestGateway::with(
        &format!("http://{addr}"),
        &[
            ("upstream.connect_timeout", "300ms"),
            ("upstream.request_timeout", "20s"),
        ],
    )
    .await;
    let started = Instant::now();
    let reply = get(&gw.url("/v1/x"), &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{:?}", reply.body);
    assert_eq!(reply.json()["errorName"], "UpstreamUnavailable");
    assert!(started.elapsed() < Duration::from_secs(15));
    drop(listener);
    gw.stop().await;
}

#[tokio::test]
async fn slow_upstream_is_a_504_json() {
    let upstream = MockServer::start_async().await;
    upstream
        .mock_async(|when, then| {
            when.path("/slow");
            then.status(200).delay(Duration::from_secs(5));
        })
        .await;
    let gw = TestGateway::with(
        &upstream.base_url(),
        &[("upstream.request_timeout", "300ms")],
    )
    .await;
    let reply = get(&gw.url("/slow"), &[("ms-correlationid", GUID_A)]).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.json()["errorName"], "UpstreamTimeout");
    assert_eq!(reply.header("ms-correlationid"), Some(GUID_A));
    gw.stop().await;
}

/// Reads from a raw socket until EOF (or 10 s), returning what arrived.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn oversized_heads_get_431_and_garbage_closes_but_serving_goes_on() {
    let upstream = MockServer::start_async().await;
    let ok = upstream
        .mock_async(|when, then| {
            when.path("/after");
            then.status(200).body("still here");
        })
        .await;
    let gw = TestGateway::with(&upstream.base_url(), &[]).await;

    let mut stream = TcpStream::connect(gw.front).await.expect("connect");
    let big = "x".repeat(100 * 1024);
    let head = format!("GET /after HTTP/1.1\r\nHost: gw\r\nX-Big: {big}\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let answer = read_to_close(&mut stream).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 431"), "{text:?}");

    let mut stream = TcpStream::connect(gw.front).await.expect("connect");
    stream
        .write_all(b"\x16\x03\x01\x00garbage\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut stream).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text:?}"
    );

    let reply = get(&gw.url("/after"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, Bytes::from("still here"));
    ok.assert_calls_async(1).await;
    gw.stop().await;
}

#[tokio::test]
async fn slow_or_silent_clients_are_cut_off_by_header_read_timeout() {
    let gw = TestGateway::with(
        &closed_port().await,
        &[("server.header_read_timeout", "300ms")],
    )
    .await;
    // Connects and says nothing.
    let mut silent = TcpStream::connect(gw.front).await.expect("connect");
    // Starts a head and never finishes it.
    let mut slow = TcpStream::connect(gw.front).await.expect("connect");
    slow.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    read_to_close(&mut silent).await;
    let slow_answer = read_to_close(&mut slow).await;
    // Both are closed by the gateway well before the 10 s read limit of this test.
    assert!(started.elapsed() < Duration::from_secs(8));
    let text = String::from_utf8_lossy(&slow_answer);
    assert!(
        slow_answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn admin_probes_on_their_own_port() {
    let upstream = MockServer::start_async().await;
    let front_healthz = upstream
        .mock_async(|when, then| {
            when.path("/healthz");
            then.status(299);
        })
        .await;
    let gw = TestGateway::with(&upstream.base_url(), &[]).await;
    let health = get(&gw.admin_url("/healthz"), &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.header("cache-control"), Some("no-store"));
    let ready = get(&gw.admin_url("/readyz"), &[]).await;
    assert_eq!(ready.status, StatusCode::OK);
    let unknown = get(&gw.admin_url("/nope"), &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // The front port forwards /healthz like any path: admin is not reachable there.
    let front = get(&gw.url("/healthz"), &[]).await;
    assert_eq!(front.status.as_u16(), 299);
    front_healthz.assert_calls_async(1).await;
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_readyz_turns_503() {
    let held = HeldUpstream::start().await;
    let mut gw = TestGateway::with(&held.base_url, &[("server.shutdown_grace", "10s")]).await;
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    held.arrived().await;
    gw.trigger_shutdown();
    let admin = gw.admin_url("/readyz");
    eventually(Duration::from_secs(5), || {
        let admin = admin.clone();
        async move { get(&admin, &[]).await.status == StatusCode::SERVICE_UNAVAILABLE }
    })
    .await;
    // New connections are refused once draining began.
    assert!(TcpStream::connect(gw.front).await.is_err());
    held.release();
    let reply = in_flight.await.expect("client task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, Bytes::from("finished"));
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_grace_bounds_the_drain() {
    let held = HeldUpstream::start().await;
    let mut gw = TestGateway::with(&held.base_url, &[("server.shutdown_grace", "300ms")]).await;
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(20), async move { get(&url, &[]).await }).await
    });
    held.arrived().await;
    let started = Instant::now();
    gw.trigger_shutdown();
    gw.stop().await;
    // The upstream never answered; the gateway still stopped soon after its grace.
    assert!(started.elapsed() < Duration::from_secs(10));
    in_flight.abort();
}

#[tokio::test]
async fn idle_keep_alive_connections_do_not_delay_the_exit() {
    let mut gw = TestGateway::with(&closed_port().await, &[("server.shutdown_grace", "30s")]).await;
    // One request on a keep-alive connection, answered, then the connection sits idle.
    let mut idle = TcpStream::connect(gw.front).await.expect("connect");
    idle.write_all(b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 502"));
    let started = Instant::now();
    gw.trigger_shutdown();
    gw.stop().await;
    // Far below the 30 s grace: idle connections are closed, not waited for.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(read_to_close(&mut idle).await.len(), 0);
}
