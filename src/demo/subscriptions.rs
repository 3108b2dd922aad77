//! The walk-through's step for the other resources (SPEC §13): a subscription is cached like
//! an order, and placing an order through the gateway — which creates or changes the
//! customer's subscriptions in Partner Center — drops the customer's cached subscriptions.

use http::Method;

use crate::demo::console::{send, DemoClient, Printer, RequestFailed};
use crate::demo::simulator::Simulator;

/// What the step saw: `X-Cache` of the three subscription reads, the etags before and after
/// the order, and the subscription GETs that reached the simulator.
#[derive(Debug, Default, Clone)]
pub struct SubscriptionReport {
    pub states: Vec<String>,
    pub etag_before: String,
    pub etag_after: String,
    pub order_status: u16,
    pub upstream_gets: u64,
}

/// Reads a subscription twice, places an order for its offer, reads it again.
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
    p.say("one more seat of the same offer: Partner Center changes the subscription");
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
