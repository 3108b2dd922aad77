//! Stage 2 — which requests the gateway answers itself (SPEC §3.2).
//!
//! Only `GET`/`HEAD /v1/customers/{c}/orders/{o}` with no query string is "order-by-ID"; the
//! matcher is deliberately literal (no decoding, no normalisation) so that the gateway never
//! serves from cache a request the upstream might read differently. For the same reason a path
//! the upstream could normalise into another resource (an empty or dot segment, an encoded `/`
//! or `.`) is refused for every method: a write on it would change an order whose cached copy
//! the gateway could not match. `CONNECT` and `TRACE` are refused too; everything else is
//! forwarded as it came.

use http::{Method, Uri};

pub use crate::front::guid::Guid;

/// One order of one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderRef {
    pub customer: Guid,
    pub order: Guid,
}

/// What the gateway does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Order-by-ID: answered through the cache.
    Order(OrderRef),
    /// An order-by-ID path whose customer or order id is not a GUID: 400, nothing upstream.
    InvalidId(IdField),
    /// A path with an empty or dot segment or an encoded `/` or `.`: 400, nothing upstream.
    InvalidPath,
    /// `CONNECT` or `TRACE`: 405, nothing upstream.
    MethodNotAllowed,
    /// Everything else: forwarded unchanged.
    Forward,
}

/// Which path parameter was not a GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdField {
    Customer,
    Order,
}

impl IdField {
    /// The parameter's name in Partner Center's documentation.
    pub fn name(self) -> &'static str {
        match self {
            IdField::Customer => "customer-tenant-id",
            IdField::Order => "id-for-order",
        }
    }
}

impl Route {
    /// The `route` label of logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Order(_) | Route::InvalidId(_) => "order",
            Route::InvalidPath | Route::MethodNotAllowed | Route::Forward => "forward",
        }
    }
}

/// Decides the route of a request from its method and target alone.
pub fn classify(method: &Method, uri: &Uri) -> Route {
    if method == Method::CONNECT || method == Method::TRACE {
        return Route::MethodNotAllowed;
    }
    if !is_plain_path(uri.path()) {
        return Route::InvalidPath;
    }
    if (method != Method::GET && method != Method::HEAD) || uri.query().is_some() {
        return Route::Forward;
    }
    let Some((customer, order, rest)) = split_order_path(uri.path()) else {
        return Route::Forward;
    };
    if rest.is_some() {
        return Route::Forward;
    }
    match (Guid::parse(customer), Guid::parse(order)) {
        (Some(customer), Some(order)) => Route::Order(OrderRef { customer, order }),
        (None, _) => Route::InvalidId(IdField::Customer),
        (_, None) => Route::InvalidId(IdField::Order),
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

/// The order a path names or lies below (`/v1/customers/{c}/orders/{o}[/...]`), when both ids
/// are GUIDs: what a successful unsafe request there invalidates (RFC 9111 §4.4).
pub fn order_at_or_below(path: &str) -> Option<OrderRef> {
    let (customer, order, _) = split_order_path(path)?;
    Some(OrderRef {
        customer: Guid::parse(customer)?,
        order: Guid::parse(order)?,
    })
}

/// Splits `/v1/customers/{c}/orders/{o}` (literals in any case) into its two parameters and
/// what follows `{o}` (`Some("")` for a trailing slash). Empty parameters do not match.
fn split_order_path(path: &str) -> Option<(&str, &str, Option<&str>)> {
    let rest = strip_prefix_ignore_case(path, "/v1/customers/")?;
    let (customer, rest) = rest.split_once('/')?;
    let rest = strip_prefix_ignore_case(rest, "orders/")?;
    let (order, tail) = match rest.split_once('/') {
        Some((order, tail)) => (order, Some(tail)),
        None => (rest, None),
    };
    (!customer.is_empty() && !order.is_empty()).then_some((customer, order, tail))
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

    fn route(method: &str, target: &str) -> Route {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let uri: Uri = target.parse().expect("uri");
        classify(&method, &uri)
    }

    fn order(c: &str, o: &str) -> Route {
        Route::Order(OrderRef {
            customer: Guid::parse(c).expect("c"),
            order: Guid::parse(o).expect("o"),
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
                Route::InvalidId(IdField::Customer),
            ),
            (
                "GET",
                format!("/v1/customers/{C}/orders/42"),
                Route::InvalidId(IdField::Order),
            ),
            (
                "GET",
                format!("/v1/customers/{{{C}}}/orders/{O}"),
                Route::InvalidId(IdField::Customer),
            ),
            (
                "GET",
                format!("/v1/customers/{}/orders/{O}", C.replace('-', "")),
                Route::InvalidId(IdField::Customer),
            ),
            // Percent-encoding is not decoded: an encoded id is not a canonical GUID.
            (
                "GET",
                format!("/v1/customers/{C}/orders/{}", O.replace('-', "%2D")),
                Route::InvalidId(IdField::Order),
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
    }

    #[test]
    fn invalidation_targets() {
        let want = OrderRef {
            customer: Guid::parse(C).expect("c"),
            order: Guid::parse(O).expect("o"),
        };
        assert_eq!(
            order_at_or_below(&format!("/v1/customers/{C}/orders/{O}")),
            Some(want)
        );
        assert_eq!(
            order_at_or_below(&format!("/v1/customers/{C}/orders/{O}/")),
            Some(want)
        );
        assert_eq!(
            order_at_or_below(&format!(
                "/v1/customers/{C}/orders/{}/lineitems/1",
                O.to_uppercase()
            )),
            Some(want)
        );
        assert_eq!(
            order_at_or_below(&format!("/v1/customers/{C}/orders")),
            None
        );
        assert_eq!(
            order_at_or_below(&format!("/v1/customers/{C}/orders/x")),
            None
        );
    }
}
