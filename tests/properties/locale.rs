//! What keys an answer (SPEC §3.3): `X-Locale` as a language tag, `KeyMaker::key`, and the
//! hop-by-hop stripping (SPEC §5) that decides what of the request reaches the upstream.

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION};
use partner_gateway::cache::key::{is_language_tag, KeyMaker, Keyed, X_LOCALE};
use partner_gateway::config::Partition;
use partner_gateway::request::credential::Fingerprinter;
use partner_gateway::request::route::{Guid, ItemRef};
use partner_gateway::resource::Resource;
use partner_gateway::upstream::forward::{is_stripped, strip_hop_by_hop};
use proptest::prelude::*;

use crate::config;
use crate::strategies::*;

/// The rule of SPEC §3.3: 1 to 35 bytes, ASCII letters, digits and `-`, a letter first.
fn tag_rule(b: &[u8]) -> bool {
    (1..=35).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-'))
}

/// Bytes near a language tag: mostly its alphabet, sometimes anything.
fn tag_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(b"aZ09-".to_vec()),
            8 => prop::sample::select(b"abcxyzABCXYZ0123456789-".to_vec()),
            1 => any::<u8>(),
        ],
        0..40,
    )
}

/// An `X-Locale` value: a tag, a tag one edit away, or any header bytes.
fn locale() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "[a-zA-Z]{1,3}(-[a-zA-Z0-9]{1,8}){0,3}".prop_map(String::into_bytes),
        2 => ("[a-zA-Z]{1,3}(-[a-zA-Z0-9]{1,8}){0,3}", edit(near_char()))
            .prop_map(|(t, e)| e.apply(&t).into_bytes()),
        1 => tag_tail_of_length(),
        1 => header_bytes(40),
    ]
}

/// Tags around the 35-byte bound.
fn tag_tail_of_length() -> impl Strategy<Value = Vec<u8>> {
    (33usize..38).prop_map(|n| {
        let mut t = b"x-".to_vec();
        t.resize(n, b'a');
        t
    })
}

/// `Connection` tokens: the headers that matter here in any case, hop-by-hop names, other
/// names, garbage; visible ASCII only.
fn connection_token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "x-locale", "authorization", "keep-alive", "te", "upgrade", "x-other",
            "x-locale2", "locale", "x_locale", "",
        ])
        .prop_flat_map(|t| any::<u64>().prop_map(move |m| mix_case(t, m))),
        1 => "[!-~]{0,8}",
    ]
}

fn connection_line() -> impl Strategy<Value = String> {
    prop::collection::vec((ows(), connection_token(), ows()), 1..5).prop_map(|tokens| {
        tokens
            .into_iter()
            .map(|(a, t, b)| format!("{a}{t}{b}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Whether the `Connection` lines name `name` (RFC 9110 §7.6.1), by their text.
fn connection_names(headers: &HeaderMap, name: &str) -> bool {
    headers.get_all(CONNECTION).iter().any(|line| {
        line.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
    })
}

fn order() -> ItemRef {
    ItemRef {
        resource: Resource::Orders,
        customer: Guid::parse("3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f60").expect("c"),
        id: Guid::parse("d6595733-265f-4918-a62e-026e64bc8384").expect("o"),
    }
}

/// Header names a request may carry in these properties.
const NAMES: [&str; 9] = [
    "x-locale",
    "authorization",
    "keep-alive",
    "te",
    "upgrade",
    "x-other",
    "x-locale2",
    "content-type",
    "proxy-connection",
];

/// A request's headers: some of [`NAMES`], and `Connection` lines from `lines`.
fn request_headers(present: &[bool], lines: &[Vec<u8>]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, _) in NAMES.iter().zip(present).filter(|(_, p)| **p) {
        h.insert(*name, HeaderValue::from_static("v"));
    }
    for line in lines {
        h.append(
            CONNECTION,
            HeaderValue::from_bytes(line).expect("connection"),
        );
    }
    h
}

/// Checks that stripping removes exactly what `is_stripped` says it removes.
fn stripping_agrees(h: &HeaderMap) -> Result<(), TestCaseError> {
    let mut upstream = h.clone();
    strip_hop_by_hop(&mut upstream);
    prop_assert!(!upstream.contains_key(CONNECTION));
    for name in NAMES {
        let name = HeaderName::from_static(name);
        let kept = upstream.contains_key(&name);
        prop_assert_eq!(
            kept,
            h.contains_key(&name) && !is_stripped(h, &name),
            "{} in {:?}",
            name,
            h
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(4096))]

    /// Any bytes: `is_language_tag` is the SPEC rule.
    #[test]
    fn language_tag_rule(b in prop_oneof![tag_like_bytes(), any_bytes(40)]) {
        prop_assert_eq!(is_language_tag(&b), tag_rule(&b), "{:?}", b);
    }

    /// `Connection` lines of visible ASCII: a header is removed on the way upstream exactly when
    /// `is_stripped` says so (the cache key relies on it).
    #[test]
    fn hop_by_hop_stripping_agrees_with_is_stripped(
        present in prop::collection::vec(any::<bool>(), NAMES.len()),
        lines in prop::collection::vec(connection_line().prop_map(String::into_bytes), 0..3),
    ) {
        stripping_agrees(&request_headers(&present, &lines))?;
    }

    /// The key of an order request (both partition modes): none without exactly one non-blank
    /// `Authorization` that reaches the upstream; the `X-Locale` keys it iff it is a language
    /// tag that reaches the upstream, a non-tag that reaches it bypasses; and the key's locale is
    /// the `X-Locale` the upstream receives.
    #[test]
    fn cache_key_is_the_request_as_sent_upstream(
        credentials in prop::collection::vec(
            prop_oneof![
                "Bearer [a-z]{1,4}".prop_map(String::into_bytes),
                Just(Vec::new()),
                Just(b" \t".to_vec()),
                header_bytes(12),
            ],
            0..3,
        ),
        locale in proptest::option::of(locale()),
        connection in proptest::option::of(connection_line()),
        shared in any::<bool>(),
        with_caller in prop::bool::weighted(0.9),
    ) {
        let mut h = HeaderMap::new();
        for c in &credentials {
            if let Ok(v) = HeaderValue::from_bytes(c) {
                h.append(AUTHORIZATION, v);
            }
        }
        if let Some(v) = locale.as_ref().and_then(|l| HeaderValue::from_bytes(l).ok()) {
            h.insert(&X_LOCALE, v);
        }
        if let Some(line) = &connection {
            h.insert(CONNECTION, HeaderValue::from_str(line).expect("connection"));
        }
        let mode = if shared { Partition::Shared } else { Partition::Credential };
        let hasher = Fingerprinter::new();
        let caller = if with_caller { hasher.caller(&h, None) } else { None };
        let got = KeyMaker::new(mode).key(order(), &h, caller);

        let credentials: Vec<&HeaderValue> = h.get_all(AUTHORIZATION).iter().collect();
        let sent_locale = h.get(&X_LOCALE).filter(|_| !connection_names(&h, "x-locale"));
        let want = match credentials[..] {
            [] => "bypass",
            [_, _, ..] => "two",
            [c] if c.as_bytes().trim_ascii().is_empty() => "bypass",
            [_] if connection_names(&h, "authorization") => "bypass",
            [_] if sent_locale.is_some_and(|l| !tag_rule(l.as_bytes())) => "bypass",
            [_] if !shared && caller.is_none() => "bypass",
            [_] => "key",
        };
        let verdict = match &got {
            Keyed::Key(_) => "key",
            Keyed::Bypass => "bypass",
            Keyed::TwoCredentials => "two",
        };
        prop_assert_eq!(verdict, want, "{:?}", h);
        if let Keyed::Key(key) = got {
            let mut upstream = h.clone();
            strip_hop_by_hop(&mut upstream);
            prop_assert_eq!(key.locale.as_ref(), upstream.get(&X_LOCALE));
            prop_assert_eq!(key.locale.as_ref(), sent_locale);
            prop_assert!(upstream.contains_key(AUTHORIZATION));
        }
    }

    /// The same agreement when a `Connection` line also carries a byte that is not visible
    /// ASCII (obs-text, which hyper accepts from clients).
    #[test]
    fn hop_by_hop_stripping_agrees_with_obs_text(
        present in prop::collection::vec(any::<bool>(), NAMES.len()),
        line in connection_line(),
        at in any::<prop::sample::Index>(),
        byte in 0x80u8..=0xff,
    ) {
        let mut line = line.into_bytes();
        line.insert(at.index(line.len() + 1), byte);
        stripping_agrees(&request_headers(&present, &[line]))?;
    }
}

/// The minimal case the property above found (now fixed), end to end through the key: `X-Locale: fr-FR` with
/// `Connection: x-locale,\x80` is keyed as the request without a locale, yet the upstream is
/// asked in French, so a French answer would be stored under the locale-less key.
#[test]
fn obs_text_in_connection_does_not_split_key_and_upstream() {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
    h.insert(&X_LOCALE, HeaderValue::from_static("fr-FR"));
    h.insert(
        CONNECTION,
        HeaderValue::from_bytes(b"x-locale,\x80").expect("obs-text is a valid value"),
    );
    let Keyed::Key(key) = KeyMaker::new(Partition::Shared).key(order(), &h, None) else {
        panic!("an order request with a credential is keyed");
    };
    let mut upstream = h.clone();
    strip_hop_by_hop(&mut upstream);
    assert_eq!(key.locale.as_ref(), upstream.get(&X_LOCALE));
}
