//! Content codings (SPEC §4.2): which ones a client's `Accept-Encoding` accepts, and which one
//! an answer's `Content-Encoding` is in.
//!
//! Fills always ask the upstream for `identity` and answer every client from an identity-coded
//! entry; a fill's answer that is passed through uncached in another coding goes only to
//! callers whose own request accepts that coding (RFC 9110 §12.5.3), the others ask for their
//! own copy. This module is the one reader of both headers for that rule.

use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING};
use http::HeaderMap;

/// The coding an answer's body is in: `None` for identity (no `Content-Encoding`, or only
/// `identity`), else the header's value, lower-cased (a list such as `gzip, br` stays whole:
/// a client must accept every coding in it).
pub fn of_answer(headers: &HeaderMap) -> Option<String> {
    let mut codings: Vec<String> = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
        codings.extend(
            text.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty() && *c != "identity")
                .map(str::to_owned),
        );
    }
    (!codings.is_empty()).then(|| codings.join(", "))
}

/// Whether a request with these headers accepts a body in `coding` (as [`of_answer`] names it;
/// `None` is identity). No `Accept-Encoding` accepts any coding; identity is accepted unless
/// it, or `*` without it, is given `q=0`.
pub fn accepts(request: &HeaderMap, coding: Option<&str>) -> bool {
    let mut fields = request.get_all(ACCEPT_ENCODING).iter().peekable();
    if fields.peek().is_none() {
        return true;
    }
    let mut ranges: Vec<(String, bool)> = Vec::new();
    for value in fields {
        let text = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let mut params = item.split(';').map(str::trim);
            let name = params.next().unwrap_or_default().to_owned();
            let refused = params.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            ranges.push((name, !refused));
        }
    }
    let allowed = |name: &str| -> Option<bool> {
        let exact = ranges.iter().find(|(n, _)| n == name).map(|(_, ok)| *ok);
        exact.or_else(|| ranges.iter().find(|(n, _)| n == "*").map(|(_, ok)| *ok))
    };
    match coding {
        None => allowed("identity").unwrap_or(true),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .all(|c| allowed(c).unwrap_or(false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: http::header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name.clone(), HeaderValue::from_str(v).expect("value"));
        }
        map
    }

    #[test]
    fn an_answer_names_its_coding_and_identity_is_none() {
        assert_eq!(of_answer(&HeaderMap::new()), None);
        assert_eq!(of_answer(&headers(CONTENT_ENCODING, &["identity"])), None);
        assert_eq!(
            of_answer(&headers(CONTENT_ENCODING, &["GZip"])),
            Some("gzip".into())
        );
        assert_eq!(
            of_answer(&headers(CONTENT_ENCODING, &["gzip", "br"])),
            Some("gzip, br".into())
        );
    }

    #[test]
    fn what_each_accept_encoding_accepts() {
        let cases: &[(&[&str], Option<&str>, bool)] = &[
            (&[], None, true),
            (&[], Some("gzip"), true),
            (&["gzip, deflate"], Some("gzip"), true),
            (&["gzip, deflate"], None, true),
            (&["gzip, deflate"], Some("br"), false),
            (&["identity"], Some("gzip"), false),
            (&["identity"], None, true),
            (&["*;q=0"], None, false),
            (&["*;q=0"], Some("gzip"), false),
            (&["*;q=0, identity"], None, true),
            (&["*"], Some("br"), true),
            (&["gzip;q=0, *"], Some("gzip"), false),
            (&["GZIP ; q=0.5"], Some("gzip"), true),
            (&["identity;q=0, gzip"], None, false),
            (&["gzip", "br"], Some("gzip, br"), true),
            (&["gzip"], Some("gzip, br"), false),
            (&["br;q=0.000"], Some("br"), false),
        ];
        for (values, coding, expected) in cases {
            let request = headers(ACCEPT_ENCODING, values);
            assert_eq!(
                accepts(&request, *coding),
                *expected,
                "{values:?} {coding:?}"
            );
        }
    }
}
