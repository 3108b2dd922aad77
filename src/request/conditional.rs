//! The RFC logic of order-by-ID answers, as pure functions (RFC 9110 §8.8.3, §13.1.2;
//! RFC 9111 §5.2.1): formatting the `ETag`, matching `If-None-Match`, reading the request's
//! `Cache-Control`. Table-tested beside the code; nothing here touches the network or a clock.

use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, IF_NONE_MATCH, PRAGMA};

/// The `ETag` header for an Order's `attributes.etag` (SPEC §4.2): quoted and strong, unless the
/// value already is a quoted or `W/` entity-tag. `None` when it cannot be a header value.
pub fn format_etag(attribute: &str) -> Option<HeaderValue> {
    if attribute.is_empty() {
        return None;
    }
    // A quoted opaque tag holds no further quote (RFC 9110 §8.8.3: etagc excludes DQUOTE).
    let is_entity_tag = |s: &str| {
        s.len() >= 2 && s.starts_with('"') && s.ends_with('"') && !s[1..s.len() - 1].contains('"')
    };
    let text =
        if is_entity_tag(attribute) || attribute.strip_prefix("W/").is_some_and(is_entity_tag) {
            attribute.to_owned()
        } else if attribute.contains('"') {
            return None;
        } else {
            format!("\"{attribute}\"")
        };
    // Only visible ASCII fits an entity-tag (RFC 9110 §8.8.3: etagc).
    if !text.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return None;
    }
    HeaderValue::from_str(&text).ok()
}

/// The opaque tag without a weakness prefix: what the weak comparison compares.
fn opaque(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

/// Whether `If-None-Match` (every header line, each a list or `*`) matches `etag` under the
/// weak comparison. No header: no match.
pub fn if_none_match_matches(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = opaque(etag.as_bytes());
    headers.get_all(IF_NONE_MATCH).iter().any(|line| {
        split_list(line.as_bytes()).any(|candidate| {
            if candidate == b"*" {
                return true;
            }
            let theirs = opaque(candidate);
            // Be lenient with clients that send the value without quotes.
            theirs == ours
                || (!theirs.starts_with(b"\"")
                    && ours.len() == theirs.len() + 2
                    && &ours[1..ours.len() - 1] == theirs)
        })
    })
}

/// Comma-separated list members, trimmed, without empties. Entity-tags cannot contain commas
/// inside their quotes in practice for this API (base64), and a quoted comma is split only
/// outside quotes here anyway.
fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in value.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                items.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items.into_iter().map(trim).filter(|s| !s.is_empty())
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// What the client's `Cache-Control` (or HTTP/1.0 `Pragma: no-cache`) asks of the gateway.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-store`: bypass the cache both ways.
    pub no_store: bool,
    /// `no-cache`: revalidate with the upstream before answering.
    pub no_cache: bool,
    /// `max-age=N`: an entry older than N seconds must be revalidated first.
    pub max_age: Option<u64>,
    /// `only-if-cached`: never contact the upstream; 504 when nothing usable is cached.
    pub only_if_cached: bool,
}

impl RequestDirectives {
    /// Reads `Cache-Control` (all lines); `Pragma: no-cache` counts only when there is none.
    pub fn parse(headers: &HeaderMap) -> RequestDirectives {
        let mut d = RequestDirectives::default();
        let mut any = false;
        for line in headers.get_all(CACHE_CONTROL) {
            any = true;
            for item in split_list(line.as_bytes()) {
                let (name, value) = match item.iter().position(|&b| b == b'=') {
                    Some(eq) => (trim(&item[..eq]), Some(trim(&item[eq + 1..]))),
                    None => (item, None),
                };
                if name.eq_ignore_ascii_case(b"no-store") {
                    d.no_store = true;
                } else if name.eq_ignore_ascii_case(b"no-cache") {
                    d.no_cache = true;
                } else if name.eq_ignore_ascii_case(b"only-if-cached") {
                    d.only_if_cached = true;
                } else if name.eq_ignore_ascii_case(b"max-age") {
                    let digits = value.map(|v| {
                        v.strip_prefix(b"\"")
                            .and_then(|v| v.strip_suffix(b"\""))
                            .unwrap_or(v)
                    });
                    // An unparsable max-age is treated as 0, the safe reading (RFC 9111 §1.2.2).
                    let secs = digits
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                    d.max_age = Some(d.max_age.map_or(secs, |old| old.min(secs)));
                }
            }
        }
        if !any {
            d.no_cache = headers
                .get_all(PRAGMA)
                .iter()
                .any(|v| split_list(v.as_bytes()).any(|i| i.eq_ignore_ascii_case(b"no-cache")));
        }
        d
    }

    /// Whether an entry of this age must be revalidated before it may be served
    /// (`max-age=0` therefore always revalidates: every stored entry is older than 0 s).
    pub fn requires_revalidation(&self, age: std::time::Duration) -> bool {
        self.no_cache
            || self
                .max_age
                .is_some_and(|max| age > std::time::Duration::from_secs(max))
    }
}

/// Whether an upstream response forbids storing (`Cache-Control: no-store`).
pub fn response_forbids_store(headers: &HeaderMap) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|line| {
        split_list(line.as_bytes()).any(|item| {
            let name = item.split(|&b| b == b'=').next().map(trim).unwrap_or(item);
            name.eq_ignore_ascii_case(b"no-store")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn etag_formatting() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "eyJpZCI6IjEiLCJ2ZXJzaW9uIjoxfQ==",
                Some("\"eyJpZCI6IjEiLCJ2ZXJzaW9uIjoxfQ==\""),
            ),
            ("\"already\"", Some("\"already\"")),
            ("W/\"weak\"", Some("W/\"weak\"")),
            ("W/unquoted", Some("\"W/unquoted\"")),
            ("", None),
            ("has\"quote", None),
            ("\"", None),
            ("\"\"\"", None),
            ("\"a\",\"b\"", None),
            ("W/\"a\"b\"", None),
            ("with space", None),
            ("ünïcode", None),
        ];
        for (input, want) in cases {
            let got = format_etag(input);
            assert_eq!(
                got.as_ref().and_then(|v| v.to_str().ok()),
                *want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn if_none_match_table() {
        let etag = HeaderValue::from_static("\"v1\"");
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[], false),
            (&[("if-none-match", "\"v1\"")], true),
            (&[("if-none-match", "W/\"v1\"")], true),
            (&[("if-none-match", "\"v2\"")], false),
            (&[("if-none-match", "\"v0\", \"v1\"")], true),
            (&[("if-none-match", "\"v0\",\"v2\"")], false),
            (&[("if-none-match", "*")], true),
            (
                &[("if-none-match", "\"v0\""), ("if-none-match", "\"v1\"")],
                true,
            ),
            (&[("if-none-match", "v1")], true),
            (&[("if-none-match", "\"v1")], false),
            (&[("if-none-match", "")], false),
            (&[("if-none-match", "\"a,b\", \"v1\"")], true),
        ];
        for (pairs, want) in cases {
            assert_eq!(
                if_none_match_matches(&headers(pairs), &etag),
                *want,
                "{pairs:?}"
            );
        }
        let weak = HeaderValue::from_static("W/\"v1\"");
        assert!(if_none_match_matches(
            &headers(&[("if-none-match", "\"v1\"")]),
            &weak
        ));
    }

    #[test]
    fn cache_control_table() {
        let d = |pairs: &[(&'static str, &'static str)]| RequestDirectives::parse(&headers(pairs));
        assert_eq!(d(&[]), RequestDirectives::default());
        assert!(d(&[("cache-control", "no-cache")]).no_cache);
        assert!(d(&[("cache-control", "No-Store")]).no_store);
        assert!(d(&[("cache-control", "only-if-cached")]).only_if_cached);
        assert_eq!(d(&[("cache-control", "max-age=0")]).max_age, Some(0));
        assert_eq!(d(&[("cache-control", "max-age=\"30\"")]).max_age, Some(30));
        assert_eq!(d(&[("cache-control", "max-age=bogus")]).max_age, Some(0));
        assert_eq!(
            d(&[("cache-control", "max-age=60, max-age=5")]).max_age,
            Some(5)
        );
        let both = d(&[
            ("cache-control", "no-cache"),
            ("cache-control", "only-if-cached"),
        ]);
        assert!(both.no_cache && both.only_if_cached);
        assert!(d(&[("pragma", "no-cache")]).no_cache);
        assert!(!d(&[("pragma", "no-cache"), ("cache-control", "max-age=5")]).no_cache);
        let ms = std::time::Duration::from_millis;
        assert!(d(&[("cache-control", "max-age=0")]).requires_revalidation(ms(1)));
        assert!(!d(&[("cache-control", "max-age=5")]).requires_revalidation(ms(4900)));
        assert!(d(&[("cache-control", "max-age=5")]).requires_revalidation(ms(5100)));
        assert!(d(&[("cache-control", "no-cache")]).requires_revalidation(ms(0)));
        assert!(!d(&[("cache-control", "max-stale=10")]).requires_revalidation(ms(100_000)));
    }

    #[test]
    fn response_no_store() {
        assert!(response_forbids_store(&headers(&[(
            "cache-control",
            "private, no-store"
        )])));
        assert!(!response_forbids_store(&headers(&[(
            "cache-control",
            "no-cache"
        )])));
        assert!(!response_forbids_store(&headers(&[])));
    }
}
