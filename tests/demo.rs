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
    // Relative, as Partner Center's links are: never the simulator's own address.
    let own = format!("/customers/{customer}/orders/{}", orders[0]);
    assert_eq!(order["links"]["self"]["uri"], own.as_str());
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

fn text_of(out: &Captured) -> String {
    String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8")
}

#[tokio::test]
async fn demo_walkthrough_shows_miss_hit_304_invalidation_and_one_upstream_request_per_burst() {
    let out = Captured::default();
    let mut writer = out.clone();
    let report = partner_gateway::demo::walkthrough::run(
        DemoOptions {
            fixed_ports: false,
            sources: partner_gateway::config::Sources::default(),
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
    let subscription = &report.subscription;
    assert_eq!(subscription.states, vec!["MISS", "HIT", "MISS"]);
    assert_eq!(subscription.order_status, 201);
    // SPEC §15.1, §15.4: the placed order reads pending (first poll a MISS), then completed
    // within the simulator's 3 s plus the demo gateway's unsettled_ttl of 2 s (one poll a
    // second, a second of slack); settled, it is a plain HIT.
    let polls = &subscription.polls;
    assert_eq!(polls[0].0, "pending", "{polls:?}");
    assert_eq!(polls[0].1, "MISS", "{polls:?}");
    assert_eq!(
        polls.last().map(|p| p.0.as_str()),
        Some("completed"),
        "{polls:?}"
    );
    assert!(polls.len() <= 7, "completed seen late: {polls:?}");
    assert_ne!(polls[0].2, polls[polls.len() - 1].2, "a new etag");
    assert!(
        polls.iter().all(|p| p.1 != "STALE"),
        "never STALE: {polls:?}"
    );
    assert_eq!(subscription.settled_state, "HIT");
    assert_ne!(subscription.etag_before, subscription.etag_after);
    assert_eq!(
        subscription.upstream_gets, 2,
        "a miss, then the refill after the order"
    );
    // SPEC §15.2–§15.4: a portal change announced by the simulator's signed notification shows
    // at once; one found only in the audit records within the follower's interval (1 s).
    let elsewhere = &report.elsewhere;
    assert_eq!(elsewhere.subscription_states, ["MISS", "HIT"]);
    assert_eq!(elsewhere.customer_states, ["MISS", "HIT"]);
    let notified = elsewhere
        .notified_after
        .expect("the notified change showed");
    let audited = elsewhere.audited_after.expect("the audited change showed");
    assert!(notified < std::time::Duration::from_secs(3), "{notified:?}");
    assert!(audited < std::time::Duration::from_secs(5), "{audited:?}");
    assert_ne!(report.first_etag, report.etag_after_patch);
    assert_eq!(report.burst_ok, report.burst_size);
    assert_eq!(report.burst_upstream_requests, 1);
    // Step 7's figures come from its printed commands: the gateway's one read (printed first)
    // spends 1 of the token's 30 a minute, the 40 direct calls the other 29.
    assert_eq!(
        (report.direct_ok, report.direct_throttled),
        (29, 11),
        "{report:?}"
    );
    let warm = text_of(&out).find("# the gateway reads it once");
    let direct = text_of(&out).find("for i in $(seq 40)");
    assert!(
        warm.is_some() && warm < direct,
        "the warm-up is printed before the direct loop"
    );
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

const AUTH: (&str, &str) = ("authorization", "Bearer t");

fn subscription_path(customer: &str, subscription: &str) -> String {
    format!("/v1/customers/{customer}/subscriptions/{subscription}")
}

fn customer_path(customer: &str) -> String {
    format!("/v1/customers/{customer}")
}

/// The (id, version) inside a resource's `attributes.etag` (base64 of `{"id":…,"version":N}`).
fn etag_version(resource: &serde_json::Value) -> (String, u64) {
    use base64::Engine;
    let etag = resource["attributes"]["etag"].as_str().expect("etag");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(etag)
        .expect("base64");
    let token: serde_json::Value = serde_json::from_slice(&decoded).expect("json");
    (
        token["id"].as_str().expect("id").to_owned(),
        token["version"].as_u64().expect("version"),
    )
}

/// Partner Center's error body.
fn assert_partner_error(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    let error = reply.json();
    assert_eq!(error["source"], "PartnerFD");
    assert!(error["code"].is_u64() && error["description"].is_string());
    assert_eq!(error["data"], serde_json::json!([]));
}

#[tokio::test]
async fn simulator_serves_subscriptions_whose_etag_a_patch_bumps() {
    let sim = simulator(Knobs::default()).await;
    let account = Simulator::accounts().remove(0);
    assert_eq!(account.subscriptions.len(), account.orders.len());
    let sample = &account.subscriptions[0];
    let url = format!(
        "{}{}",
        sim.base_url(),
        subscription_path(&account.customer, &sample.id)
    );

    let reply = get(&url, &[AUTH, ("ms-correlationid", GUID_A)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("ms-correlationid"), Some(GUID_A));
    let subscription = reply.json();
    assert_eq!(subscription["id"], sample.id.as_str());
    assert_eq!(subscription["offerId"], sample.offer_id.as_str());
    assert_eq!(subscription["orderId"], sample.order_id.as_str());
    assert_eq!(subscription["status"], "active");
    assert_eq!(subscription["attributes"]["objectType"], "Subscription");
    for field in ["offerName", "unitType", "creationDate", "billingCycle"] {
        assert!(subscription[field].is_string(), "{field}");
    }
    assert!(subscription["autoRenewEnabled"].is_boolean());
    assert_eq!(etag_version(&subscription), (sample.id.clone(), 1));
    // The order that made it names it, with the same quantity.
    let order = get(
        &format!(
            "{}{}",
            sim.base_url(),
            order_path(&account.customer, &sample.order_id)
        ),
        &[AUTH],
    )
    .await
    .json();
    assert_eq!(order["lineItems"][0]["subscriptionId"], sample.id.as_str());
    assert_eq!(order["lineItems"][0]["quantity"], subscription["quantity"]);

    // PATCH changes it and bumps the version, in the answer and in the next GET.
    let patched = send(
        Method::PATCH,
        &url,
        &[AUTH],
        r#"{"quantity":20,"status":"suspended"}"#,
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(etag_version(&patched.json()), (sample.id.clone(), 2));
    let after = get(&url, &[AUTH]).await.json();
    assert_eq!(after["quantity"], 20);
    assert_eq!(after["status"], "suspended");
    assert_eq!(
        after["attributes"]["etag"],
        patched.json()["attributes"]["etag"]
    );

    // If-Match: a stale ETag is refused, the current one accepted.
    let stale = subscription["attributes"]["etag"].as_str().expect("etag");
    let conflict = send(Method::PATCH, &url, &[AUTH, ("if-match", stale)], "{}").await;
    assert_partner_error(&conflict, StatusCode::PRECONDITION_FAILED);
    let current = after["attributes"]["etag"].as_str().expect("etag");
    let body = r#"{"status":"active"}"#;
    let ok = send(Method::PATCH, &url, &[AUTH, ("if-match", current)], body).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(etag_version(&ok.json()).1, 3);

    // Bad bodies: 400 in Partner Center's shape, nothing changed.
    let bad_status = send(Method::PATCH, &url, &[AUTH], r#"{"status":"gone"}"#).await;
    assert_partner_error(&bad_status, StatusCode::BAD_REQUEST);
    let bad_json = send(Method::PATCH, &url, &[AUTH], "{not json").await;
    assert_partner_error(&bad_json, StatusCode::BAD_REQUEST);
    assert_eq!(etag_version(&get(&url, &[AUTH]).await.json()).1, 3);

    // The collection.
    let list = get(
        &format!(
            "{}/v1/customers/{}/subscriptions",
            sim.base_url(),
            account.customer
        ),
        &[AUTH],
    )
    .await
    .json();
    assert_eq!(list["totalCount"], account.subscriptions.len());
    assert_eq!(list["attributes"]["objectType"], "Collection");

    // Unknown subscription: 404; no bearer token: 401.
    let missing = get(
        &format!(
            "{}{}",
            sim.base_url(),
            subscription_path(&account.customer, GUID_B)
        ),
        &[AUTH],
    )
    .await;
    assert_partner_error(&missing, StatusCode::NOT_FOUND);
    assert_partner_error(&get(&url, &[]).await, StatusCode::UNAUTHORIZED);
    // Counted per resource: four subscription GETs got past auth (the 401 did not), one order GET.
    assert_eq!(sim.counters.subscription_gets(), 4);
    assert_eq!(sim.counters.order_gets(), 1);
    assert_eq!(sim.counters.customer_gets(), 0);
}

#[tokio::test]
async fn creating_an_order_grows_the_subscription_for_its_offer_or_creates_one() {
    let sim = simulator(Knobs::default()).await;
    let account = Simulator::accounts().remove(0);
    let existing = &account.subscriptions[1];
    let existing_url = format!(
        "{}{}",
        sim.base_url(),
        subscription_path(&account.customer, &existing.id)
    );
    let before = get(&existing_url, &[AUTH]).await.json();
    let seats = before["quantity"].as_u64().expect("quantity");
    let new_offer = "CFQ7TTC0QH1G:0001:CFQ7TTC0NM2Q";
    assert!(account
        .subscriptions
        .iter()
        .all(|s| s.offer_id != new_offer));

    let orders_url = format!(
        "{}/v1/customers/{}/orders",
        sim.base_url(),
        account.customer
    );
    let body = serde_json::json!({
        "referenceCustomerId": account.customer,
        "billingCycle": "monthly",
        "lineItems": [
            {"lineItemNumber": 0, "offerId": existing.offer_id, "quantity": 3},
            {"lineItemNumber": 1, "offerId": new_offer, "friendlyName": "Teams Essentials", "quantity": 2}
        ]
    });
    let created = send(Method::POST, &orders_url, &[AUTH], body.to_string()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let order = created.json();
    let order_id = order["id"].as_str().expect("order id").to_owned();
    assert_eq!(order["attributes"]["objectType"], "Order");
    assert_eq!(
        order["lineItems"][0]["subscriptionId"],
        existing.id.as_str()
    );
    let new_id = order["lineItems"][1]["subscriptionId"]
        .as_str()
        .expect("new subscription id")
        .to_owned();
    assert!(account.subscriptions.iter().all(|s| s.id != new_id));

    // The existing subscription has three more seats and a new etag.
    let grown = get(&existing_url, &[AUTH]).await.json();
    assert_eq!(grown["quantity"], seats + 3);
    assert_eq!(etag_version(&grown), (existing.id.clone(), 2));

    // The new one can be fetched, and so can the order.
    let new_url = format!(
        "{}{}",
        sim.base_url(),
        subscription_path(&account.customer, &new_id)
    );
    let fresh = get(&new_url, &[AUTH]).await;
    assert_eq!(fresh.status, StatusCode::OK);
    let fresh = fresh.json();
    assert_eq!(fresh["offerId"], new_offer);
    assert_eq!(fresh["friendlyName"], "Teams Essentials");
    assert_eq!(fresh["quantity"], 2);
    assert_eq!(fresh["orderId"], order_id.as_str());
    assert_eq!(etag_version(&fresh), (new_id.clone(), 1));
    let order_url = format!(
        "{}{}",
        sim.base_url(),
        order_path(&account.customer, &order_id)
    );
    assert_eq!(get(&order_url, &[AUTH]).await.json(), order);
    let list = get(
        &format!(
            "{}/v1/customers/{}/subscriptions",
            sim.base_url(),
            account.customer
        ),
        &[AUTH],
    )
    .await
    .json();
    assert_eq!(list["totalCount"], account.subscriptions.len() + 1);

    // A PATCH of the order's quantity moves the subscription by the difference.
    let patch = r#"{"lineItems":[{"lineItemNumber":1,"quantity":5}]}"#;
    let patched = send(Method::PATCH, &order_url, &[AUTH], patch).await;
    assert_eq!(patched.status, StatusCode::OK);
    let moved = get(&new_url, &[AUTH]).await.json();
    assert_eq!(moved["quantity"], 5);
    assert_eq!(etag_version(&moved).1, 2);
    // Other customers' subscriptions are untouched.
    let other = Simulator::accounts().remove(1);
    let theirs = get(
        &format!(
            "{}{}",
            sim.base_url(),
            subscription_path(&other.customer, &other.subscriptions[1].id)
        ),
        &[AUTH],
    )
    .await
    .json();
    assert_eq!(etag_version(&theirs).1, 1);

    // Refusals: no line items, a bad quantity, bad JSON, an unknown customer, no token.
    for bad in [
        r#"{"lineItems":[]}"#,
        r#"{"lineItems":[{"offerId":"X","quantity":0}]}"#,
        "{",
    ] {
        let reply = send(Method::POST, &orders_url, &[AUTH], bad).await;
        assert_partner_error(&reply, StatusCode::BAD_REQUEST);
    }
    let nobody = format!("{}/v1/customers/{GUID_B}/orders", sim.base_url());
    let reply = send(Method::POST, &nobody, &[AUTH], body.to_string()).await;
    assert_partner_error(&reply, StatusCode::NOT_FOUND);
    let reply = send(Method::POST, &orders_url, &[], body.to_string()).await;
    assert_partner_error(&reply, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&existing_url, &[AUTH]).await.json()["quantity"],
        seats + 3
    );
}

#[tokio::test]
async fn simulator_serves_customers_whose_etag_a_patch_or_billing_put_bumps() {
    let sim = simulator(Knobs::default()).await;
    let account = Simulator::accounts().remove(0);
    let url = format!("{}{}", sim.base_url(), customer_path(&account.customer));
    let customer = get(&url, &[AUTH]).await.json();
    assert_eq!(customer["id"], account.customer.as_str());
    let company = &customer["companyProfile"];
    assert_eq!(company["tenantId"], account.customer.as_str());
    assert!(company["domain"].is_string() && company["companyName"].is_string());
    let billing = &customer["billingProfile"];
    for field in ["id", "email", "culture", "language", "companyName"] {
        assert!(billing[field].is_string(), "{field}");
    }
    assert!(billing["defaultAddress"]["country"].is_string());
    assert!(customer["relationshipToPartner"].is_string());
    assert_eq!(customer["attributes"]["objectType"], "Customer");
    assert_eq!(etag_version(&customer), (account.customer.clone(), 1));

    // PATCH answers the changed customer with the next version.
    let body = r#"{"companyProfile":{"companyName":"Contoso Renamed"}}"#;
    let patched = send(Method::PATCH, &url, &[AUTH], body).await;
    assert_eq!(patched.status, StatusCode::OK);
    let patched = patched.json();
    assert_eq!(patched["companyProfile"]["companyName"], "Contoso Renamed");
    assert_eq!(etag_version(&patched).1, 2);

    // PUT of the billing profile answers the profile; the customer's version moves on too.
    let billing_url = format!("{url}/profiles/billing");
    let body = r#"{"email":"billing@contoso.example","defaultAddress":{"city":"Seattle"}}"#;
    let put = send(Method::PUT, &billing_url, &[AUTH], body).await;
    assert_eq!(put.status, StatusCode::OK);
    let profile = put.json();
    assert_eq!(profile["email"], "billing@contoso.example");
    assert_eq!(profile["defaultAddress"]["city"], "Seattle");
    assert_eq!(
        profile["attributes"]["objectType"],
        "CustomerBillingProfile"
    );
    let after = get(&url, &[AUTH]).await.json();
    assert_eq!(etag_version(&after).1, 3);
    assert_eq!(after["billingProfile"]["email"], "billing@contoso.example");
    assert_eq!(after["billingProfile"]["defaultAddress"]["country"], "US");
    assert_eq!(
        get(&billing_url, &[AUTH]).await.json()["attributes"]["etag"],
        profile["attributes"]["etag"]
    );

    // If-Match: stale refused; bad bodies 400; nothing changed by either.
    let stale = customer["attributes"]["etag"].as_str().expect("etag");
    let conflict = send(Method::PATCH, &url, &[AUTH, ("if-match", stale)], "{}").await;
    assert_partner_error(&conflict, StatusCode::PRECONDITION_FAILED);
    let conflict = send(
        Method::PUT,
        &billing_url,
        &[AUTH, ("if-match", stale)],
        "{}",
    )
    .await;
    assert_partner_error(&conflict, StatusCode::PRECONDITION_FAILED);
    let bad = send(Method::PUT, &billing_url, &[AUTH], r#"{"email":7}"#).await;
    assert_partner_error(&bad, StatusCode::BAD_REQUEST);
    let bad = send(Method::PATCH, &url, &[AUTH], "[").await;
    assert_partner_error(&bad, StatusCode::BAD_REQUEST);
    assert_eq!(etag_version(&get(&url, &[AUTH]).await.json()).1, 3);

    // Unknown customer: 404; no bearer token: 401.
    let missing = get(
        &format!("{}{}", sim.base_url(), customer_path(GUID_B)),
        &[AUTH],
    )
    .await;
    assert_partner_error(&missing, StatusCode::NOT_FOUND);
    assert_partner_error(&get(&url, &[]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(sim.counters.customer_gets(), 4);
    assert_eq!(sim.counters.subscription_gets(), 0);
    assert_eq!(sim.counters.order_gets(), 0);
}

#[tokio::test]
async fn new_resources_share_the_budget_and_failure_knobs() {
    let account = Simulator::accounts().remove(0);
    let paths = [
        customer_path(&account.customer),
        subscription_path(&account.customer, &account.subscriptions[0].id),
    ];
    let failing = simulator(Knobs {
        failure_rate: 1.0,
        ..Knobs::default()
    })
    .await;
    for path in &paths {
        let reply = get(&format!("{}{path}", failing.base_url()), &[AUTH]).await;
        assert_partner_error(&reply, StatusCode::SERVICE_UNAVAILABLE);
    }
    let budget = simulator(Knobs {
        budget_per_minute: 1,
        ..Knobs::default()
    })
    .await;
    let first = get(&format!("{}{}", budget.base_url(), paths[0]), &[AUTH]).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = get(&format!("{}{}", budget.base_url(), paths[1]), &[AUTH]).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(second.header("retry-after").is_some());
    // Every sample path is listed and answers.
    let all = Simulator::paths();
    assert!(all.contains(&paths[0]) && all.contains(&paths[1]));
    let open = simulator(Knobs::default()).await;
    for path in &all {
        let reply = get(&format!("{}{path}", open.base_url()), &[AUTH]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let id = path.rsplit('/').next().expect("id");
        assert_eq!(reply.json()["id"], id, "{path}");
    }
}

/// SPEC §15.4: an order placed through the simulator is `pending` (its line items not yet in
/// a subscription) until its provisioning time has passed, then `completed` with a new etag,
/// and its subscription grows then — with no call from anyone.
#[tokio::test]
async fn a_placed_order_is_pending_until_provisioned_then_completed_with_a_new_etag() {
    let sim = simulator(Knobs {
        provisioning: std::time::Duration::from_millis(500),
        ..Knobs::default()
    })
    .await;
    let account = Simulator::accounts().remove(0);
    let sample = &account.subscriptions[0];
    let base = sim.base_url();
    let subscription_url = format!("{base}{}", subscription_path(&account.customer, &sample.id));
    let seats = |s: &serde_json::Value| s["quantity"].as_u64().expect("quantity");
    let before = get(&subscription_url, &[AUTH]).await.json();

    let orders = format!("{base}/v1/customers/{}/orders", account.customer);
    let body = format!(
        r#"{{"lineItems":[{{"offerId":"{}","quantity":2}}]}}"#,
        sample.offer_id
    );
    let placed = send(Method::POST, &orders, &[AUTH], body).await;
    assert_eq!(placed.status, StatusCode::CREATED);
    let placed = placed.json();
    assert_eq!(placed["status"], "pending");
    assert!(placed["lineItems"][0].get("subscriptionId").is_none());
    let order_url = format!("{orders}/{}", placed["id"].as_str().expect("id"));
    let (_, version) = etag_version(&placed);
    assert_eq!(get(&order_url, &[AUTH]).await.json()["status"], "pending");
    assert_eq!(
        seats(&get(&subscription_url, &[AUTH]).await.json()),
        seats(&before)
    );

    let settled = loop {
        let order = get(&order_url, &[AUTH]).await.json();
        if order["status"] == "completed" {
            break order;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(etag_version(&settled).1, version + 1, "a new etag");
    assert_eq!(
        settled["lineItems"][0]["subscriptionId"],
        sample.id.as_str()
    );
    let after = get(&subscription_url, &[AUTH]).await.json();
    assert_eq!(
        seats(&after),
        seats(&before) + 2,
        "the subscription grew when provisioned"
    );
    sim.stop();
}
