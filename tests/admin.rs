//! Admin purges from outside (SPEC §8): who may purge, and what a refusal looks like (SPEC §7).
//!
//! Every test here stays on loopback; the non-loopback cases (403 without a token) are the
//! table tests of `src/admin/auth.rs`, whose decision is a pure function of the peer.

mod common {
    pub mod gateway;
    pub mod http;
    pub mod ids;
    pub mod order_upstream;
    pub mod orders;
    pub mod paths;
}

use common::{gateway::*, http::*, ids::*, order_upstream::*, orders::*, paths::*};
use http::{Method, StatusCode};

/// `DELETE` on the admin port with `headers`.
async fn purge(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(Method::DELETE, &gw.admin_url(path), headers, "").await
}

/// A refused purge is the SPEC §7 JSON with correlation IDs, never stored by anyone.
fn assert_refused(reply: &Reply, status: StatusCode, name: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let json = reply.json();
    assert_eq!(json["code"], status.as_u16());
    assert_eq!(json["errorName"], name);
    assert_eq!(json["source"], "partner-gateway");
    assert_eq!(json["data"], serde_json::json!([]));
    assert!(json["description"].as_str().is_some_and(|d| !d.is_empty()));
    for id in ["ms-correlationid", "ms-requestid"] {
        let value = reply.header(id).unwrap_or_else(|| panic!("{id} missing"));
        assert!(uuid::Uuid::try_parse(value).is_ok(), "{id}: {value}");
    }
}

#[tokio::test]
async fn purges_with_a_token_set_need_the_bearer_token() {
    let token = "admin-s3cret";
    let auth = "Bearer t";
    let Warmed { up, gw, order } = Warmed::start(&[("admin.token", token)], auth).await;
    let one = format!("/cache/customers/{CUSTOMER}/orders/{order}");

    // No Authorization: 401, IDs minted.
    let none = purge(&gw, &one, &[]).await;
    assert_refused(&none, StatusCode::UNAUTHORIZED, "AdminUnauthorized");
    assert!(none
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    // A wrong token (and a right one under another scheme): 401, the client's GUIDs kept.
    for wrong in [
        "Bearer admin-s3cre",
        "Bearer admin-s3cret-and-more",
        "Basic admin-s3cret",
    ] {
        let reply = purge(
            &gw,
            &one,
            &[
                ("authorization", wrong),
                ("ms-correlationid", GUID_A),
                ("ms-requestid", GUID_B),
            ],
        )
        .await;
        assert_refused(&reply, StatusCode::UNAUTHORIZED, "AdminUnauthorized");
        assert_eq!(reply.header("ms-correlationid"), Some(GUID_A), "{wrong}");
        assert_eq!(reply.header("ms-requestid"), Some(GUID_B), "{wrong}");
    }
    // Refusals before the ids are looked at: a bad GUID is not even reported.
    let bad = purge(&gw, "/cache/customers/not-a-guid", &[]).await;
    assert_refused(&bad, StatusCode::UNAUTHORIZED, "AdminUnauthorized");
    assert_eq!(gw.stats().await["entries"], 1, "nothing purged yet");

    // The right token: purged.
    let bearer = format!("Bearer {token}");
    let right = purge(&gw, &one, &[("authorization", &bearer)]).await;
    assert_eq!(right.status, StatusCode::OK, "{:?}", right.body);
    assert_eq!(right.json(), serde_json::json!({"purged": 1}));
    assert_eq!(right.header("cache-control"), Some("no-store"));
    assert!(right.header("ms-correlationid").is_some());
    assert_eq!(gw.stats().await["entries"], 0);
    let again = get(&gw.order_url(&order), &[("authorization", auth)]).await;
    assert_eq!(again.header("x-cache"), Some("MISS"));
    assert_eq!(up.hits(), 2);
    let all = purge(&gw, "/cache", &[("authorization", &bearer)]).await;
    assert_eq!(all.json(), serde_json::json!({"purged": 1}));

    // The GET endpoints stay open for probes and scrapers.
    for path in ["/healthz", "/readyz", "/metrics", "/cache/stats"] {
        let reply = get(&gw.admin_url(path), &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn purges_without_a_token_are_accepted_from_loopback() {
    let auth = "Bearer t";
    let Warmed { up, gw, order } = Warmed::start(&[], auth).await;
    // Two more orders of the customer, and one of another customer that must survive.
    let more = vec![
        gw.order_url(&new_order()),
        gw.order_url(&new_order()),
        gw.url(&order_path(GUID_A, &new_order())),
    ];
    for reply in concurrent_gets(more, &[("authorization", auth)]).await {
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(gw.stats().await["entries"], 4);

    let customer = purge(&gw, &format!("/cache/customers/{CUSTOMER}"), &[]).await;
    assert_eq!(customer.status, StatusCode::OK, "{:?}", customer.body);
    assert_eq!(customer.json(), serde_json::json!({"purged": 3}));
    assert_eq!(gw.stats().await["entries"], 1);
    // Gone, not kept for stale-if-error: with the upstream failing, no STALE copy answers.
    up.set_mode(Mode::Status(500));
    let after = get(&gw.order_url(&order), &[("authorization", auth)]).await;
    assert_eq!(after.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(after.header("x-cache"), Some("MISS"));

    // With no token configured an Authorization header is neither needed nor harmful.
    let reply = purge(&gw, "/cache", &[("authorization", "Bearer whatever")]).await;
    assert_eq!(reply.json(), serde_json::json!({"purged": 1}));
    // Not a purge: the admin port's errors are Partner Center's shape too (SPEC §7, §8).
    let bad = purge(&gw, "/cache/customers/not-a-guid", &[]).await;
    assert_refused(&bad, StatusCode::BAD_REQUEST, "InvalidIdentifier");
    assert!(bad.json()["description"]
        .as_str()
        .is_some_and(|d| d.contains("customer-tenant-id")));
    let path = format!("/cache/customers/{CUSTOMER}/subscriptions/nope");
    let bad_item = purge(&gw, &path, &[]).await;
    assert_refused(&bad_item, StatusCode::BAD_REQUEST, "InvalidIdentifier");
    assert!(bad_item.json()["description"]
        .as_str()
        .is_some_and(|d| d.contains("id-for-subscription")));
    let wrong_method = get(&gw.admin_url("/cache"), &[]).await;
    assert_refused(
        &wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
    );
    let wrong_method = purge(&gw, "/healthz", &[]).await;
    assert_refused(
        &wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
    );
    for unknown in ["/nope", "/cache/customers", "/cache/customers/x/carts/y"] {
        let reply = get(&gw.admin_url(unknown), &[]).await;
        assert_refused(&reply, StatusCode::NOT_FOUND, "NotFound");
    }
    gw.stop().await;
}
