//! Which cached item a path names, and which cached items a successful write on a path
//! changes (SPEC §3.2, §4.4, §13): the path rules of the [resource table](crate::resource),
//! read literally (no decoding; literals in any case, ids as canonical GUIDs).

use crate::guid::Guid;
use crate::resource::{IdField, ItemRef, Purge, Resource, Resources};

/// What a `GET`/`HEAD` path without a query is to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A cached item.
    Item(ItemRef),
    /// A cached resource's path whose ids are not GUIDs: 400, nothing upstream.
    InvalidId(Resource, IdField),
    /// Not a cached resource's path.
    Other,
}

/// What `path` names among `enabled` (literals in any case, ids GUIDs; nothing after the id).
/// A customer segment that is not a GUID on the customer's own path is not the customer
/// resource (Partner Center has `/v1/customers/relationshiprequests`), nor is a segment of
/// letters only in a subscription's place (`/subscriptions/usagerecords`): [`Target::Other`].
pub fn target(path: &str, enabled: Resources) -> Target {
    let Some((customer, rest)) = split_customer(path) else {
        return Target::Other;
    };
    let (resource, id) = match rest {
        None if enabled.contains(Resource::Customers) => match Guid::parse(customer) {
            Some(c) => return Target::Item(item(Resource::Customers, c, c)),
            None => return Target::Other,
        },
        None => return Target::Other,
        Some(rest) => {
            let Some((collection, id)) = rest.split_once('/') else {
                return Target::Other;
            };
            let found = enabled.iter().find(|r| {
                r.collection()
                    .is_some_and(|c| collection.eq_ignore_ascii_case(c))
            });
            match found {
                Some(resource) if !id.is_empty() && !id.contains('/') => {
                    let named = id.bytes().all(|b| b.is_ascii_alphabetic());
                    if named && resource.named_below() {
                        return Target::Other;
                    }
                    (resource, id)
                }
                _ => return Target::Other,
            }
        }
    };
    match (Guid::parse(customer), Guid::parse(id)) {
        (Some(c), Some(id)) => Target::Item(item(resource, c, id)),
        (None, _) => Target::InvalidId(resource, IdField::Customer),
        (_, None) => Target::InvalidId(resource, IdField::Item(resource)),
    }
}

/// What a successful unsafe request on `path` changes among `enabled` resources (RFC 9111
/// §4.4 and SPEC §13's table): its own item, and whole collections other writes change.
pub fn changed_by_write(path: &str, enabled: Resources) -> Vec<Purge> {
    let Some((customer, rest)) = split_customer(path) else {
        return Vec::new();
    };
    let Some(c) = Guid::parse(customer) else {
        return Vec::new();
    };
    let (collection, below) = match rest {
        None => (None, None),
        Some(rest) => match rest.split_once('/') {
            Some((collection, below)) => (Some(collection), Some(below)),
            None => (Some(rest), None),
        },
    };
    let mut purges = Vec::new();
    for resource in enabled.iter() {
        let named = |name: &&str| collection.is_some_and(|c| c.eq_ignore_ascii_case(name));
        if resource.changed_by().iter().any(named) {
            purges.push(Purge::EveryOf(resource, c));
            continue;
        }
        match resource.collection() {
            // The customer itself: its own path, exactly (a trailing slash included).
            None if collection.is_none_or(str::is_empty) => {
                purges.push(Purge::One(item(resource, c, c)));
            }
            Some(own) if named(&own) => {
                let id = below.map(|b| b.split_once('/').map_or(b, |(id, _)| id));
                let at = below.is_some_and(|b| !b.contains('/'));
                if let Some(id) = id.and_then(Guid::parse) {
                    if at || resource.changed_below() {
                        purges.push(Purge::One(item(resource, c, id)));
                    }
                }
            }
            _ => {}
        }
    }
    purges
}

fn item(resource: Resource, customer: Guid, id: Guid) -> ItemRef {
    ItemRef {
        resource,
        customer,
        id,
    }
}

/// Splits `/v1/customers/{c}[/rest]` (literals in any case) into `{c}` and what follows its
/// `/` (`Some("")` for a trailing slash). An empty `{c}` does not match.
fn split_customer(path: &str) -> Option<(&str, Option<&str>)> {
    let rest = strip_prefix_ignore_case(path, "/v1/customers/")?;
    let (customer, rest) = match rest.split_once('/') {
        Some((customer, rest)) => (customer, Some(rest)),
        None => (rest, None),
    };
    (!customer.is_empty()).then_some((customer, rest))
}

/// `text` without `prefix`, compared ASCII case-insensitively.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.as_bytes().get(..prefix.len())?;
    // The prefix is ASCII, so a match ends on a character boundary.
    head.eq_ignore_ascii_case(prefix.as_bytes())
        .then(|| text.get(prefix.len()..))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f60";
    const O: &str = "d6595733-265f-4918-a62e-026e64bc8384";

    fn all() -> Resources {
        Resource::ALL.into_iter().collect()
    }

    fn guid(text: &str) -> Guid {
        Guid::parse(text).expect("guid")
    }

    fn one(resource: Resource, id: &str) -> Purge {
        Purge::One(item(resource, guid(C), guid(id)))
    }

    #[test]
    fn targets() {
        use Resource::*;
        let cases = [
            (
                format!("/v1/customers/{C}/orders/{O}"),
                Target::Item(item(Orders, guid(C), guid(O))),
            ),
            (
                format!("/V1/CUSTOMERS/{C}/Subscriptions/{O}"),
                Target::Item(item(Subscriptions, guid(C), guid(O))),
            ),
            (
                format!("/v1/customers/{C}"),
                Target::Item(item(Customers, guid(C), guid(C))),
            ),
            // Not the resource as spelled: a trailing slash, a sub-resource, a collection.
            (format!("/v1/customers/{C}/"), Target::Other),
            (
                format!("/v1/customers/{C}/subscriptions/{O}/addons"),
                Target::Other,
            ),
            (format!("/v1/customers/{C}/subscriptions"), Target::Other),
            (format!("/v1/customers/{C}/carts/{O}"), Target::Other),
            // Partner Center's own non-GUID paths are not items: under /v1/customers, and
            // collections named in a subscription's place (not in an order's).
            (
                "/v1/customers/relationshiprequests".to_owned(),
                Target::Other,
            ),
            (
                format!("/v1/customers/{C}/subscriptions/usagerecords"),
                Target::Other,
            ),
            (
                format!("/v1/customers/{C}/orders/usagerecords"),
                Target::InvalidId(Orders, IdField::Item(Orders)),
            ),
            (
                format!("/v1/customers/nope/subscriptions/{O}"),
                Target::InvalidId(Subscriptions, IdField::Customer),
            ),
            (
                format!("/v1/customers/{C}/subscriptions/42"),
                Target::InvalidId(Subscriptions, IdField::Item(Subscriptions)),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(target(&path, all()), want, "{path}");
        }
        assert_eq!(IdField::Item(Subscriptions).name(), "id-for-subscription");
        assert_eq!(IdField::Customer.name(), "customer-tenant-id");
        let orders: Resources = [Orders].into_iter().collect();
        assert_eq!(target(&format!("/v1/customers/{C}"), orders), Target::Other);
    }

    #[test]
    fn what_a_write_changes() {
        use Resource::*;
        let c = guid(C);
        let upper = O.to_uppercase();
        let cases: Vec<(String, Vec<Purge>)> = vec![
            // An order and below; any write on a customer's orders changes its subscriptions.
            (
                format!("/v1/customers/{C}/orders/{O}"),
                vec![one(Orders, O), Purge::EveryOf(Subscriptions, c)],
            ),
            (
                format!("/v1/customers/{C}/orders/{upper}/lineitems/1"),
                vec![one(Orders, O), Purge::EveryOf(Subscriptions, c)],
            ),
            (
                format!("/v1/customers/{C}/orders"),
                vec![Purge::EveryOf(Subscriptions, c)],
            ),
            (
                format!("/v1/customers/{C}/orders/x"),
                vec![Purge::EveryOf(Subscriptions, c)],
            ),
            // A subscription and below.
            (
                format!("/v1/customers/{C}/subscriptions/{O}"),
                vec![one(Subscriptions, O)],
            ),
            (
                format!("/v1/customers/{C}/subscriptions/{O}/upgrades"),
                vec![one(Subscriptions, O)],
            ),
            (format!("/v1/customers/{C}/subscriptions"), vec![]),
            // The customer itself, its profiles; not its other collections.
            (format!("/v1/customers/{C}"), vec![one(Customers, C)]),
            (format!("/v1/customers/{C}/"), vec![one(Customers, C)]),
            (
                format!("/v1/customers/{C}/profiles/billing"),
                vec![Purge::EveryOf(Customers, c)],
            ),
            (
                format!("/v1/customers/{C}/carts/{O}/checkout"),
                vec![Purge::EveryOf(Subscriptions, c)],
            ),
            (format!("/v1/customers/{C}/agreements"), vec![]),
            ("/v1/customers/nope/orders".to_owned(), vec![]),
            ("/v1/customers".to_owned(), vec![]),
        ];
        for (path, want) in cases {
            assert_eq!(changed_by_write(&path, all()), want, "{path}");
        }
        // Only enabled resources are dropped.
        let orders: Resources = [Orders].into_iter().collect();
        assert_eq!(
            changed_by_write(&format!("/v1/customers/{C}/orders/{O}"), orders),
            vec![one(Orders, O)]
        );
    }
}
