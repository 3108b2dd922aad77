//! The Partner Center simulator and the guided demo.

mod common {
    pub mod http;
    pub mod ids;
    pub mod paths;
}

use std::net::SocketAddr;

use common::{http::*, ids::*, paths::*};
use http::{Method, StatusCode};
use partner_gateway::demo::simulator::{Knobs, Simulator};
use partner_gateway::demo::walkthrough::{Captured, DemoOptions};

async fn simulator(knobs: Knobs) -> Simulator {
    Simulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), knobs)
        .await
        .expect("simulator")
}

#[tokio::test]
async fn simulator_serves_orders_like_partner_center() {
    let sim = simulator(Knobs::default()).await;
    let (customer, orders) = Simulator::catalog().remove(0);
    assert!(orders.len() >= 3);
    let url = format!("{}{}", sim.base_url(), order_path(&customer, &orders[0]));
    let auth = ("authorization", "Bearer t");

    let reply = get(&url, &[auth, ("ms-correlationid", GUID_A)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("ms-correlationid"), Some(GUID_A));
    assert!(reply.header("ms-requestid").is_some());
    let order = reply.json();
    assert_eq!(order["id"], orders[0].as_str());
    assert_eq!(order["referenceCustomerId"], customer.as_str());
    assert_eq!(order["attributes"]["objectType"], "Order");
    for field in [
        "billingCycle",
        "transactionType",
        "currencyCode",
        "creationDate",
        "status",
    ] {
        assert!(order[field].is_string(), "{field}");
    }
    let line = &order["lineItems"][0];
    for field in ["offerId", "subscriptionId", "friendlyName"] {
        assert!(line[field].is_string(), "{field}");
    }
    assert!(line["quantity"].is_u64());
    assert!(line["links"].is_object());
    assert!(order["links"]["self"]["uri"].is_string());
    // The etag is base64 of {"id":…,"version":N}.
    use base64::Engine;
    let etag = order["attributes"]["etag"]
        .as_str()
        .expect("etag")
        .to_owned();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&etag)
        .expect("base64");
    let version: serde_json::Value = serde_json::from_slice(&decoded).expect("json");
    assert_eq!(version["id"], orders[0].as_str());
    assert_eq!(version["version"], 1);

    // PATCH changes the order and bumps the version.
    let patched = send(
        Method::PATCH,
        &url,
        &[auth],
        r#"{"status":"cancelled","lineItems":[{"quantity":9}]}"#,
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK);
    let after = get(&url, &[auth]).await.json();
    assert_eq!(after["status"], "cancelled");
    assert_eq!(after["lineItems"][0]["quantity"], 9);
    assert_ne!(after["attributes"]["etag"].as_str(), Some(etag.as_str()));
    // A stale If-Match is refused.
    let conflict = send(Method::PATCH, &url, &[auth, ("if-match", &etag)], "{}").await;
    assert_eq!(conflict.status, StatusCode::PRECONDITION_FAILED);

    // The collection.
    let list = get(
        &format!("{}/v1/customers/{customer}/orders", sim.base_url()),
        &[auth],
    )
    .await
    .json();
    assert_eq!(list["totalCount"], orders.len());
    assert_eq!(list["items"].as_array().map(Vec::len), Some(orders.len()));
    assert!(list["links"].is_object() && list["attributes"].is_object());

    // Unknown order: 404 in Partner Center's error shape.
    let missing = get(
        &format!("{}{}", sim.base_url(), order_path(&customer, GUID_B)),
        &[auth],
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let error = missing.json();
    assert_eq!(error["source"], "PartnerFD");
    assert!(error["code"].is_u64() && error["description"].is_string());
    assert_eq!(error["data"], serde_json::json!([]));

    // No bearer token: 401.
    let anonymous = get(&url, &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(sim.counters.requests() >= 7);
}

#[tokio::test]
async fn simulator_throttles_each_token_after_its_budget() {
    let sim = simulator(Knobs {
        budget_per_minute: 3,
        ..Knobs::default()
    })
    .await;
    let (customer, orders) = Simulator::catalog().remove(0);
    let url = format!("{}{}", sim.base_url(), order_path(&customer, &orders[0]));
    for _ in 0..3 {
        assert_eq!(
            get(&url, &[("authorization", "Bearer a")]).await.status,
            StatusCode::OK
        );
    }
    let throttled = get(&url, &[("authorization", "Bearer a")]).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = throttled
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    assert_eq!(throttled.json()["statusCode"], 429);
    // Another token has its own budget.
    assert_eq!(
        get(&url, &[("authorization", "Bearer b")]).await.status,
        StatusCode::OK
    );
    assert_eq!(sim.counters.throttled(), 1);
}

#[tokio::test]
async fn simulator_failure_rate_and_latency() {
    let sim = simulator(Knobs {
        failure_rate: 1.0,
        latency: std::time::Duration::from_millis(50),
        ..Knobs::default()
    })
    .await;
    let (customer, orders) = Simulator::catalog().remove(0);
    let url = format!("{}{}", sim.base_url(), order_path(&customer, &orders[0]));
    let started = std::time::Instant::now();
    let reply = get(&url, &[("authorization", "Bearer a")]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
}

#[tokio::test]
async fn demo_walkthrough_shows_miss_hit_304_invalidation_and_one_upstream_request_per_burst() {
    let out = Captured::default();
    let mut writer = out.clone();
    let report = partner_gateway::demo::walkthrough::run(
        DemoOptions {
            fixed_ports: false,
            serve: false,
            color: Some(false),
        },
        &mut writer,
        std::future::pending::<()>(),
    )
    .await
    .expect("demo runs");
    assert_eq!(report.states, vec!["MISS", "HIT", "304", "MISS"]);
    assert_eq!(report.conditional_status, 304);
    assert_ne!(report.first_etag, report.etag_after_patch);
    assert_eq!(report.burst_ok, report.burst_size);
    assert_eq!(report.burst_upstream_requests, 1);
    assert!(report.direct_throttled > 0, "{report:?}");
    assert_eq!(report.shielded_ok, 200);
    assert_eq!(report.shielded_upstream_requests, 0);

    let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
    for expected in [
        "X-Cache            MISS",
        "X-Cache            HIT",
        "304 Not Modified",
        "upstream requests  1",
        "curl -si http://127.0.0.1:",
        "-X PATCH",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains("\x1b["),
        "no colours when asked for plain output"
    );
}
