//! The simulator's sample orders and the JSON shapes Partner Center answers with.
//!
//! Kept apart from the server so the data (three customers, four orders each, with versioned
//! ETags) and the exact answer shapes (Order resources, collections, Partner Center's error
//! body) can be read and changed without wading through connection handling. Customers and
//! subscriptions live in [`accounts`](super::accounts); nothing here knows about HTTP
//! connections or the simulator's state.

use base64::Engine;
use http::StatusCode;
use serde_json::{json, Value};

/// One line item of an order: what was bought, and into which subscription.
#[derive(Clone)]
pub(crate) struct LineItem {
    /// The offer bought.
    pub(crate) offer_id: String,
    /// The subscription the purchase went into (created or grown by it).
    pub(crate) subscription_id: String,
    /// The line item's friendly name, changeable by PATCH.
    pub(crate) friendly_name: String,
    /// The quantity bought, changeable by PATCH.
    pub(crate) quantity: u64,
}

/// One order and its current version.
pub(crate) struct Order {
    /// The customer (tenant) id the order belongs to.
    pub(crate) customer: String,
    /// The order id.
    pub(crate) id: String,
    /// Bumped by every PATCH; part of the ETag.
    pub(crate) version: u32,
    /// `status`, changeable by PATCH.
    pub(crate) status: String,
    /// `billingCycle`, set when the order is made.
    pub(crate) billing_cycle: String,
    /// The line items, in `lineItemNumber` order.
    pub(crate) line_items: Vec<LineItem>,
    /// Position among all orders; picks derived fields (dates, alternate id).
    pub(crate) index: usize,
    /// While `pending`: when provisioning finishes (SPEC §15.4).
    pub(crate) settles_at: Option<std::time::Instant>,
}

/// A failed answer: the status and Partner Center's JSON error body.
pub(crate) type Failure = (StatusCode, Value);

/// The sample customers' tenant ids.
pub(crate) const CUSTOMERS: [&str; 3] = [
    "4a2f6c1e-8b3d-4e5f-9a7b-1c2d3e4f5a60",
    "7b1e2d3c-4f5a-4b6c-8d7e-9f0a1b2c3d71",
    "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e82",
];

/// The sample offers: (offer id, offer name).
pub(crate) const OFFERS: [(&str, &str); 4] = [
    (
        "CFQ7TTC0LH18:0001:CFQ7TTC0K59S",
        "Microsoft 365 Business Basic",
    ),
    ("CFQ7TTC0LCHC:0002:CFQ7TTC0K5DM", "Microsoft 365 E3"),
    (
        "CFQ7TTC0LFLX:0001:CFQ7TTC0KXG6",
        "Microsoft Defender for Endpoint P1",
    ),
    ("DZH318Z0BQ3Q:0007", "Azure plan"),
];

/// The id of the `index`th order ever made (sample orders first).
pub(crate) fn order_id(index: usize) -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        0x0d0e_0000 + index,
        0xa11ce + index
    )
}

/// The id of the `index`th subscription ever made (the sample orders' ones first).
pub(crate) fn subscription_id(index: usize) -> String {
    format!("{:08x}-1111-4222-8333-{:012x}", 0x5ab0 + index, index)
}

/// Deterministic sample data: three customers with four orders each, one line item per order,
/// each into its own subscription (numbered like the order).
pub(crate) fn sample_orders() -> Vec<Order> {
    let mut orders = Vec::new();
    for (c, customer) in CUSTOMERS.iter().enumerate() {
        for (n, (offer, name)) in OFFERS.iter().enumerate() {
            let index = c * 4 + n;
            orders.push(Order {
                customer: (*customer).to_owned(),
                id: order_id(index),
                version: 1,
                status: "completed".to_owned(),
                billing_cycle: if index.is_multiple_of(3) {
                    "annual"
                } else {
                    "monthly"
                }
                .to_owned(),
                line_items: vec![LineItem {
                    offer_id: (*offer).to_owned(),
                    subscription_id: subscription_id(index),
                    friendly_name: (*name).to_owned(),
                    quantity: 5 + index as u64,
                }],
                index,
                settles_at: None,
            });
        }
    }
    orders
}

/// The sample data's ids: (customer id, order ids), customers in order.
pub(crate) fn catalog() -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for order in sample_orders() {
        match out.iter_mut().find(|(c, _)| *c == order.customer) {
            Some((_, ids)) => ids.push(order.id),
            None => out.push((order.customer, vec![order.id])),
        }
    }
    out
}

/// A version token as Partner Center makes them: base64 of `{"id":…,"version":N}`.
pub(crate) fn version_etag(id: &str, version: u32) -> String {
    let text = format!(r#"{{"id":"{id}","version":{version}}}"#);
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The order's ETag.
pub(crate) fn etag(order: &Order) -> String {
    version_etag(&order.id, order.version)
}

/// The order as a Partner Center Order resource (links relative, as Partner Center's are).
pub(crate) fn order_json(order: &Order) -> Value {
    let path = format!("/customers/{}/orders/{}", order.customer, order.id);
    let items: Vec<Value> = order
        .line_items
        .iter()
        .enumerate()
        .map(|(number, item)| {
            let mut line = json!({
                "lineItemNumber": number,
                "offerId": item.offer_id,
                "friendlyName": item.friendly_name,
                "quantity": item.quantity,
                "termDuration": "P1M",
            });
            // A pending order's items have no subscription yet: it is made when provisioning
            // finishes.
            if !item.subscription_id.is_empty() {
                line["subscriptionId"] = json!(item.subscription_id);
                line["links"] = json!({
                    "subscription": {
                        "uri": format!("/customers/{}/subscriptions/{}", order.customer, item.subscription_id),
                        "method": "GET",
                        "headers": []
                    }
                });
            }
            line
        })
        .collect();
    json!({
        "id": order.id,
        "alternateId": format!("{:012x}", 0xa17e + order.index),
        "referenceCustomerId": order.customer,
        "billingCycle": order.billing_cycle,
        "transactionType": "UserPurchase",
        "currencyCode": "USD",
        "currencySymbol": "$",
        "creationDate": creation_date(order.index),
        "status": order.status,
        "lineItems": items,
        "links": {
            "self": {"uri": path, "method": "GET", "headers": []},
            "provisioningStatus": {"uri": format!("{path}/provisioningstatus"), "method": "GET", "headers": []},
            "patchOperation": {"uri": path, "method": "PATCH", "headers": []}
        },
        "attributes": {"etag": etag(order), "objectType": "Order"}
    })
}

/// The order's (and its subscriptions') `creationDate`, derived from its position.
pub(crate) fn creation_date(index: usize) -> String {
    format!("2026-0{}-1{}T10:42:36.54Z", 1 + index % 9, index % 10)
}

/// A collection in Partner Center's shape: `what` (e.g. `orders`) of customer `c`.
pub(crate) fn collection_json(c: &str, what: &str, items: Vec<Value>) -> Value {
    json!({
        "totalCount": items.len(),
        "items": items,
        "links": {"self": {"uri": format!("/customers/{c}/{what}"), "method": "GET", "headers": []}},
        "attributes": {"objectType": "Collection"}
    })
}

/// An error answer in Partner Center's error shape.
pub(crate) fn error_json(status: StatusCode, code: u32, description: &str) -> Failure {
    (
        status,
        json!({"code": code, "description": description, "data": [], "source": "PartnerFD"}),
    )
}

/// A 400 for a request body that parses but does not say what is needed.
pub(crate) fn bad_request(description: &str) -> Failure {
    error_json(StatusCode::BAD_REQUEST, 400, description)
}

/// The 429 body Partner Center sends when the budget is spent.
pub(crate) fn throttled_json(retry: u64) -> Failure {
    (
        StatusCode::TOO_MANY_REQUESTS,
        json!({"statusCode": 429, "message": format!("Rate limit is exceeded. Try again in {retry} seconds.")}),
    )
}

/// The order `o` of customer `c` (ids case-insensitive), or Partner Center's 404.
pub(crate) fn find<'a>(orders: &'a [Order], c: &str, o: &str) -> Result<&'a Order, Failure> {
    orders
        .iter()
        .find(|x| x.customer.eq_ignore_ascii_case(c) && x.id.eq_ignore_ascii_case(o))
        .ok_or_else(|| error_json(StatusCode::NOT_FOUND, 600_010, "Order not found"))
}

/// [`find`], for changing the order.
pub(crate) fn find_mut<'a>(
    orders: &'a mut [Order],
    c: &str,
    o: &str,
) -> Result<&'a mut Order, Failure> {
    orders
        .iter_mut()
        .find(|x| x.customer.eq_ignore_ascii_case(c) && x.id.eq_ignore_ascii_case(o))
        .ok_or_else(|| error_json(StatusCode::NOT_FOUND, 600_010, "Order not found"))
}
