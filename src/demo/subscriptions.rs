//! The walk-through's step for a placed order (SPEC §13, §15.1): a subscription is cached like
//! an order; placing an order through the gateway drops the customer's cached subscriptions;
//! the new order is `pending` until Partner Center has provisioned it, and the gateway keeps a
//! pending body only briefly (`cache.unsettled_ttl`), so a poller sees `completed` within
//! seconds of the change — then the settled order is a plain HIT again, and the subscription
//! the order grew reads its new version.

use std::time::Duration;

use http::Method;

use crate::demo::console::{send, DemoClient, Printer, RequestFailed};
use crate::demo::simulator::Simulator;

/// What the step saw: `X-Cache` of the three subscription reads, the etags before and after
/// the order, and the subscription GETs that reached the simulator; each poll of the placed
/// order (its `status`, `X-Cache`, `ETag`) and the `X-Cache` of a read once it settled.
#[derive(Debug, Default, Clone)]
pub struct SubscriptionReport {
    pub states: Vec<String>,
    pub etag_before: String,
    pub etag_after: String,
    pub order_status: u16,
    pub upstream_gets: u64,
    pub polls: Vec<(String, String, String)>,
    pub settled_state: String,
}

/// Polls at most this many times (one a second) for the placed order to complete.
const POLLS: usize = 15;

/// Reads a subscription twice, places an order for its offer, polls the order until it is
/// `completed`, reads it once more, then reads the subscription again.
pub(crate) async fn subscription_step(
    p: &mut Printer<'_>,
    client: &DemoClient,
    base: &str,
    token: &str,
    simulator: &Simulator,
) -> Result<SubscriptionReport, RequestFailed> {
    let account = Simulator::accounts().remove(0);
    let Some(subscription) = account.subscriptions.first() else {
        return Err(RequestFailed(
            "the simulator has no sample subscription".into(),
        ));
    };
    let customer = &account.customer;
    let url = format!(
        "{base}/v1/customers/{customer}/subscriptions/{}",
        subscription.id
    );
    let orders = format!("{base}/v1/customers/{customer}/orders");
    let auth = ("authorization", token);
    let mut report = SubscriptionReport::default();
    let before = simulator.counters.subscription_gets();

    p.curl(&format!(
        "curl -si {url} -H 'Authorization: {token}'   # twice"
    ));
    for _ in 0..2 {
        let r = send(client, Method::GET, &url, &[auth], "").await?;
        p.field("X-Cache", &r.header("x-cache"));
        report.states.push(r.header("x-cache"));
        report.etag_before = r.header("etag");
    }
    let order = format!(
        r#"{{"lineItems":[{{"offerId":"{}","quantity":1}}]}}"#,
        subscription.offer_id
    );
    p.curl(&format!(
        "curl -si -X POST {orders} -H 'Authorization: {token}' -H 'Content-Type: application/json' -d '{order}'"
    ));
    let json = ("content-type", "application/json");
    let r = send(client, Method::POST, &orders, &[auth, json], order).await?;
    p.field("order placed", &r.status.to_string());
    report.order_status = r.status.as_u16();
    let placed = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|order| order["id"].as_str().map(str::to_owned))
        .ok_or_else(|| RequestFailed("the placed order has no id".into()))?;
    let order_url = format!("{orders}/{placed}");
    p.say("Partner Center provisions it: \"pending\" now, \"completed\" (a new etag) a few seconds later");
    p.curl(&format!(
        "while sleep 1; do curl -si {order_url} -H 'Authorization: {token}' | grep -iE 'x-cache|etag|\"status\"'; done"
    ));
    for number in 1..=POLLS {
        let r = send(client, Method::GET, &order_url, &[auth], "").await?;
        let status = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|order| order["status"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let (state, etag) = (r.header("x-cache"), r.header("etag"));
        p.field(
            &format!("poll {number}"),
            &format!("{status:<9}  X-Cache: {state:<11}  ETag: {etag}"),
        );
        report.polls.push((status.clone(), state, etag));
        if status == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    p.say("a pending order is kept only cache.unsettled_ttl, so the change shows within seconds");
    let r = send(client, Method::GET, &order_url, &[auth], "").await?;
    report.settled_state = r.header("x-cache");
    p.field(
        "settled, read again",
        &format!("X-Cache: {}", report.settled_state),
    );
    p.say("provisioned: Partner Center grew the subscription; the order dropped its cached copy");
    p.curl(&format!("curl -si {url} -H 'Authorization: {token}'"));
    let r = send(client, Method::GET, &url, &[auth], "").await?;
    p.field("X-Cache", &r.header("x-cache"));
    report.etag_after = r.header("etag");
    p.field(
        "ETag",
        &format!("{} (was {})", report.etag_after, report.etag_before),
    );
    report.states.push(r.header("x-cache"));
    report.upstream_gets = simulator.counters.subscription_gets() - before;
    p.field(
        "upstream subscription GETs",
        &report.upstream_gets.to_string(),
    );
    p.say("the order dropped every cached subscription of that customer, on every replica");
    Ok(report)
}
