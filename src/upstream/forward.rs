//! Forwarding (SPEC §5): what changes on a message crossing the gateway, and nothing more.
//!
//! Hop-by-hop headers belong to one connection and are dropped both ways (RFC 9110 §7.6.1),
//! `Host` becomes the upstream's, `Via` records the hop (RFC 9110 §7.6.3), the correlation IDs
//! are set. Everything else — status, end-to-end headers, `Authorization`, the bodies as
//! streams — passes through untouched.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, Request, Response, Version};

use crate::body::Body;
use crate::error::GatewayError;
use crate::request::correlation::Correlation;
use crate::upstream::client::Upstream;

/// This hop's `Via` entry.
pub const VIA: &str = "1.1 partner-gateway";

/// Headers that only mean something on one connection.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The header names every `Connection` line lists, read as bytes (a line with obs-text still
/// names its other tokens): the one reading of `Connection` that stripping and the cache key
/// share, so the key can never disagree with what goes upstream.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter_map(|token| HeaderName::from_bytes(token).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether hop-by-hop stripping removes `name` from these headers (it is hop-by-hop, or a
/// `Connection` header names it): such a header never reaches the upstream.
pub fn is_stripped(headers: &HeaderMap, name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
        || connection_tokens(headers)
            .any(|token| token.eq_ignore_ascii_case(name.as_str().as_bytes()))
}

/// Adds this hop to `Via`, after any hops already listed, as one header line.
pub fn add_via(headers: &mut HeaderMap) {
    let value = match headers.get(header::VIA) {
        None => HeaderValue::from_static(VIA),
        Some(_) => {
            let mut joined = Vec::new();
            for v in headers.get_all(header::VIA) {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(VIA.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or(HeaderValue::from_static(VIA))
        }
    };
    headers.insert(header::VIA, value);
}

/// Turns a client's request head into the upstream request, body streamed as given.
pub fn upstream_request(
    parts: &request::Parts,
    body: Body,
    correlation: &Correlation,
    upstream: &Upstream,
) -> Result<Request<Body>, GatewayError> {
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = upstream.uri_for(parts.uri.path_and_query())?;
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    *headers = parts.headers.clone();
    strip_hop_by_hop(headers);
    // The pool writes the upstream's Host (or :authority) from the URI.
    headers.remove(header::HOST);
    // This server already answered any 100-continue; the upstream must not wait for one.
    headers.remove(header::EXPECT);
    add_via(headers);
    correlation.apply(headers);
    Ok(request)
}

/// What every upstream answer passed to a client gets: hop-by-hop headers out, this hop in
/// `Via`, this request's IDs.
pub fn finish_head(headers: &mut HeaderMap, correlation: &Correlation) {
    strip_hop_by_hop(headers);
    add_via(headers);
    correlation.apply(headers);
}

/// Turns the upstream's response into the client's, body streamed through.
pub fn client_response(response: Response<Body>, correlation: &Correlation) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    finish_head(&mut parts.headers, correlation);
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static("x-other"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(header::TRAILER, HeaderValue::from_static("x"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["authorization", "content-type"]);
    }

    #[test]
    fn stripped_headers_are_known_before_stripping() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Locale"),
        );
        h.insert("x-locale", HeaderValue::from_static("fr-FR"));
        let locale = HeaderName::from_static("x-locale");
        assert!(is_stripped(&h, &locale));
        assert!(is_stripped(&h, &header::TE));
        assert!(!is_stripped(&h, &header::AUTHORIZATION));
        assert!(!is_stripped(&HeaderMap::new(), &locale));
        strip_hop_by_hop(&mut h);
        assert!(h.get(&locale).is_none());
    }

    #[test]
    fn via_appends_one_line() {
        let mut h = HeaderMap::new();
        add_via(&mut h);
        assert_eq!(h[header::VIA], "1.1 partner-gateway");
        let mut h = HeaderMap::new();
        h.append(header::VIA, HeaderValue::from_static("1.1 edge"));
        h.append(header::VIA, HeaderValue::from_static("2 lb"));
        add_via(&mut h);
        assert_eq!(h.get_all(header::VIA).iter().count(), 1);
        assert_eq!(h[header::VIA], "1.1 edge, 2 lb, 1.1 partner-gateway");
    }
}
