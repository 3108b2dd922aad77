//! What the gateway refuses or will not cache, from outside (SPEC §3): paths an upstream could
//! normalise, methods it never forwards, credentials and locales that cannot key an answer.

mod common {
    pub mod gateway;
    pub mod http;
    pub mod paths;
    // This file uses a part of each of these (ids, the upstream's knobs, the warmed scenario).
    #[allow(dead_code)]
    pub mod ids;
    #[allow(dead_code)]
    pub mod order_upstream;
    #[allow(dead_code)]
    pub mod orders;
}

use bytes::Bytes;
use common::{gateway::*, http::*, ids::*, order_upstream::*, orders::*, paths::*};
use http::{Method, StatusCode};
use httpmock::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "Bearer token-a";

#[tokio::test]
async fn paths_an_upstream_could_normalise_are_refused_for_every_method() {
    let Warmed { up, gw, order } = Warmed::start(&[], TOKEN).await;
    let hits = up.hits();
    let base = order_path(CUSTOMER, &order);
    let odd = [
        (Method::PATCH, format!("/{base}")),
        (Method::PATCH, base.replace("/orders/", "/./orders/")),
        (Method::PATCH, base.replace("/orders/", "/orders/x/../")),
        (Method::DELETE, base.replace("/orders/", "/orders%2F")),
        (Method::POST, base.replace("/orders/", "/orders/%2e%2e/")),
        (Method::GET, format!("{base}//")),
        (Method::GET, base.replace("/orders/", "//orders/")),
    ];
    for (method, path) in odd {
        let reply = send(
            method.clone(),
            &gw.url(&path),
            &[("authorization", TOKEN), ("ms-correlationid", GUID_A)],
            Bytes::from_static(b"{}"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {path}");
        assert_eq!(reply.json()["errorName"], "InvalidPath", "{method} {path}");
        assert_eq!(reply.header("ms-correlationid"), Some(GUID_A));
    }
    // None of them reached the upstream, and the cached order is still the current one.
    assert_eq!(up.hits(), hits);
    let again = get(&gw.order_url(&order), &[("authorization", TOKEN)]).await;
    assert_eq!(again.header("x-cache"), Some("HIT"));
    gw.stop().await;
}

#[tokio::test]
async fn connect_and_trace_are_405_and_never_forwarded() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let trace = send(Method::TRACE, &gw.url("/v1/customers"), &[], Bytes::new()).await;
    assert_eq!(trace.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(trace.json()["errorName"], "MethodNotAllowed");
    assert!(trace.header("ms-requestid").is_some());

    let mut stream = tokio::net::TcpStream::connect(gw.front)
        .await
        .expect("connect");
    stream
        .write_all(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
        .await
        .expect("write");
    let mut head = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut head))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&head[..n]);
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    assert_eq!(up.hits(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn two_authorization_fields_are_refused_on_order_routes() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let url = gw.order_url(&new_order());
    let reply = get(
        &url,
        &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["errorName"], "InvalidAuthorization");
    assert_eq!(up.hits(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn no_credential_or_an_odd_locale_bypasses_the_cache() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[("cache.partition", "shared")]).await;
    let order = new_order();
    let url = gw.order_url(&order);
    // Any value an attacker likes would mint one variant (and one upstream fetch) per value.
    let long = format!("a{}", "b".repeat(4096));
    for headers in [
        vec![("authorization", "")],
        vec![("authorization", "   ")],
        vec![("authorization", TOKEN), ("x-locale", "fr_FR")],
        vec![("authorization", TOKEN), ("x-locale", long.as_str())],
    ] {
        for _ in 0..2 {
            let reply = get(&url, &headers).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(
                reply.header("x-cache"),
                Some("BYPASS"),
                "{:?}",
                &headers[..1]
            );
        }
    }
    assert_eq!(up.hits(), 8, "every bypassed request went upstream");
    gw.stop().await;
}

/// SPEC §3.3: the key is the request as sent upstream. An `X-Locale` named in `Connection` is
/// stripped, so its answer is the default locale's and must not be stored as the fr-FR one.
#[tokio::test]
async fn a_locale_stripped_by_connection_does_not_key_the_answer() {
    let upstream = MockServer::start_async().await;
    let order = new_order();
    let path = order_path(CUSTOMER, &order);
    let body = |language: &str| {
        format!(r#"{{"id":"{order}","attributes":{{"etag":"e1"}},"language":"{language}"}}"#)
    };
    let (french, english) = (body("fr"), body("en"));
    let fr = upstream
        .mock_async(|when, then| {
            when.method(GET).path(&path).header("x-locale", "fr-FR");
            then.status(200)
                .header("content-type", "application/json")
                .body(french.as_str());
        })
        .await;
    let en = upstream
        .mock_async(|when, then| {
            when.method(GET).path(&path).header_missing("x-locale");
            then.status(200)
                .header("content-type", "application/json")
                .body(english.as_str());
        })
        .await;
    let gw = TestGateway::with(&upstream.base_url(), &[("cache.partition", "shared")]).await;
    let url = gw.order_url(&order);
    let stripped = get(
        &url,
        &[
            ("authorization", TOKEN),
            ("x-locale", "fr-FR"),
            ("connection", "x-locale"),
        ],
    )
    .await;
    assert_eq!(stripped.body, Bytes::from(english.clone()));
    let french_reply = get(
        &url,
        &[("authorization", "Bearer other"), ("x-locale", "fr-FR")],
    )
    .await;
    assert_eq!(french_reply.body, Bytes::from(french.clone()));
    assert_eq!(french_reply.header("x-cache"), Some("MISS"));
    // And the stripped request's answer was stored as the no-locale variant.
    let plain = get(&url, &[("authorization", TOKEN)]).await;
    assert_eq!(plain.header("x-cache"), Some("HIT"));
    assert_eq!(plain.body, Bytes::from(english));
    fr.assert_calls_async(1).await;
    en.assert_calls_async(1).await;
    gw.stop().await;
}
