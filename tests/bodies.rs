//! Body limits from outside (SPEC §5, §14): request bodies too large or too slow, clients that
//! trickle bodies while others need the upstream, upstream bodies that stall.

mod common {
    pub mod gateway;
    pub mod http;
    pub mod ids;
    pub mod paths;
}

use std::time::Duration;

use bytes::Bytes;
use common::{gateway::*, http::*, ids::*, paths::*};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use httpmock::prelude::*;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One answer read off a raw connection.
struct RawReply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawReply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Reads one answer (head, then `Content-Length` bytes of body) within 10 s.
async fn read_reply(stream: &mut TcpStream) -> RawReply {
    let read = async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&seen[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if seen.len() >= end + 4 + length {
                    let status = head[9..12].parse().expect("status");
                    let body = seen[end + 4..end + 4 + length].to_vec();
                    return RawReply { status, head, body };
                }
            }
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("answer in time")
}

/// Opens a connection and sends `head` plus `body`, then nothing more.
async fn stalled(gw: &TestGateway, head: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(gw.front).await.expect("connect");
    // One write: the gateway takes it all in at once, and never closes on unread bytes.
    let message = [head.as_bytes(), body].concat();
    stream.write_all(&message).await.expect("write");
    stream
}

fn post(length: &str) -> String {
    format!("POST /v1/carts HTTP/1.1\r\nHost: gw\r\nMS-CorrelationId: {GUID_A}\r\n{length}\r\n\r\n")
}

/// A raw upstream that takes one connection and reports what it received until it closed.
async fn recording_upstream() -> (String, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut seen = Vec::new();
        let _ = socket.read_to_end(&mut seen).await;
        let _ = tx.send(seen);
    });
    (format!("http://{addr}"), rx)
}

/// Asserts the upstream's connection ended (within 10 s) without a whole chunked body.
async fn aborted(upstream: tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let seen = tokio::time::timeout(Duration::from_secs(10), upstream)
        .await
        .expect("upstream connection closed")
        .expect("upstream task");
    let text = String::from_utf8_lossy(&seen);
    assert!(
        !text.contains("\r\n0\r\n\r\n"),
        "the body was completed: {text:?}"
    );
}

#[tokio::test]
async fn a_body_announced_too_large_gets_413_and_never_reaches_the_upstream() {
    let upstream = MockServer::start_async().await;
    let any = upstream
        .mock_async(|_when, then| {
            then.status(200);
        })
        .await;
    let gw = TestGateway::with(&upstream.base_url(), &[("server.max_body_bytes", "1000")]).await;
    let mut stream = stalled(&gw, &post("Content-Length: 5000"), b"").await;
    let reply = read_reply(&mut stream).await;
    assert_eq!(reply.status, 413, "{}", reply.head);
    assert!(reply
        .head
        .to_ascii_lowercase()
        .contains(&format!("ms-correlationid: {GUID_A}")));
    assert!(reply
        .head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    assert_eq!(reply.json()["errorName"], "PayloadTooLarge");
    any.assert_calls_async(0).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_chunked_body_growing_past_the_limit_gets_413_and_the_upstream_request_is_aborted() {
    let (base, upstream) = recording_upstream().await;
    let gw = TestGateway::with(&base, &[("server.max_body_bytes", "1000")]).await;
    let chunk = format!("5dc\r\n{}\r\n", "x".repeat(1500));
    let mut stream = stalled(&gw, &post("Transfer-Encoding: chunked"), chunk.as_bytes()).await;
    let reply = read_reply(&mut stream).await;
    assert_eq!(reply.status, 413, "{}", reply.head);
    assert_eq!(reply.json()["errorName"], "PayloadTooLarge");
    aborted(upstream).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_stalled_streamed_body_gets_408_and_the_upstream_request_is_aborted() {
    let (base, upstream) = recording_upstream().await;
    let gw = TestGateway::with(&base, &[("server.body_read_timeout", "300ms")]).await;
    let mut stream = stalled(&gw, &post("Transfer-Encoding: chunked"), b"5\r\nhello\r\n").await;
    let reply = read_reply(&mut stream).await;
    assert_eq!(reply.status, 408, "{}", reply.head);
    assert_eq!(reply.json()["errorName"], "RequestTimeout");
    assert!(reply
        .head
        .to_ascii_lowercase()
        .contains(&format!("ms-correlationid: {GUID_A}")));
    aborted(upstream).await;
    gw.stop().await;
}

/// The upstream in-flight gauge, read from the admin port.
async fn in_flight(gw: &TestGateway) -> f64 {
    let text = get(&gw.admin_url("/metrics"), &[]).await.body;
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix("partner_gateway_upstream_in_flight "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// An upstream that reads whole request bodies before answering (as Partner Center does),
/// and serves one cacheable order of customer `GUID_B`.
async fn order_and_cart_upstream(order: &str) -> MockServer {
    let upstream = MockServer::start_async().await;
    upstream
        .mock_async(|when, then| {
            when.method(POST);
            then.status(201);
        })
        .await;
    let body =
        serde_json::json!({"id": order, "attributes": {"etag": "v1", "objectType": "Order"}});
    upstream
        .mock_async(|when, then| {
            when.method(GET).path(order_path(GUID_B, order));
            then.status(200)
                .header("content-type", "application/json")
                .body(body.to_string());
        })
        .await;
    upstream
}

async fn order_miss(gw: &TestGateway, order: &str) -> Reply {
    let url = gw.url(&order_path(GUID_B, order));
    get(&url, &[("authorization", "Bearer other-caller")]).await
}

#[tokio::test]
async fn clients_trickling_large_bodies_do_not_starve_another_callers_order_miss() {
    let order = uuid::Uuid::new_v4().to_string();
    let upstream = order_and_cart_upstream(&order).await;
    let gw = TestGateway::with(&upstream.base_url(), &[("upstream.max_in_flight", "4")]).await;
    // Four clients announce 100 KB (so the body streams), send one byte and stall.
    let (answered_tx, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut stream = stalled(&gw, &post("Content-Length: 100000"), b"x").await;
        let tx = answered_tx.clone();
        clients.push(tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await
            {
                let _ = tx.send(n);
            }
        }));
    }
    // Until each of them holds an upstream slot, or was refused one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    loop {
        while answered.try_recv().is_ok() {
            refused += 1;
        }
        if refused >= 2 || in_flight(&gw).await >= 4.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trickling requests went nowhere"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = order_miss(&gw, &order).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.header("x-cache"), Some("MISS"));
    for client in clients {
        client.abort();
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_trickled_small_body_holds_no_upstream_slot_and_ends_in_408() {
    let order = uuid::Uuid::new_v4().to_string();
    let upstream = order_and_cart_upstream(&order).await;
    let gw = TestGateway::with(
        &upstream.base_url(),
        &[
            ("upstream.max_in_flight", "1"),
            ("server.body_read_timeout", "2s"),
        ],
    )
    .await;
    let mut trickler = stalled(&gw, &post("Content-Length: 1000"), b"x").await;
    // Were the body streamed, the request would take the one slot now; give it the chance.
    let _ = tokio::time::timeout(Duration::from_millis(700), async {
        while in_flight(&gw).await < 1.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let reply = order_miss(&gw, &order).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.header("x-cache"), Some("MISS"));
    let stalled = read_reply(&mut trickler).await;
    assert_eq!(stalled.status, 408, "{}", stalled.head);
    assert_eq!(stalled.json()["errorName"], "RequestTimeout");
    gw.stop().await;
}

/// A raw upstream that announces 100 bytes, sends 10 and then holds the connection open.
async fn stalling_body_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
                let _ = socket.write_all(head).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_upstream_body_that_stalls_is_cut_off_on_http1_and_h2() {
    let base = stalling_body_upstream().await;
    let gw = TestGateway::with(&base, &[("upstream.body_idle_timeout", "300ms")]).await;

    let mut stream = stalled(&gw, "GET /v1/stall HTTP/1.1\r\nHost: gw\r\n\r\n", b"").await;
    let mut received = Vec::new();
    let ended =
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    assert!(ended.is_ok(), "the connection stayed open");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(body.len() < 100, "{body:?}");

    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(gw.url("/v1/stall").parse().expect("uri")),
    )
    .await
    .expect("head in time")
    .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .expect("the stream stayed open");
    assert!(body.is_err(), "the stream ended as if whole");
    gw.stop().await;
}
