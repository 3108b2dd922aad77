//! The resources the gateway can answer from cache (SPEC §13), in one table: each one's path
//! under `/v1/customers/{c}`, the id its body must carry, and which writes drop it — and the
//! words for them (an item, a set of items to purge). The path matching that reads the table
//! is the front's (its `target` module); the key, both tiers, the fleet's purges and the admin
//! take everything resource-specific from here. Adding a fourth resource is one row (and its
//! tests).

use crate::guid::Guid;

/// A GET-by-ID resource, as `cache.resources` names it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Orders,
    Subscriptions,
    Customers,
}

/// One row of the table.
struct Row {
    resource: Resource,
    /// Its name in `cache.resources` and `/cache/stats`.
    name: &'static str,
    /// The `route` label of its requests in logs and metrics.
    label: &'static str,
    /// Its one-letter tag in the fleet's Redis keys and messages.
    tag: &'static str,
    /// Its collection under `/v1/customers/{c}` (`None`: the customer itself).
    collection: Option<&'static str>,
    /// Partner Center's name of its id parameter (in `InvalidIdentifier` answers).
    id_param: &'static str,
    /// Collections under the same customer whose writes (at the collection or below) change
    /// every cached item of this resource of that customer.
    changed_by: &'static [&'static str],
    /// Whether a write below its own path changes it too (an order's sub-resources do; a
    /// customer's many collections do not).
    changed_below: bool,
    /// Whether Partner Center names collections in its id's place too (e.g.
    /// `/subscriptions/usagerecords`): a segment of letters only there is one, not a bad id.
    named_below: bool,
}

const TABLE: [Row; 3] = [
    Row {
        resource: Resource::Orders,
        name: "orders",
        label: "order",
        tag: "o",
        collection: Some("orders"),
        id_param: "id-for-order",
        changed_by: &[],
        changed_below: true,
        named_below: false,
    },
    Row {
        resource: Resource::Subscriptions,
        name: "subscriptions",
        label: "subscription",
        tag: "s",
        collection: Some("subscriptions"),
        id_param: "id-for-subscription",
        // Placing or changing an order creates or changes subscriptions (SPEC §13), and so
        // does checking out a cart (`POST …/carts/{id}/checkout` places orders) — the way most
        // partners buy; a cart write that does not check out only costs a refill.
        changed_by: &["orders", "carts"],
        changed_below: true,
        named_below: true,
    },
    Row {
        resource: Resource::Customers,
        name: "customers",
        label: "customer",
        tag: "c",
        collection: None,
        id_param: "customer-tenant-id",
        changed_by: &["profiles"],
        changed_below: false,
        named_below: false,
    },
];

// Each row sits at its resource's index, so a lookup is an index (checked when compiling).
const _: () = {
    let mut i = 0;
    while i < TABLE.len() {
        assert!(
            TABLE[i].resource as usize == i,
            "TABLE rows out of Resource order"
        );
        i += 1;
    }
};

impl Resource {
    /// Every resource, in table order (the order of metrics' label arrays).
    pub const ALL: [Resource; 3] = [
        Resource::Orders,
        Resource::Subscriptions,
        Resource::Customers,
    ];

    fn row(self) -> &'static Row {
        &TABLE[self.index()]
    }

    /// Position in [`Resource::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its name in configuration and stats (`orders`).
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The `route` label of its requests (`order`).
    pub fn label(self) -> &'static str {
        self.row().label
    }

    /// Its tag in the fleet's Redis keys and messages (`o`).
    pub fn tag(self) -> &'static str {
        self.row().tag
    }

    /// The resource a tag names.
    pub fn from_tag(tag: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.tag() == tag)
    }

    /// Partner Center's name of the id a path gives for it.
    pub fn id_param(self) -> &'static str {
        self.row().id_param
    }

    /// The resource whose collection under a customer is `segment` (any case).
    pub fn by_collection(segment: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| {
            r.collection()
                .is_some_and(|c| segment.eq_ignore_ascii_case(c))
        })
    }

    /// Collections under the same customer whose writes (at the collection or below) change
    /// every cached item of this resource of that customer.
    pub fn changed_by(self) -> &'static [&'static str] {
        self.row().changed_by
    }

    /// Whether a write below its own path changes it too.
    pub fn changed_below(self) -> bool {
        self.row().changed_below
    }

    /// Whether a segment of letters only in its id's place names a collection (forwarded)
    /// rather than a bad id (refused).
    pub fn named_below(self) -> bool {
        self.row().named_below
    }

    /// Its collection segment under the customer, if it is not the customer itself.
    pub fn collection(self) -> Option<&'static str> {
        self.row().collection
    }
}

/// The resources intercepted (`cache.resources`): a set small enough to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources(u8);

impl Resources {
    /// Whether `resource` is answered from cache.
    pub fn contains(self, resource: Resource) -> bool {
        self.0 & (1 << resource.index()) != 0
    }

    /// The resources in table order.
    pub fn iter(self) -> impl Iterator<Item = Resource> {
        Resource::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Whether none is.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Printed (`check-config`) as the list it was written as.
impl serde::Serialize for Resources {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl FromIterator<Resource> for Resources {
    fn from_iter<I: IntoIterator<Item = Resource>>(iter: I) -> Resources {
        Resources(iter.into_iter().fold(0, |set, r| set | (1 << r.index())))
    }
}

/// One cached item: a resource of one customer (for `customers`, `id` is the customer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemRef {
    pub resource: Resource,
    pub customer: Guid,
    pub id: Guid,
}

/// Which path parameter of a cached path is not a GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdField {
    Customer,
    Item(Resource),
}

impl IdField {
    /// The parameter's name in Partner Center's documentation.
    pub fn name(self) -> &'static str {
        match self {
            IdField::Customer => Resource::Customers.id_param(),
            IdField::Item(resource) => resource.id_param(),
        }
    }
}

/// A set of cached items to drop (SPEC §4.4, §13), in every variant (partition, locale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// One item.
    One(ItemRef),
    /// Every item of one resource of one customer (all its subscriptions).
    EveryOf(Resource, Guid),
    /// Everything of one customer.
    Customer(Guid),
    /// Everything.
    All,
}

/// A purge as its path reads (`customers/{c}/orders/{o}`, `customers/{c}/subscriptions`,
/// `customers/{c}`, `all`), for log lines.
impl std::fmt::Display for Purge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Purge::One(item) => match item.resource.collection() {
                Some(collection) => {
                    write!(f, "customers/{}/{collection}/{}", item.customer, item.id)
                }
                None => write!(f, "customers/{}", item.customer),
            },
            Purge::EveryOf(resource, customer) => match resource.collection() {
                Some(collection) => write!(f, "customers/{customer}/{collection}"),
                None => write!(f, "customers/{customer}"),
            },
            Purge::Customer(customer) => write!(f, "customers/{customer}/*"),
            Purge::All => f.write_str("all"),
        }
    }
}
