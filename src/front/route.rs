//! Stage 2 — which requests the gateway answers itself (SPEC §3.2).
//!
//! Only `GET`/`HEAD /v1/customers/{c}/orders/{o}` with no query string is "order-by-ID"; the
//! matcher is deliberately literal (no decoding, no normalisation) so that the gateway never
//! serves from cache a request the upstream might read differently. Everything else is
//! forwarded as it came.

use http::{Method, Uri};

/// A GUID as its 128-bit value: 16 bytes in every key and index entry instead of 36 characters,
/// and case folded by construction.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(u128);

impl Guid {
    /// Parses the canonical 8-4-4-4-12 form in any hex case.
    pub fn parse(s: &str) -> Option<Guid> {
        Guid::parse_bytes(s.as_bytes())
    }

    /// [`Guid::parse`] for bytes (a header value); nothing else is a GUID.
    pub fn parse_bytes(b: &[u8]) -> Option<Guid> {
        if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
            return None;
        }
        // One pass, no per-character branching on the position: the hyphens are skipped by
        // taking the five groups in turn.
        let mut value = 0u128;
        for group in [&b[0..8], &b[9..13], &b[14..18], &b[19..23], &b[24..36]] {
            for &c in group {
                value = (value << 4) | u128::from(hex_digit(c)?);
            }
        }
        Some(Guid(value))
    }
}

/// The value of one hex digit, any case: one table load instead of three range tests.
fn hex_digit(c: u8) -> Option<u8> {
    const INVALID: u8 = 0xff;
    const TABLE: [u8; 256] = {
        let mut table = [INVALID; 256];
        let mut i = 0;
        while i < 10 {
            table[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            table[b'a' as usize + i] = 10 + i as u8;
            table[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        table
    };
    let digit = TABLE[usize::from(c)];
    (digit != INVALID).then_some(digit)
}

impl std::fmt::Display for Guid {
    /// The canonical lower-case hyphenated form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

impl std::fmt::Debug for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

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
            Route::Forward => "forward",
        }
    }
}

/// Decides the route of a request from its method and target alone.
pub fn classify(method: &Method, uri: &Uri) -> Route {
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
                Route::Forward,
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
            (
                "GET",
                format!("/v1/customers/{C}/orders/%2E%2E"),
                Route::InvalidId(IdField::Order),
            ),
            // Dot segments are not resolved.
            (
                "GET",
                format!("/v1/customers/../orders/{O}"),
                Route::InvalidId(IdField::Customer),
            ),
            (
                "GET",
                format!("/v1/customers/{C}/orders/.."),
                Route::InvalidId(IdField::Order),
            ),
            (
                "GET",
                format!("/v1/customers/{C}/orders/{O}/../{O}"),
                Route::Forward,
            ),
            ("GET", format!("/v1/customers//orders/{O}"), Route::Forward),
        ];
        for (method, target, want) in cases {
            assert_eq!(route(method, &target), want, "{method} {target}");
        }
    }

    #[test]
    fn guids_print_canonically() {
        let g = Guid::parse(&C.to_uppercase()).expect("guid");
        assert_eq!(g.to_string(), C);
        assert_eq!(Guid::parse(C), Some(g));
        assert_eq!(
            Guid::parse("00000000-0000-0000-0000-000000000001")
                .map(|g| g.to_string())
                .as_deref(),
            Some("00000000-0000-0000-0000-000000000001")
        );
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
