//! Connection limits from outside (SPEC §8, §14): how many connections are open at once, how
//! long an idle one (HTTP/1.1 or h2) stays open, and the admin port's head limits.

mod common {
    pub mod gateway;
    pub mod held;
    pub mod http;
}

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{gateway::*, held::*};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use httpmock::prelude::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The first bytes of an answer, or `None` when none came within `limit`.
async fn answer_within(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// Reads until the peer closes; panics when it has not within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "still open after {limit:?}");
    out
}

const GET_X: &[u8] = b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n";

#[tokio::test]
async fn max_connections_keeps_further_connections_waiting_until_one_closes() {
    let upstream = MockServer::start_async().await;
    upstream
        .mock_async(|when, then| {
            when.path("/x");
            then.status(200).body("x");
        })
        .await;
    let gw = TestGateway::with(
        &upstream.base_url(),
        &[
            ("server.max_connections", "2"),
            ("server.header_read_timeout", "60s"),
        ],
    )
    .await;
    // Two connections, each served once and then left open and idle.
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(gw.front).await.expect("connect");
        stream.write_all(GET_X).await.expect("write");
        let answer = answer_within(&mut stream, Duration::from_secs(10)).await;
        assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
        open.push(stream);
    }
    // A third one connects (the kernel's backlog takes it) but is not served...
    let mut third = TcpStream::connect(gw.front).await.expect("connect");
    third.write_all(GET_X).await.expect("write");
    let early = answer_within(&mut third, Duration::from_millis(700)).await;
    assert_eq!(early, None, "served while two connections were open");
    // ...until one of the two closes.
    drop(open.pop());
    let answer = answer_within(&mut third, Duration::from_secs(10)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "{answer:?}"
    );
    gw.stop().await;
}

/// The frame types (RFC 9113 §4.1) in a stream of h2 frames.
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let length =
            usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + length).min(bytes.len())..];
    }
    types
}

#[tokio::test]
async fn an_h2_connection_that_only_opens_is_sent_goaway_and_closed() {
    let gw = TestGateway::with(
        "http://127.0.0.1:9",
        &[("server.header_read_timeout", "300ms")],
    )
    .await;
    let mut stream = TcpStream::connect(gw.front).await.expect("connect");
    // The client preface and an empty SETTINGS frame, then nothing (not even a SETTINGS ack).
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write");
    let started = Instant::now();
    let received = closed_within(&mut stream, Duration::from_secs(5)).await;
    const GOAWAY: u8 = 0x7;
    assert!(
        frame_types(&received).contains(&GOAWAY),
        "no GOAWAY in {:?}",
        frame_types(&received)
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    gw.stop().await;
}

#[tokio::test]
async fn an_idle_h2_connection_closes_but_a_slow_stream_is_not_cut() {
    let held = HeldUpstream::start().await;
    let gw = TestGateway::with(&held.base_url, &[("server.header_read_timeout", "300ms")]).await;
    let stream = TcpStream::connect(gw.front).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    let mut connection = tokio::spawn(connection);
    let request = http::Request::get(gw.url("/slow"))
        .body(Empty::new())
        .expect("request");
    let response = tokio::spawn(sender.send_request(request));
    held.arrived().await;
    // The stream stays in flight for several idle limits: it must not be cut.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!connection.is_finished(), "closed with a stream in flight");
    held.release();
    let response = response.await.expect("task").expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.expect("body");
    assert_eq!(body.to_bytes(), Bytes::from("finished"));
    // With nothing in flight any more, the gateway closes the connection.
    let closed = tokio::time::timeout(Duration::from_secs(5), &mut connection).await;
    assert!(closed.is_ok(), "idle h2 connection still open");
    gw.stop().await;
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_closes() {
    let upstream = MockServer::start_async().await;
    upstream
        .mock_async(|when, then| {
            when.path("/x");
            then.status(200).body("x");
        })
        .await;
    let gw = TestGateway::with(
        &upstream.base_url(),
        &[("server.header_read_timeout", "300ms")],
    )
    .await;
    let mut stream = TcpStream::connect(gw.front).await.expect("connect");
    stream.write_all(GET_X).await.expect("write");
    let answer = answer_within(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    closed_within(&mut stream, Duration::from_secs(5)).await;
    gw.stop().await;
}

#[tokio::test]
async fn the_admin_port_closes_unfinished_heads() {
    let gw = TestGateway::with(
        "http://127.0.0.1:9",
        &[("server.header_read_timeout", "300ms")],
    )
    .await;
    let admin = gw.admin_url("");
    let admin = admin.trim_start_matches("http://");
    // An HTTP/1.1 head never finished, and an h2 preface never finished.
    for partial in [
        &b"GET /healthz HTTP/1.1\r\nHost: a\r\n"[..],
        b"PRI * HTTP/2.0\r\n",
    ] {
        let mut stream = TcpStream::connect(admin).await.expect("connect");
        stream.write_all(partial).await.expect("write");
        let answer = closed_within(&mut stream, Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text:?}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn the_admin_port_answers_oversized_heads_431() {
    let gw = TestGateway::with("http://127.0.0.1:9", &[]).await;
    let admin = gw.admin_url("");
    let mut stream = TcpStream::connect(admin.trim_start_matches("http://"))
        .await
        .expect("connect");
    let big = "x".repeat(100 * 1024);
    let head = format!("GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let answer = closed_within(&mut stream, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 431"), "{text:?}");
    gw.stop().await;
}
