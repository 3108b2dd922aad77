//! Orders: fixtures, where a gateway serves them, and the warmed-entry scenario.

use http::StatusCode;

use super::gateway::TestGateway;
use super::http::{get, Reply};
use super::order_upstream::OrderUpstream;
use super::paths::order_path;

/// The customer whose orders the tests fetch.
pub const CUSTOMER: &str = "3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f60";

/// A distinct order id per use.
pub fn new_order() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A minimal Order JSON as Partner Center returns it.
pub fn order_json(customer: &str, order: &str, version: u32) -> String {
    serde_json::json!({
        "id": order,
        "referenceCustomerId": customer,
        "billingCycle": "monthly",
        "currencyCode": "USD",
        "lineItems": [{"lineItemNumber": 0, "offerId": "031C9E47-4802-4248-838E-778FB1D2CC05", "quantity": 1}],
        "status": "completed",
        "creationDate": "2015-10-08T10:42:36.54-07:00",
        "attributes": {"etag": etag_for(order, version), "objectType": "Order"}
    })
    .to_string()
}

/// Partner Center's etag shape: base64 of {"id":…,"version":N} (here: a readable stand-in).
pub fn etag_for(order: &str, version: u32) -> String {
    format!("eyJpZCI6{order}-v{version}")
}

impl TestGateway {
    /// The front URL of one of [`CUSTOMER`]'s orders.
    pub fn order_url(&self, order: &str) -> String {
        self.url(&order_path(CUSTOMER, order))
    }
}

/// One order's entry, filled: an [`OrderUpstream`], a gateway in front of it, and a fresh order
/// that has been fetched once.
pub struct Warmed {
    pub up: OrderUpstream,
    pub gw: TestGateway,
    pub order: String,
}

impl Warmed {
    /// Starts an [`OrderUpstream`] and a gateway with `overrides`, then GETs a fresh order with
    /// `Authorization: {auth}`, asserting a 200 `X-Cache: MISS` that reached the upstream once.
    pub async fn start(overrides: &[(&str, &str)], auth: &str) -> Warmed {
        let up = OrderUpstream::start().await;
        let gw = TestGateway::with(&up.base_url, overrides).await;
        let order = new_order();
        let first = get(&gw.order_url(&order), &[("authorization", auth)]).await;
        assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
        assert_eq!(first.header("x-cache"), Some("MISS"));
        assert_eq!(up.hits(), 1);
        Warmed { up, gw, order }
    }
}

/// GETs every URL at once (one task each) with the same headers; replies in URL order.
pub async fn concurrent_gets(urls: Vec<String>, headers: &[(&str, &str)]) -> Vec<Reply> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let headers = headers.clone();
            tokio::spawn(async move {
                let pairs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                get(&url, &pairs).await
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(tasks.len());
    for task in tasks {
        replies.push(task.await.expect("client task"));
    }
    replies
}
