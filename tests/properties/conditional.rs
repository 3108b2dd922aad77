//! Conditional and cache headers: `If-None-Match` and the `ETag` it is matched against
//! (RFC 9110 §8.8.3, §13.1.2), `Cache-Control` request directives and the response's
//! `no-store` (RFC 9111 §5.2).

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, IF_NONE_MATCH, PRAGMA};
use partner_gateway::request::conditional::{
    format_etag, if_none_match_matches, response_forbids_store, RequestDirectives,
};
use proptest::prelude::*;

use crate::config;
use crate::strategies::*;

/// The gaps between list members: whitespace either side of the comma, or a new field line.
fn gaps() -> impl Strategy<Value = Vec<Gap>> {
    prop::collection::vec((ows(), ows(), prop::bool::weighted(0.2)), 16)
}

/// `items` as the lines of one list header, whitespace around them.
fn list_lines(items: &[String], gaps: &[Gap], edge: &str) -> Vec<String> {
    let mut lines = vec![edge.to_owned()];
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            let (before, after, new_line) = &gaps[i % gaps.len()];
            if *new_line {
                lines.push(edge.to_owned());
            } else {
                let line = lines.last_mut().expect("a line");
                line.push_str(before);
                line.push(',');
                line.push_str(after);
            }
        }
        lines.last_mut().expect("a line").push_str(item);
    }
    for line in &mut lines {
        line.push_str(edge);
    }
    lines
}

fn headers_with(name: &HeaderName, lines: &[String]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in lines {
        h.append(name, HeaderValue::from_str(line).expect("list line"));
    }
    h
}

// ---- If-None-Match -------------------------------------------------------------------------

/// The opaque part of an entity-tag: etagc (RFC 9110 §8.8.3) without obs-text, commas included.
fn opaque() -> impl Strategy<Value = String> {
    "[!#-~]{0,12}"
}

/// How a tag is written in the list: `"o"`, `W/"o"`, or bare `o` (accepted from lenient
/// clients, where it cannot be mistaken for something else).
fn written(opaque: &str, form: u8) -> String {
    let bare_is_unambiguous =
        !opaque.is_empty() && !opaque.contains(',') && !opaque.starts_with("W/");
    match form {
        0 => format!("W/\"{opaque}\""),
        1 if bare_is_unambiguous => opaque.to_owned(),
        _ => format!("\"{opaque}\""),
    }
}

/// Tags other than `ours`, strong or weak.
fn others(ours: String) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec((opaque(), any::<bool>()), 0..6).prop_map(move |tags| {
        tags.into_iter()
            .map(|(mut o, weak)| {
                if o == ours {
                    o.push('x');
                }
                written(&o, if weak { 0 } else { 2 })
            })
            .collect()
    })
}

/// A gap between list members: whitespace before and after the comma, or a new line.
type Gap = (String, String, bool);

/// The stored tag's opaque part and weakness, the other tags listed, where the stored one goes,
/// the gaps, and the whitespace around each line.
type InmCase = (
    String,
    bool,
    Vec<String>,
    prop::sample::Index,
    Vec<Gap>,
    String,
);

/// A stored entity's `ETag`, the other tags a client lists, and list layout.
fn inm_case() -> impl Strategy<Value = InmCase> {
    (opaque(), any::<bool>()).prop_flat_map(|(ours, weak)| {
        (
            Just(ours.clone()),
            Just(weak),
            others(ours),
            any::<prop::sample::Index>(),
            gaps(),
            ows(),
        )
    })
}

fn stored_etag(opaque: &str, weak: bool) -> HeaderValue {
    let text = if weak {
        format!("W/\"{opaque}\"")
    } else {
        format!("\"{opaque}\"")
    };
    HeaderValue::from_str(&text).expect("etag")
}

/// The reference of `format_etag` (SPEC §4.2): a quoted or `W/`-quoted value as it is, any
/// other value without `"` quoted; only visible ASCII.
fn etag_model(attribute: &str) -> Option<String> {
    // RFC 9110 §8.8.3: an opaque tag is quoted and holds no further quote.
    let quoted = |s: &str| {
        s.len() >= 2 && s.starts_with('"') && s.ends_with('"') && !s[1..s.len() - 1].contains('"')
    };
    let text = if quoted(attribute) || attribute.strip_prefix("W/").is_some_and(quoted) {
        attribute.to_owned()
    } else if attribute.is_empty() || attribute.contains('"') {
        return None;
    } else {
        format!("\"{attribute}\"")
    };
    text.bytes().all(|b| b.is_ascii_graphic()).then_some(text)
}

proptest! {
    #![proptest_config(config(4096))]

    /// A list holding the stored tag, at any position, in weak, strong or bare form, with any
    /// whitespace and across any field lines, matches (weak comparison).
    #[test]
    fn if_none_match_listed_tag_matches(
        (ours, weak, others, at, gaps, edge) in inm_case(),
        form in 0u8..3,
    ) {
        let mut items = others;
        items.insert(at.index(items.len() + 1), written(&ours, form));
        let h = headers_with(&IF_NONE_MATCH, &list_lines(&items, &gaps, &edge));
        prop_assert!(if_none_match_matches(&h, &stored_etag(&ours, weak)), "{:?}", h);
    }

    /// A list of other tags only never matches; adding `*` anywhere makes it match.
    #[test]
    fn if_none_match_other_tags_and_star(
        (ours, weak, others, at, gaps, edge) in inm_case(),
    ) {
        let etag = stored_etag(&ours, weak);
        let h = headers_with(&IF_NONE_MATCH, &list_lines(&others, &gaps, &edge));
        prop_assert!(!if_none_match_matches(&h, &etag), "{:?}", h);
        let mut items = others;
        items.insert(at.index(items.len() + 1), "*".to_owned());
        let h = headers_with(&IF_NONE_MATCH, &list_lines(&items, &gaps, &edge));
        prop_assert!(if_none_match_matches(&h, &etag), "{:?}", h);
    }

    /// Any field lines against any `attributes.etag`: no panic; `format_etag` is its model, and
    /// a formatted tag sent back as it is always matches.
    #[test]
    fn if_none_match_any_bytes(
        lines in prop::collection::vec(header_bytes(40), 0..3),
        attribute in prop_oneof![".{0,20}", "(W/)?\"[!-~]{0,10}\"?", "[!-~]{0,20}"],
    ) {
        let formatted = format_etag(&attribute);
        prop_assert_eq!(
            formatted.as_ref().map(|v| v.as_bytes().to_vec()),
            etag_model(&attribute).map(String::into_bytes),
            "{:?}", attribute
        );
        let Some(etag) = formatted else {
            return Ok(());
        };
        let mut h = HeaderMap::new();
        for line in &lines {
            if let Ok(v) = HeaderValue::from_bytes(line) {
                h.append(IF_NONE_MATCH, v);
            }
        }
        let _ = if_none_match_matches(&h, &etag);
        // Echoed back, a tag matches, unless it holds a quoted comma (see
        // `formatted_etags_are_entity_tags`).
        let tag = etag.as_bytes();
        let quoted = tag.strip_prefix(b"W/").unwrap_or(tag);
        if !quoted[1..quoted.len() - 1].contains(&b'"') {
            h.append(IF_NONE_MATCH, etag.clone());
            prop_assert!(if_none_match_matches(&h, &etag));
        }
    }

    /// Every `ETag` the gateway formats is an entity-tag (RFC 9110 §8.8.3: no `"` inside the
    /// quotes), so a client echoing it in `If-None-Match` gets a 304.
    #[test]
    fn formatted_etags_are_entity_tags(attribute in "(W/)?\"[!-~]{0,10}\"") {
        if let Some(etag) = format_etag(&attribute) {
            let tag = etag.as_bytes();
            let opaque = tag.strip_prefix(b"W/").unwrap_or(tag);
            prop_assert!(!opaque[1..opaque.len() - 1].contains(&b'"'), "{:?}", etag);
            let mut h = HeaderMap::new();
            h.insert(IF_NONE_MATCH, etag.clone());
            prop_assert!(if_none_match_matches(&h, &etag), "{:?}", etag);
        }
    }
}

// ---- Cache-Control -------------------------------------------------------------------------

/// One request directive as written, and what it asks.
#[derive(Debug, Clone)]
enum Directive {
    /// `max-age` with the seconds the gateway must read from it (0 when unparsable).
    MaxAge(String, u64),
    NoStore(String),
    NoCache(String),
    OnlyIfCached(String),
    Other(String),
}

impl Directive {
    fn text(&self) -> &str {
        match self {
            Directive::MaxAge(t, _)
            | Directive::NoStore(t)
            | Directive::NoCache(t)
            | Directive::OnlyIfCached(t)
            | Directive::Other(t) => t,
        }
    }
}

/// Values of `max-age` that are not delta-seconds: all of them read as 0 (RFC 9111 §1.2.2's
/// safe reading). None has an unbalanced quote, which would swallow the rest of the list.
fn bad_seconds() -> BoxedStrategy<String> {
    prop_oneof![
        prop::sample::select(vec![
            "", "-1", "-0", "1.5", "0x10", "5s", "1 2", "\"\"", "\" 5\"", "1e3", "٣", "５"
        ])
        .prop_map(String::from),
        "[0-9]{0,3}[a-zA-Z./:\\-][0-9a-zA-Z]{0,3}",
        // Beyond u64: unparsable, so 0 as well.
        "[1-9][0-9]{20,30}",
    ]
    .boxed()
}

fn directive() -> impl Strategy<Value = Directive> {
    let name = |word: &'static str| any::<u64>().prop_map(move |m| mix_case(word, m));
    let value = || proptest::option::of("=[a-z0-9]{0,4}").prop_map(Option::unwrap_or_default);
    prop_oneof![
        3 => (name("max-age"), ows(), ows(), "0{0,3}", any::<u64>(), any::<bool>()).prop_map(
            |(name, a, b, zeros, secs, quoted)| {
                let q = if quoted { "\"" } else { "" };
                Directive::MaxAge(format!("{name}{a}={b}{q}{zeros}{secs}{q}"), secs)
            }
        ),
        1 => (name("max-age"), ows(), bad_seconds()).prop_map(|(name, a, v)| {
            Directive::MaxAge(format!("{name}{a}={v}"), 0)
        }),
        1 => name("max-age").prop_map(|name| Directive::MaxAge(name, 0)),
        1 => (name("no-store"), value()).prop_map(|(n, v)| Directive::NoStore(n + &v)),
        1 => (name("no-cache"), value()).prop_map(|(n, v)| Directive::NoCache(n + &v)),
        1 => name("only-if-cached").prop_map(Directive::OnlyIfCached),
        2 => prop_oneof![
            prop::sample::select(vec![
                "private", "public", "max-stale=10", "min-fresh=5", "no-transform",
                "must-revalidate", "s-maxage=9", "max-age-x=1", "maxage=1", "max-ag=1",
                "no_store", "nocache", "no-stor", "only-if-cache", "x-max-age=3", "=5", ",",
            ])
            .prop_map(String::from),
            "x-[a-z0-9-]{0,6}(=[a-z0-9]{0,4})?",
        ]
        .prop_map(Directive::Other),
    ]
}

/// `Pragma` values, with near-misses of `no-cache`.
fn pragma() -> impl Strategy<Value = Option<(String, bool)>> {
    proptest::option::of(prop::sample::select(vec![
        ("no-cache", true),
        ("No-Cache", true),
        ("x, no-cache", true),
        (" no-cache ", true),
        ("nocache", false),
        ("no-cache=1", false),
        ("", false),
    ]))
    .prop_map(|p| p.map(|(text, no_cache)| (text.to_owned(), no_cache)))
}

proptest! {
    #![proptest_config(config(4096))]

    /// Any list of directives in any case, spacing and field lines: each flag is read, `max-age`
    /// is the smallest of its values (any u64, leading zeros, quoted), an unparsable one counts
    /// as 0, and `Pragma: no-cache` counts only without `Cache-Control`. The same lines on a
    /// response forbid storing iff one directive is `no-store`.
    #[test]
    fn cache_control_directives(
        directives in prop::collection::vec(directive(), 0..8),
        gaps in gaps(),
        edge in ows(),
        no_lines in prop::bool::weighted(0.2),
        pragma in pragma(),
    ) {
        let texts: Vec<String> = directives.iter().map(|d| d.text().to_owned()).collect();
        let lines = if directives.is_empty() && no_lines {
            Vec::new()
        } else {
            list_lines(&texts, &gaps, &edge)
        };
        let mut h = headers_with(&CACHE_CONTROL, &lines);
        if let Some((text, _)) = &pragma {
            h.append(PRAGMA, HeaderValue::from_str(text).expect("pragma"));
        }
        let mut want = RequestDirectives::default();
        for d in &directives {
            match d {
                Directive::MaxAge(_, secs) => {
                    want.max_age = Some(want.max_age.map_or(*secs, |m: u64| m.min(*secs)));
                }
                Directive::NoStore(_) => want.no_store = true,
                Directive::NoCache(_) => want.no_cache = true,
                Directive::OnlyIfCached(_) => want.only_if_cached = true,
                Directive::Other(_) => {}
            }
        }
        if lines.is_empty() && pragma.as_ref().is_some_and(|(_, no_cache)| *no_cache) {
            want.no_cache = true;
        }
        let got = RequestDirectives::parse(&h);
        prop_assert_eq!(got, want, "{:?}", h);
        let forbids = directives.iter().any(|d| matches!(d, Directive::NoStore(_)));
        prop_assert_eq!(response_forbids_store(&h), forbids, "{:?}", h);
    }

    /// Any header bytes: no panic, and no `max-age` read where none is written.
    #[test]
    fn cache_control_any_bytes(
        lines in prop::collection::vec(header_bytes(48), 0..3),
        pragma in header_bytes(16),
        age_ms in any::<u64>(),
    ) {
        let mut h = HeaderMap::new();
        for line in &lines {
            if let Ok(v) = HeaderValue::from_bytes(line) {
                h.append(CACHE_CONTROL, v);
            }
        }
        if let Ok(v) = HeaderValue::from_bytes(&pragma) {
            h.append(PRAGMA, v);
        }
        let d = RequestDirectives::parse(&h);
        let _ = d.requires_revalidation(Duration::from_millis(age_ms));
        let _ = response_forbids_store(&h);
        let written = h
            .get_all(CACHE_CONTROL)
            .iter()
            .any(|v| v.as_bytes().to_ascii_lowercase().windows(7).any(|w| w == b"max-age"));
        prop_assert!(written || d.max_age.is_none());
    }
}
