//! Partner Center paths.

/// The path of one order.
pub fn order_path(customer: &str, order: &str) -> String {
    format!("/v1/customers/{customer}/orders/{order}")
}
