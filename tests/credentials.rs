//! No caller reads what another caller's credential drew, and a refused credential stops
//! reading (SPEC §4.1, §4.2): revalidations answered 401/403/404 drop the entry; in `shared`
//! mode fills coalesce per credential and 404s are never remembered.

mod common {
    pub mod gateway;
    pub mod http;
    pub mod paths;
    pub mod wait;
    // This file uses a part of each of these.
    #[allow(dead_code)]
    pub mod ids;
    #[allow(dead_code)]
    pub mod order_upstream;
    #[allow(dead_code)]
    pub mod orders;
}

use std::time::Duration;

use common::{gateway::*, http::*, ids::*, order_upstream::*, orders::*, paths::*, wait::*};
use http::StatusCode;
use httpmock::prelude::*;

const TOKEN: &str = "Bearer token-a";

/// Waits (bounded) until the cache holds `n` entries.
async fn entries_become(gw: &TestGateway, n: u64) {
    eventually(Duration::from_secs(10), || async {
        gw.stats().await["entries"].as_u64() == Some(n)
    })
    .await;
}

#[tokio::test]
async fn a_background_refresh_answered_401_stops_the_stale_answers() {
    let Warmed { up, gw, order } = Warmed::start(
        &[
            ("cache.ttl", "100ms"),
            ("cache.stale_while_revalidate", "1h"),
        ],
        TOKEN,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    up.set_mode(Mode::Status(401));
    let url = gw.order_url(&order);
    let stale = get(&url, &[("authorization", TOKEN)]).await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.header("x-cache"), Some("STALE"));
    up.wait_hits(2).await;
    entries_become(&gw, 0).await;
    // The token was revoked: the next request asks the upstream and gets its 401.
    let refused = get(&url, &[("authorization", TOKEN)]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.header("x-cache"), Some("MISS"));
    assert_eq!(up.hits(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn a_revalidation_answered_404_drops_the_entry() {
    let Warmed { up, gw, order } = Warmed::start(
        &[
            ("cache.ttl", "100ms"),
            ("cache.stale_while_revalidate", "0s"),
        ],
        TOKEN,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    up.set_mode(Mode::Status(404));
    let url = gw.order_url(&order);
    let gone = get(&url, &[("authorization", TOKEN)]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(
        up.last_headers().contains_key("if-none-match"),
        "it was a revalidation"
    );
    entries_become(&gw, 0).await;
    // Nothing left to revalidate from: a plain fetch, not REVALIDATED from the old copy.
    up.set_mode(Mode::Normal);
    let again = get(&url, &[("authorization", TOKEN)]).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("x-cache"), Some("MISS"));
    assert!(!up.last_headers().contains_key("if-none-match"));
    gw.stop().await;
}

/// In `shared` mode two callers of one cold key each get the answer to their own credential,
/// even when their requests overlap.
#[tokio::test]
async fn shared_mode_coalesces_only_within_one_credential() {
    let upstream = MockServer::start_async().await;
    let order = new_order();
    let path = order_path(CUSTOMER, &order);
    let good = order_json(CUSTOMER, &order, 1);
    let refused = upstream
        .mock_async(|when, then| {
            when.method(GET)
                .path(&path)
                .header("authorization", "Bearer revoked");
            then.status(401)
                .delay(Duration::from_millis(300))
                .header("content-type", "application/json")
                .body(r#"{"code":401,"description":"revoked","data":[],"source":"PartnerFD"}"#);
        })
        .await;
    let allowed = upstream
        .mock_async(|when, then| {
            when.method(GET).path(&path).header("authorization", TOKEN);
            then.status(200)
                .delay(Duration::from_millis(300))
                .header("content-type", "application/json")
                .body(good.as_str());
        })
        .await;
    let gw = TestGateway::with(&upstream.base_url(), &[("cache.partition", "shared")]).await;
    let url = gw.order_url(&order);
    for first in ["Bearer revoked", TOKEN] {
        let (first_headers, second_headers) =
            ([("authorization", first)], [("authorization", TOKEN)]);
        let (a, b) = tokio::join!(get(&url, &first_headers), get(&url, &second_headers));
        if first == TOKEN {
            // The entry stored by the first round answers both.
            assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
            break;
        }
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "the revoked caller's own answer"
        );
        assert_eq!(b.status, StatusCode::OK, "never another caller's 401");
        assert_eq!(b.body, bytes::Bytes::from(good.clone()));
    }
    refused.assert_calls_async(1).await;
    allowed.assert_calls_async(1).await;
    gw.stop().await;
}

#[tokio::test]
async fn shared_mode_never_remembers_a_404() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(
        &up.base_url,
        &[("cache.partition", "shared"), ("cache.negative_ttl", "1h")],
    )
    .await;
    up.set_mode(Mode::Status(404));
    let url = gw.order_url(&new_order());
    for (token, hits) in [(TOKEN, 1), ("Bearer other", 2), (TOKEN, 3)] {
        let reply = get(&url, &[("authorization", token)]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.header("x-cache"), Some("MISS"));
        assert_eq!(
            up.hits(),
            hits,
            "a 404 for one caller is asked again for the next"
        );
    }
    assert_eq!(gw.stats().await["entries"], 0);
    // The same in credential mode is remembered per credential.
    let gw2 = TestGateway::with(&up.base_url, &[("cache.negative_ttl", "1h")]).await;
    let url = gw2.order_url(&new_order());
    for state in ["MISS", "HIT"] {
        let reply = get(&url, &[("authorization", TOKEN), ("ms-requestid", GUID_A)]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.header("x-cache"), Some(state));
    }
    gw.stop().await;
    gw2.stop().await;
}
