//! Subscriptions and customers (SPEC §13): cached like orders when `cache.resources` names them,
//! each dropped by its own writes — and a customer's subscriptions by any write on its orders —
//! against the Partner Center simulator, which counts the GETs of each resource it serves.

mod common {
    pub mod gateway;
    pub mod http;
}

use std::net::SocketAddr;

use common::{gateway::*, http::*};
use http::{Method, StatusCode};
use partner_gateway::demo::simulator::{Knobs, SampleAccount, Simulator};

const AUTH: (&str, &str) = ("authorization", "Bearer resources");
const ALL: (&str, &str) = ("cache.resources", "orders,subscriptions,customers");

/// The simulator, a gateway in front of it with `overrides`, and the first sample account.
async fn setup(overrides: &[(&str, &str)]) -> (Simulator, TestGateway, SampleAccount) {
    let sim = Simulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), Knobs::default())
        .await
        .expect("simulator");
    let gw = TestGateway::with(&sim.base_url(), overrides).await;
    let account = Simulator::accounts().remove(0);
    (sim, gw, account)
}

fn subscription_path(account: &SampleAccount, index: usize) -> String {
    let id = &account.subscriptions[index].id;
    format!("/v1/customers/{}/subscriptions/{id}", account.customer)
}

fn customer_path(account: &SampleAccount) -> String {
    format!("/v1/customers/{}", account.customer)
}

async fn read(gw: &TestGateway, path: &str) -> Reply {
    get(&gw.url(path), &[AUTH]).await
}

async fn write(gw: &TestGateway, method: Method, path: &str, body: &str) -> Reply {
    let headers = [AUTH, ("content-type", "application/json")];
    send(method, &gw.url(path), &headers, body.to_owned()).await
}

/// `X-Cache` and the body's `attributes.etag` of a read.
fn seen(reply: &Reply) -> (Option<String>, String) {
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let etag = reply.json()["attributes"]["etag"]
        .as_str()
        .expect("attributes.etag")
        .to_owned();
    (reply.header("x-cache").map(str::to_owned), etag)
}

#[tokio::test]
async fn subscriptions_and_customers_are_cached_like_orders() {
    // The env form of the list (the test gateway's overrides are environment variables).
    let (sim, gw, account) = setup(&[ALL]).await;
    let subscription = subscription_path(&account, 0);
    let first = read(&gw, &subscription).await;
    let (state, etag) = seen(&first);
    assert_eq!(state.as_deref(), Some("MISS"));
    assert_eq!(first.header("etag"), Some(format!("\"{etag}\"").as_str()));
    assert_eq!(
        seen(&read(&gw, &subscription).await).0.as_deref(),
        Some("HIT")
    );
    assert_eq!(sim.counters.subscription_gets(), 1);
    // Conditional requests are answered by the gateway too.
    let etag_header = format!("\"{etag}\"");
    let conditional = [AUTH, ("if-none-match", etag_header.as_str())];
    let not_modified = get(&gw.url(&subscription), &conditional).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);

    let customer = customer_path(&account);
    assert_eq!(seen(&read(&gw, &customer).await).0.as_deref(), Some("MISS"));
    let again = read(&gw, &customer).await;
    assert_eq!(seen(&again).0.as_deref(), Some("HIT"));
    assert_eq!(again.json()["id"], account.customer.as_str());
    assert_eq!(sim.counters.customer_gets(), 1);

    let stats = gw.stats().await;
    assert_eq!(
        stats["resources"],
        serde_json::json!({"orders": 0, "subscriptions": 1, "customers": 1})
    );
    let metrics =
        String::from_utf8_lossy(&get(&gw.admin_url("/metrics"), &[]).await.body).into_owned();
    for route in ["subscription", "customer"] {
        let series = format!("route=\"{route}\",status=\"200\",cache=\"HIT\"");
        assert!(metrics.contains(&series), "no {series} in metrics");
    }
    gw.stop().await;
}

#[tokio::test]
async fn by_default_only_orders_are_cached() {
    let (sim, gw, account) = setup(&[]).await;
    let subscription = subscription_path(&account, 0);
    for _ in 0..2 {
        let reply = read(&gw, &subscription).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_ne!(reply.header("x-cache"), Some("HIT"));
    }
    assert_eq!(sim.counters.subscription_gets(), 2, "both went upstream");
    // A subscription path with a bad id is not the gateway's to judge either.
    let bad = format!("/v1/customers/{}/subscriptions/42", account.customer);
    assert_ne!(read(&gw, &bad).await.status, StatusCode::BAD_REQUEST);
    gw.stop().await;
}

#[tokio::test]
async fn a_subscription_path_with_a_bad_id_is_refused_without_asking_upstream() {
    let (sim, gw, account) = setup(&[ALL]).await;
    let bad = format!("/v1/customers/{}/subscriptions/42", account.customer);
    let reply = read(&gw, &bad).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["errorName"], "InvalidIdentifier");
    let description = reply.json()["description"].to_string();
    assert!(description.contains("id-for-subscription"), "{description}");
    assert_eq!(sim.counters.requests(), 0);
    // Partner Center's own non-GUID paths are forwarded, not refused: under /v1/customers, and
    // collections named in a subscription's place.
    let other = read(&gw, "/v1/customers/relationshiprequests").await;
    assert_ne!(other.status, StatusCode::BAD_REQUEST);
    let usage = format!(
        "/v1/customers/{}/subscriptions/usagerecords",
        account.customer
    );
    assert_ne!(read(&gw, &usage).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(sim.counters.requests(), 2, "both forwarded");
    gw.stop().await;
}

#[tokio::test]
async fn a_write_on_a_subscription_drops_it() {
    let (_sim, gw, account) = setup(&[ALL]).await;
    let path = subscription_path(&account, 0);
    let (_, before) = seen(&read(&gw, &path).await);
    let patched = write(&gw, Method::PATCH, &path, r#"{"quantity": 7}"#).await;
    assert_eq!(patched.status, StatusCode::OK);
    let after = read(&gw, &path).await;
    let (state, etag) = seen(&after);
    assert_eq!(state.as_deref(), Some("MISS"));
    assert_ne!(etag, before);
    assert_eq!(after.json()["quantity"], 7);
    gw.stop().await;
}

#[tokio::test]
async fn placing_an_order_drops_the_customers_subscriptions() {
    let (sim, gw, account) = setup(&[ALL]).await;
    let subscription = &account.subscriptions[0];
    let path = subscription_path(&account, 0);
    let other_sub = subscription_path(&account, 1);
    let before = read(&gw, &path).await;
    let (_, old_etag) = seen(&before);
    let quantity = before.json()["quantity"].as_u64().expect("quantity");
    read(&gw, &other_sub).await;
    // Another customer's subscription is not touched by this customer's order.
    let stranger = Simulator::accounts().remove(1);
    let stranger_path = subscription_path(&stranger, 0);
    read(&gw, &stranger_path).await;
    let customer = customer_path(&account);
    read(&gw, &customer).await;
    assert_eq!(sim.counters.subscription_gets(), 3);

    let order = format!(
        r#"{{"lineItems":[{{"offerId":"{}","quantity":2}}]}}"#,
        subscription.offer_id
    );
    let orders = format!("/v1/customers/{}/orders", account.customer);
    let placed = write(&gw, Method::POST, &orders, &order).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);

    let after = read(&gw, &path).await;
    let (state, etag) = seen(&after);
    assert_eq!(state.as_deref(), Some("MISS"), "the order changed it");
    assert_ne!(etag, old_etag);
    assert_eq!(after.json()["quantity"].as_u64(), Some(quantity + 2));
    // Every subscription of the customer went, not only the one the order changed.
    assert_eq!(
        seen(&read(&gw, &other_sub).await).0.as_deref(),
        Some("MISS")
    );
    assert_eq!(
        seen(&read(&gw, &stranger_path).await).0.as_deref(),
        Some("HIT")
    );
    // Orders do not change the customer record.
    assert_eq!(seen(&read(&gw, &customer).await).0.as_deref(), Some("HIT"));
    gw.stop().await;
}

#[tokio::test]
async fn a_customer_is_dropped_by_its_own_writes_and_its_profiles() {
    let (_sim, gw, account) = setup(&[ALL]).await;
    let customer = customer_path(&account);
    let (_, v1) = seen(&read(&gw, &customer).await);
    let billing = format!("{customer}/profiles/billing");
    let put = write(&gw, Method::PUT, &billing, r#"{"firstName": "Ada"}"#).await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    let (state, v2) = seen(&read(&gw, &customer).await);
    assert_eq!(state.as_deref(), Some("MISS"));
    assert_ne!(v2, v1);
    let body = r#"{"companyProfile": {"companyName": "Renamed"}}"#;
    let patched = write(&gw, Method::PATCH, &customer, body).await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    let (state, v3) = seen(&read(&gw, &customer).await);
    assert_eq!(state.as_deref(), Some("MISS"));
    assert_ne!(v3, v2);
    gw.stop().await;
}

#[tokio::test]
async fn admin_purges_drop_one_subscription_or_every_resource_of_a_customer() {
    let (sim, gw, account) = setup(&[ALL]).await;
    let order = format!(
        "/v1/customers/{}/orders/{}",
        account.customer, account.orders[0]
    );
    let (subscription, customer) = (subscription_path(&account, 0), customer_path(&account));
    for path in [&order, &subscription, &customer] {
        read(&gw, path).await;
    }
    let purge = |path: String| {
        let url = gw.admin_url(&path);
        async move { send(Method::DELETE, &url, &[], bytes::Bytes::new()).await }
    };
    let c = &account.customer;
    let one = purge(format!(
        "/cache/customers/{c}/subscriptions/{}",
        account.subscriptions[0].id
    ))
    .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["purged"], 1);
    assert_eq!(
        seen(&read(&gw, &subscription).await).0.as_deref(),
        Some("MISS")
    );
    assert_eq!(seen(&read(&gw, &order).await).0.as_deref(), Some("HIT"));
    assert_eq!(sim.counters.subscription_gets(), 2);

    let all = purge(format!("/cache/customers/{c}")).await;
    assert_eq!(
        all.json()["purged"],
        3,
        "the order, the subscription, the customer"
    );
    for path in [&order, &subscription, &customer] {
        assert_eq!(
            seen(&read(&gw, path).await).0.as_deref(),
            Some("MISS"),
            "{path}"
        );
    }
    gw.stop().await;
}
