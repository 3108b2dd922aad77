//! Reading Partner Center's audit records (SPEC §15.3): what each record names — turned into
//! purges by the write-effect rule of `request::target`, as a write on its path would be — and
//! where the next page of a collection is.

use std::time::SystemTime;

use serde_json::Value;

use crate::guid::Guid;
use crate::request::target;
use crate::resource::{Purge, Resource, Resources};

/// What a record drops (SPEC §15.3), among the cached resources.
pub fn effects(record: &Value, resources: Resources) -> Vec<Purge> {
    let field = |name: &str| {
        record.as_object().and_then(|fields| {
            fields
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .and_then(|(_, value)| value.as_str())
        })
    };
    let Some(customer) = field("customerId").and_then(Guid::parse) else {
        return Vec::new();
    };
    let resource = match field("resourceType")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("order") => Resource::Orders,
        Some("subscription") => Resource::Subscriptions,
        Some("customer") => Resource::Customers,
        _ => return Vec::new(),
    };
    let named = ["resourceNewValue", "resourceOldValue"]
        .iter()
        .find_map(|name| {
            let value: Value = serde_json::from_str(field(name)?).ok()?;
            Guid::parse(value["id"].as_str()?)
        });
    // A record names what a write on that path would have changed: the one write-effect rule
    // of SPEC §4.4 and §13 (an order also drops the customer's subscriptions).
    let Some(collection) = resource.collection() else {
        return target::changed_by_write(&format!("/v1/customers/{customer}"), resources);
    };
    match named {
        Some(id) => target::changed_by_write(
            &format!("/v1/customers/{customer}/{collection}/{id}"),
            resources,
        ),
        // No item named: every entry of that resource of the customer, and what a write on its
        // collection changes.
        None => {
            let every = Purge::EveryOf(resource, customer);
            let mut purges: Vec<Purge> = resources
                .contains(resource)
                .then_some(every)
                .into_iter()
                .collect();
            purges.extend(target::changed_by_write(
                &format!("/v1/customers/{customer}/{collection}"),
                resources,
            ));
            purges
        }
    }
}

/// The next page's path (a `/v1/` path as is, any other relative to `/v1`) and headers.
pub fn next_page(page: &Value) -> Option<(String, Vec<(String, String)>)> {
    let next = &page["links"]["next"];
    let uri = next["uri"].as_str()?;
    let path = if uri.starts_with("/v1/") {
        uri.to_owned()
    } else {
        format!("/v1/{}", uri.trim_start_matches('/'))
    };
    let headers = next["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| {
            Some((
                h["key"].as_str()?.to_owned(),
                h["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    Some((path, headers))
}

/// An RFC 3339 time (`operationDate`), `Z` or not.
pub fn rfc3339(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::resource::ItemRef;

    const C: &str = "4a2f6c1e-8b3d-4e5f-9a7b-1c2d3e4f5a60";
    const O: &str = "0d0e0000-0000-4000-8000-0000000a11ce";

    fn all() -> Resources {
        Resource::ALL.into_iter().collect()
    }

    #[test]
    fn each_record_drops_what_it_names() {
        let order = serde_json::json!({
            "id": "r1", "customerId": C, "resourceType": "Order",
            "resourceNewValue": format!(r#"{{"id":"{O}","status":"completed"}}"#),
        });
        let (c, o) = (Guid::parse(C).expect("c"), Guid::parse(O).expect("o"));
        let item = |resource, id| {
            Purge::One(ItemRef {
                resource,
                customer: c,
                id,
            })
        };
        assert_eq!(
            effects(&order, all()),
            [
                item(Resource::Orders, o),
                Purge::EveryOf(Resource::Subscriptions, c)
            ]
        );
        let unnamed = serde_json::json!({"customerid": C, "RESOURCETYPE": "subscription"});
        assert_eq!(
            effects(&unnamed, all()),
            [Purge::EveryOf(Resource::Subscriptions, c)]
        );
        let customer = serde_json::json!({"customerId": C, "resourceType": "customer"});
        assert_eq!(effects(&customer, all()), [item(Resource::Customers, c)]);
        let old = serde_json::json!({
            "customerId": C, "resourceType": "subscription",
            "resourceNewValue": "not json", "resourceOldValue": format!(r#"{{"id":"{O}"}}"#),
        });
        assert_eq!(effects(&old, all()), [item(Resource::Subscriptions, o)]);
        for nothing in [
            serde_json::json!({"customerId": C, "resourceType": "invoice"}),
            serde_json::json!({"resourceType": "order"}),
            serde_json::json!({"customerId": "x", "resourceType": "order"}),
        ] {
            assert!(effects(&nothing, all()).is_empty(), "{nothing}");
        }
        // Only the cached resources: orders alone drop no subscriptions.
        let orders_only: Resources = [Resource::Orders].into_iter().collect();
        assert_eq!(effects(&order, orders_only), [item(Resource::Orders, o)]);
    }

    #[test]
    fn next_links_are_paths_under_v1_with_their_headers() {
        let page = serde_json::json!({"links": {"next": {"uri": "auditrecords?seek=2",
            "headers": [{"key": "MS-ContinuationToken", "value": "abc"}]}}});
        assert_eq!(
            next_page(&page),
            Some((
                "/v1/auditrecords?seek=2".to_owned(),
                vec![("MS-ContinuationToken".to_owned(), "abc".to_owned())]
            ))
        );
        let page = serde_json::json!({"links": {"next": {"uri": "/v1/auditrecords?x=1"}}});
        assert_eq!(
            next_page(&page).map(|n| n.0),
            Some("/v1/auditrecords?x=1".to_owned())
        );
        assert_eq!(next_page(&serde_json::json!({"items": []})), None);
    }
}
