//! Shared by the comparison bench programs (`benches/compare.sh`); not a program itself.
//! Each program pulls it in with `#[path = "common.rs"] mod common;`.

#![allow(dead_code)]

use std::net::SocketAddr;

use base64::Engine;

/// The customer GUID the script uses for its fixed order paths.
pub const CUSTOMER: &str = "0e5fc923-8e3c-4560-9100-ce7283c3e081";

/// A Partner Center Order resource (~1.2 KB) for `customer`/`order`: `id` is the order,
/// `referenceCustomerId` the customer, `attributes.etag` base64 of `{"id":"<order>","version":1}`.
/// Its length does not depend on the ids as long as they are GUIDs (36 characters).
pub fn order_body(customer: &str, order: &str) -> String {
    let etag = base64::engine::general_purpose::STANDARD
        .encode(format!(r#"{{"id":"{order}","version":1}}"#));
    let path = format!("/v1/customers/{customer}/orders/{order}");
    let sub = "00005ab1-1111-4222-8333-000000000001";
    format!(
        concat!(
            r#"{{"id":"{order}","referenceCustomerId":"{customer}","#,
            r#""billingCycle":"monthly","transactionType":"UserPurchase","currencyCode":"USD","#,
            r#""currencySymbol":"$","creationDate":"2026-02-11T10:42:36.54Z","status":"completed","#,
            r#""lineItems":[{{"lineItemNumber":0,"offerId":"CFQ7TTC0LH18:0001","#,
            r#""subscriptionId":"{sub}","friendlyName":"Microsoft 365 Business Basic","#,
            r#""quantity":25,"termDuration":"P1M","links":{{"subscription":{{"#,
            r#""uri":"/customers/{customer}/subscriptions/{sub}","method":"GET","headers":[]}}}}}}],"#,
            r#""links":{{"self":{{"uri":"{path}","#,
            r#""method":"GET","headers":[]}},"provisioningStatus":{{"#,
            r#""uri":"{path}/provisioningstatus","method":"GET","headers":[]}},"#,
            r#""patchOperation":{{"uri":"{path}","method":"PATCH","headers":[]}}}},"#,
            r#""attributes":{{"etag":"{etag}","objectType":"Order"}}}}"#,
        ),
        order = order,
        customer = customer,
        sub = sub,
        path = path,
        etag = etag,
    )
}

/// `(customer, order)` of `/v1/customers/{c}/orders/{o}` (no query, no extra segment).
pub fn order_route(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v1/customers/")?;
    let (customer, rest) = rest.split_once('/')?;
    let order = rest.strip_prefix("orders/")?;
    if customer.is_empty() || order.is_empty() || order.contains('/') {
        return None;
    }
    Some((customer, order))
}

/// The value after `--name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// `--listen ADDR` (default `127.0.0.1:0`).
pub fn listen_addr() -> SocketAddr {
    let text = arg("--listen", "127.0.0.1:0");
    text.parse()
        .unwrap_or_else(|e| panic!("--listen {text}: {e}"))
}
