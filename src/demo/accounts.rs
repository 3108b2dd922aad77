//! The simulator's customers and subscriptions: sample data, JSON shapes, look-ups.
//!
//! SPEC §13 caches two more resources than orders, and the gateway's cross-resource rule (an
//! order write changes the customer's subscriptions) can only be seen end to end if the
//! stand-in has them too. Like [`catalog`](crate::demo::catalog) for orders, this holds data
//! and answer shapes only: Customer resources (company and billing profile) and Subscription
//! resources, each with a versioned `attributes.etag`. What a request does to them is in
//! [`store`](super::store).

use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::demo::catalog::{
    catalog, creation_date, error_json, sample_orders, version_etag, Failure, Order, CUSTOMERS,
};

/// One subscription of a customer: an offer, how many seats, and its current version.
pub(crate) struct Subscription {
    /// The customer (tenant) id the subscription belongs to.
    pub(crate) customer: String,
    /// The subscription id.
    pub(crate) id: String,
    /// The offer subscribed to; an order for it grows this subscription.
    pub(crate) offer_id: String,
    /// `offerName`.
    pub(crate) offer_name: String,
    /// `friendlyName`, changeable by PATCH.
    pub(crate) friendly_name: String,
    /// Seats, changeable by PATCH and by orders.
    pub(crate) quantity: u64,
    /// `active` or `suspended`, changeable by PATCH.
    pub(crate) status: String,
    /// The order that created it.
    pub(crate) order_id: String,
    /// `billingCycle`, from the order that created it.
    pub(crate) billing_cycle: String,
    /// `autoRenewEnabled`, changeable by PATCH.
    pub(crate) auto_renew: bool,
    /// Bumped by every write that changes it; part of the ETag.
    pub(crate) version: u32,
    /// Position among all subscriptions; picks derived fields (dates).
    pub(crate) index: usize,
}

/// One customer: its company profile, its billing profile, and its current version.
pub(crate) struct Customer {
    /// The customer (tenant) id.
    pub(crate) id: String,
    /// `companyProfile.companyName`, changeable by PATCH.
    pub(crate) company_name: String,
    /// `companyProfile.domain`, changeable by PATCH.
    pub(crate) domain: String,
    /// `billingProfile.id`.
    pub(crate) billing_id: String,
    /// The billing profile's editable fields (names, email, culture, `defaultAddress`).
    pub(crate) billing: Map<String, Value>,
    /// Bumped by a PATCH of the customer or a PUT of its billing profile; part of the ETag.
    pub(crate) version: u32,
}

/// A sample customer's ids, so the demo can print paths and tests can pick what to request.
#[derive(Debug, Clone)]
pub struct SampleAccount {
    /// The customer (tenant) id: `/v1/customers/{customer}`.
    pub customer: String,
    /// Its orders' ids.
    pub orders: Vec<String>,
    /// Its subscriptions, one per line item of its orders.
    pub subscriptions: Vec<SampleSubscription>,
}

/// A sample subscription's ids: an order for `offer_id` changes this subscription.
#[derive(Debug, Clone)]
pub struct SampleSubscription {
    /// The subscription id: `/v1/customers/{customer}/subscriptions/{id}`.
    pub id: String,
    /// The offer it is for.
    pub offer_id: String,
    /// The order that created it.
    pub order_id: String,
}

const COMPANIES: [(&str, &str, &str, &str); 3] = [
    ("Contoso Ltd", "contoso", "Adele", "Vance"),
    ("Fabrikam Inc", "fabrikam", "Megan", "Bowen"),
    ("Northwind Traders", "northwind", "Lidia", "Holloway"),
];

/// One subscription per line item of the sample orders, numbered like them.
pub(crate) fn sample_subscriptions(orders: &[Order]) -> Vec<Subscription> {
    let mut out = Vec::new();
    for order in orders {
        for item in &order.line_items {
            out.push(Subscription {
                customer: order.customer.clone(),
                id: item.subscription_id.clone(),
                offer_id: item.offer_id.clone(),
                offer_name: item.friendly_name.clone(),
                friendly_name: item.friendly_name.clone(),
                quantity: item.quantity,
                status: "active".to_owned(),
                order_id: order.id.clone(),
                billing_cycle: order.billing_cycle.clone(),
                auto_renew: true,
                version: 1,
                index: out.len(),
            });
        }
    }
    out
}

/// The sample customers, one per customer of the sample orders.
pub(crate) fn sample_customers() -> Vec<Customer> {
    CUSTOMERS
        .iter()
        .zip(COMPANIES)
        .enumerate()
        .map(|(n, (id, (company, domain, first, last)))| {
            let billing = json!({
                "firstName": first,
                "lastName": last,
                "email": format!("{}@{domain}.example", first.to_ascii_lowercase()),
                "culture": "en-US",
                "language": "en",
                "companyName": company,
                "defaultAddress": {
                    "country": "US",
                    "city": "Redmond",
                    "state": "WA",
                    "addressLine1": format!("{} Main Street", 100 + n),
                    "postalCode": "98052",
                    "firstName": first,
                    "lastName": last,
                    "phoneNumber": format!("425555{:04}", 100 + n)
                }
            });
            Customer {
                id: (*id).to_owned(),
                company_name: company.to_owned(),
                domain: format!("{domain}.onmicrosoft.com"),
                billing_id: format!("b111e000-0000-4000-8000-{:012x}", 0xb1 + n),
                billing: billing.as_object().cloned().unwrap_or_default(),
                version: 1,
            }
        })
        .collect()
}

/// The sample data's ids per customer: orders and subscriptions.
pub(crate) fn sample_accounts() -> Vec<SampleAccount> {
    let subscriptions = sample_subscriptions(&sample_orders());
    catalog()
        .into_iter()
        .map(|(customer, orders)| SampleAccount {
            subscriptions: subscriptions
                .iter()
                .filter(|s| s.customer == customer)
                .map(|s| SampleSubscription {
                    id: s.id.clone(),
                    offer_id: s.offer_id.clone(),
                    order_id: s.order_id.clone(),
                })
                .collect(),
            customer,
            orders,
        })
        .collect()
}

/// Every GET-by-ID path the sample data answers: customers, their orders and subscriptions.
pub(crate) fn sample_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for account in sample_accounts() {
        let customer = format!("/v1/customers/{}", account.customer);
        paths.extend(
            account
                .orders
                .iter()
                .map(|o| format!("{customer}/orders/{o}")),
        );
        paths.extend(
            account
                .subscriptions
                .iter()
                .map(|s| format!("{customer}/subscriptions/{}", s.id)),
        );
        paths.push(customer);
    }
    paths
}

/// The subscription's ETag.
pub(crate) fn subscription_etag(subscription: &Subscription) -> String {
    version_etag(&subscription.id, subscription.version)
}

/// The customer's ETag.
pub(crate) fn customer_etag(customer: &Customer) -> String {
    version_etag(&customer.id, customer.version)
}

/// The billing profile's ETag: its own id, the customer's version.
pub(crate) fn billing_etag(customer: &Customer) -> String {
    version_etag(&customer.billing_id, customer.version)
}

/// The subscription as a Partner Center Subscription resource (links relative).
pub(crate) fn subscription_json(s: &Subscription) -> Value {
    let path = format!("/customers/{}/subscriptions/{}", s.customer, s.id);
    json!({
        "id": s.id,
        "offerId": s.offer_id,
        "offerName": s.offer_name,
        "friendlyName": s.friendly_name,
        "quantity": s.quantity,
        "unitType": "Licenses",
        "hasPurchasableAddons": false,
        "creationDate": creation_date(s.index),
        "effectiveStartDate": creation_date(s.index),
        "status": s.status,
        "autoRenewEnabled": s.auto_renew,
        "isTrial": false,
        "billingType": "license",
        "billingCycle": s.billing_cycle,
        "termDuration": "P1M",
        "contractType": "subscription",
        "orderId": s.order_id,
        "links": {
            "self": {"uri": path, "method": "GET", "headers": []},
            "order": {"uri": format!("/customers/{}/orders/{}", s.customer, s.order_id), "method": "GET", "headers": []},
            "patchOperation": {"uri": path, "method": "PATCH", "headers": []}
        },
        "attributes": {"etag": subscription_etag(s), "objectType": "Subscription"}
    })
}

/// The customer's billing profile as Partner Center answers it.
pub(crate) fn billing_json(customer: &Customer) -> Value {
    let mut profile = customer.billing.clone();
    profile.insert("id".to_owned(), json!(customer.billing_id));
    profile.insert(
        "links".to_owned(),
        json!({"self": {"uri": format!("/customers/{}/profiles/billing", customer.id), "method": "GET", "headers": []}}),
    );
    profile.insert(
        "attributes".to_owned(),
        json!({"etag": billing_etag(customer), "objectType": "CustomerBillingProfile"}),
    );
    Value::Object(profile)
}

/// The customer as a Partner Center Customer resource (links relative).
pub(crate) fn customer_json(customer: &Customer) -> Value {
    json!({
        "id": customer.id,
        "commerceId": customer.id,
        "companyProfile": {
            "tenantId": customer.id,
            "domain": customer.domain,
            "companyName": customer.company_name,
            "attributes": {"objectType": "CustomerCompanyProfile"}
        },
        "billingProfile": billing_json(customer),
        "relationshipToPartner": "reseller",
        "allowDelegatedAccess": true,
        "links": {"self": {"uri": format!("/customers/{}", customer.id), "method": "GET", "headers": []}},
        "attributes": {"etag": customer_etag(customer), "objectType": "Customer"}
    })
}

/// The billing profile with `changes` (a JSON object of billing fields) applied, or a 400
/// naming the first field that is not what Partner Center takes. Unknown fields are ignored.
pub(crate) fn merged_billing(
    current: &Map<String, Value>,
    changes: &Value,
) -> Result<Map<String, Value>, Failure> {
    const TEXT: [&str; 6] = [
        "firstName",
        "lastName",
        "email",
        "culture",
        "language",
        "companyName",
    ];
    let changes = changes
        .as_object()
        .ok_or_else(|| bad_field("billingProfile"))?;
    let mut out = current.clone();
    for field in TEXT {
        if let Some(value) = changes.get(field) {
            out.insert(field.to_owned(), Value::String(text(value, field)?));
        }
    }
    if let Some(address) = changes.get("defaultAddress") {
        let address = address
            .as_object()
            .ok_or_else(|| bad_field("defaultAddress"))?;
        let mut merged = out
            .get("defaultAddress")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (key, value) in address {
            merged.insert(key.clone(), Value::String(text(value, key)?));
        }
        out.insert("defaultAddress".to_owned(), Value::Object(merged));
    }
    Ok(out)
}

/// `value` if it is a string, else a 400 naming `field`.
pub(crate) fn text(value: &Value, field: &str) -> Result<String, Failure> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| bad_field(field))
}

/// A 400 for a field of the wrong type or value.
pub(crate) fn bad_field(field: &str) -> Failure {
    error_json(
        StatusCode::BAD_REQUEST,
        400,
        &format!("The field '{field}' is not valid"),
    )
}

/// The customer `c` (id case-insensitive), or Partner Center's 404.
pub(crate) fn find_customer<'a>(
    customers: &'a [Customer],
    c: &str,
) -> Result<&'a Customer, Failure> {
    customers
        .iter()
        .find(|x| x.id.eq_ignore_ascii_case(c))
        .ok_or_else(customer_not_found)
}

/// [`find_customer`], for changing the customer.
pub(crate) fn find_customer_mut<'a>(
    customers: &'a mut [Customer],
    c: &str,
) -> Result<&'a mut Customer, Failure> {
    customers
        .iter_mut()
        .find(|x| x.id.eq_ignore_ascii_case(c))
        .ok_or_else(customer_not_found)
}

/// Partner Center's 404 for an unknown customer.
pub(crate) fn customer_not_found() -> Failure {
    error_json(StatusCode::NOT_FOUND, 600_001, "Customer not found")
}

/// The subscription `s` of customer `c` (ids case-insensitive), or Partner Center's 404.
pub(crate) fn find_subscription_mut<'a>(
    subscriptions: &'a mut [Subscription],
    c: &str,
    s: &str,
) -> Result<&'a mut Subscription, Failure> {
    subscriptions
        .iter_mut()
        .find(|x| x.customer.eq_ignore_ascii_case(c) && x.id.eq_ignore_ascii_case(s))
        .ok_or_else(|| error_json(StatusCode::NOT_FOUND, 800_002, "Subscription not found"))
}
