//! Stage 2 — which requests the gateway answers itself (SPEC §3.2, §13).
//!
//! Only `GET`/`HEAD` with no query string of a cached resource's path (the table in
//! [`crate::resource`]: orders, and subscriptions and customers when `cache.resources` names
//! them) is answered through the cache; the matcher is deliberately literal (no decoding, no
//! normalisation) so that the gateway never serves from cache a request the upstream might
//! read differently. For the same reason a path the upstream could normalise into another
//! resource (an empty or dot segment, an encoded `/` or `.`) is refused for every method: a
//! write on it would change an item whose cached copy the gateway could not match. `CONNECT`
//! and `TRACE` are refused too; everything else is forwarded as it came.

use http::{Method, Uri};

pub use crate::guid::Guid;
use crate::request::target::{self, Target};
pub use crate::resource::{IdField, ItemRef};
use crate::resource::{Resource, Resources};

/// What the gateway does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A cached resource by ID: answered through the cache.
    Cached(ItemRef),
    /// A cached resource's path whose customer or item id is not a GUID: 400, nothing
    /// upstream.
    InvalidId(Resource, IdField),
    /// A path with an empty or dot segment or an encoded `/` or `.`: 400, nothing upstream.
    InvalidPath,
    /// `CONNECT` or `TRACE`: 405, nothing upstream.
    MethodNotAllowed,
    /// Everything else: forwarded unchanged.
    Forward,
    /// `webhooks.path`: an event notification from Partner Center (SPEC §15.2).
    Webhook,
}

/// Slots of the `route` label: one per cached resource, then `forward`, then `webhook`.
pub const ROUTE_SLOTS: usize = Resource::ALL.len() + 2;

/// The `route` label of slot `r` (see [`ROUTE_SLOTS`]).
pub fn slot_label(r: usize) -> &'static str {
    match Resource::ALL.get(r) {
        Some(resource) => resource.label(),
        None if r == Resource::ALL.len() => "forward",
        None => "webhook",
    }
}

impl Route {
    /// The resource the request is for, if it is a cached resource's path.
    pub fn resource(&self) -> Option<Resource> {
        match self {
            Route::Cached(item) => Some(item.resource),
            Route::InvalidId(resource, _) => Some(*resource),
            Route::InvalidPath | Route::MethodNotAllowed | Route::Forward | Route::Webhook => None,
        }
    }

    /// The slot of its `route` label (see [`ROUTE_SLOTS`]).
    pub fn slot(&self) -> usize {
        match (self, self.resource()) {
            (_, Some(resource)) => resource.index(),
            (Route::Webhook, None) => Resource::ALL.len() + 1,
            (_, None) => Resource::ALL.len(),
        }
    }

    /// The `route` label of logs and metrics: the resource's (`order`, …), `forward` or
    /// `webhook`.
    pub fn label(&self) -> &'static str {
        slot_label(self.slot())
    }
}

/// Decides the route of a request from its method and target alone, `enabled` being the
/// resources answered from cache.
pub fn classify(method: &Method, uri: &Uri, enabled: Resources) -> Route {
    if method == Method::CONNECT || method == Method::TRACE {
        return Route::MethodNotAllowed;
    }
    if !is_plain_path(uri.path()) {
        return Route::InvalidPath;
    }
    if (method != Method::GET && method != Method::HEAD) || uri.query().is_some() {
        return Route::Forward;
    }
    match target::target(uri.path(), enabled) {
        Target::Item(item) => Route::Cached(item),
        Target::InvalidId(resource, field) => Route::InvalidId(resource, field),
        Target::Other => Route::Forward,
    }
}

/// Whether a path means the same to every reader: no empty segment (one trailing `/` aside),
/// no `.` or `..` segment, no percent-encoded `/` or `.` (SPEC §3.2). A path that does not
/// start with `/` (`*`, or none for `CONNECT`) has no segments to normalise.
pub fn is_plain_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return true;
    }
    // One pass over the bytes (this runs on every request, hits included).
    let mut start = 1;
    for i in 1..=bytes.len() {
        match bytes.get(i) {
            None | Some(b'/') => {
                let segment = &bytes[start..i];
                let last = i == bytes.len();
                if (segment.is_empty() && !last) || segment == b"." || segment == b".." {
                    return false;
                }
                start = i + 1;
            }
            Some(b'%') => {
                if let [b'2', b'e' | b'E' | b'f' | b'F', ..] = bytes[i + 1..] {
                    return false;
                }
            }
            Some(_) => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f60";
    const O: &str = "d6595733-265f-4918-a62e-026e64bc8384";

    fn route(method: &str, target: &str) -> Route {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let uri: Uri = target.parse().expect("uri");
        classify(&method, &uri, Resource::ALL.into_iter().collect())
    }

    fn order(c: &str, o: &str) -> Route {
        Route::Cached(ItemRef {
            resource: Resource::Orders,
            customer: Guid::parse(c).expect("c"),
            id: Guid::parse(o).expect("o"),
        })
    }

    #[test]
    fn table() {
        let upper_c = C.to_uppercase();
        let cases: Vec<(&str, String, Route)> = vec![
            ("GET", format!("/v1/customers/{C}/orders/{O}"), order(C, O)),
            ("HEAD", format!("/v1/customers/{C}/orders/{O}"), order(C, O)),
            // GUID case does not matter; the key is lower-cased.
            (
                "GET",
                format!("/v1/customers/{upper_c}/orders/{O}"),
                order(C, O),
            ),
            ("GET", format!("/V1/Customers/{C}/Orders/{O}"), order(C, O)),
            // Trailing slash, extra segments, query: not the order resource as spelled.
            (
                "GET",
                format!("/v1/customers/{C}/orders/{O}/"),
                Route::Forward,
            ),
            (
                "GET",
                format!("/v1/customers/{C}/orders/{O}/provisioningstatus"),
                Route::Forward,
            ),
            (
                "GET",
                format!("/v1/customers/{C}/orders/{O}?x=1"),
                Route::Forward,
            ),
            (
                "GET",
                format!("/v1/customers/{C}/orders/{O}?"),
                Route::Forward,
            ),
            ("GET", format!("/v1/customers/{C}/orders"), Route::Forward),
            (
                "GET",
                format!("//v1/customers/{C}/orders/{O}"),
                Route::InvalidPath,
            ),
            (
                "GET",
                format!("/v2/customers/{C}/orders/{O}"),
                Route::Forward,
            ),
            (
                "GET",
                format!("/prefix/v1/customers/{C}/orders/{O}"),
                Route::Forward,
            ),
            // Other methods are forwarded (and may invalidate).
            (
                "PATCH",
                format!("/v1/customers/{C}/orders/{O}"),
                Route::Forward,
            ),
            (
                "POST",
                format!("/v1/customers/nope/orders/{O}"),
                Route::Forward,
            ),
            // Not GUIDs: 400.
            (
                "GET",
                format!("/v1/customers/nope/orders/{O}"),
                Route::InvalidId(Resource::Orders, IdField::Customer),
            ),
            (
                "GET",
                format!("/v1/customers/{C}/orders/42"),
                Route::InvalidId(Resource::Orders, IdField::Item(Resource::Orders)),
            ),
            (
                "GET",
                format!("/v1/customers/{{{C}}}/orders/{O}"),
                Route::InvalidId(Resource::Orders, IdField::Customer),
            ),
            (
                "GET",
                format!("/v1/customers/{}/orders/{O}", C.replace('-', "")),
                Route::InvalidId(Resource::Orders, IdField::Customer),
            ),
            // Percent-encoding is not decoded: an encoded id is not a canonical GUID.
            (
                "GET",
                format!("/v1/customers/{C}/orders/{}", O.replace('-', "%2D")),
                Route::InvalidId(Resource::Orders, IdField::Item(Resource::Orders)),
            ),
            // Encoded dots and slashes, dot segments, empty segments: refused for every
            // method, never resolved (SPEC §3.2).
            (
                "GET",
                format!("/v1/customers/{C}/orders/%2E%2E"),
                Route::InvalidPath,
            ),
            (
                "PATCH",
                format!("/v1/customers/{C}%2forders/{O}"),
                Route::InvalidPath,
            ),
            (
                "GET",
                format!("/v1/customers/../orders/{O}"),
                Route::InvalidPath,
            ),
            (
                "GET",
                format!("/v1/customers/{C}/orders/.."),
                Route::InvalidPath,
            ),
            (
                "PATCH",
                format!("/v1/customers/{C}/orders/x/../{O}"),
                Route::InvalidPath,
            ),
            (
                "PATCH",
                format!("/v1/customers/{C}/./orders/{O}"),
                Route::InvalidPath,
            ),
            (
                "DELETE",
                format!("//v1/customers/{C}/orders/{O}"),
                Route::InvalidPath,
            ),
            (
                "GET",
                format!("/v1/customers//orders/{O}"),
                Route::InvalidPath,
            ),
            ("GET", "/v1/x//".to_owned(), Route::InvalidPath),
            // A single trailing slash and the root are plain; so are dots inside a segment.
            ("GET", "/".to_owned(), Route::Forward),
            ("POST", "/v1/customers/x/carts/".to_owned(), Route::Forward),
            ("GET", "/v1/a.b/..c/...".to_owned(), Route::Forward),
            // CONNECT and TRACE never go upstream.
            ("TRACE", "/v1/customers".to_owned(), Route::MethodNotAllowed),
            ("CONNECT", "/".to_owned(), Route::MethodNotAllowed),
        ];
        for (method, target, want) in cases {
            assert_eq!(route(method, &target), want, "{method} {target}");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(route("GET", "/x").label(), "forward");
        assert_eq!(route("GET", "/v1/customers/x/orders/y").label(), "order");
        let subscription = format!("/v1/customers/{C}/subscriptions/{O}");
        assert_eq!(route("GET", &subscription).label(), "subscription");
        assert_eq!(
            route("GET", &format!("/v1/customers/{C}")).label(),
            "customer"
        );
        assert_eq!(route("PATCH", &subscription).label(), "forward");
    }

    #[test]
    fn only_enabled_resources_are_cached() {
        let uri: Uri = format!("/v1/customers/{C}/subscriptions/{O}")
            .parse()
            .expect("uri");
        let orders: Resources = [Resource::Orders].into_iter().collect();
        assert_eq!(classify(&Method::GET, &uri, orders), Route::Forward);
        let both: Resources = [Resource::Orders, Resource::Subscriptions]
            .into_iter()
            .collect();
        assert!(matches!(
            classify(&Method::GET, &uri, both),
            Route::Cached(ItemRef {
                resource: Resource::Subscriptions,
                ..
            })
        ));
    }
}
