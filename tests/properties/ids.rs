//! GUIDs (SPEC §3.2) and correlation IDs (SPEC §3.1).

use http::header::{HeaderMap, HeaderValue};
use partner_gateway::guid::Guid;
use partner_gateway::request::correlation::{is_guid, Correlation, CORRELATION_ID, REQUEST_ID};
use proptest::prelude::*;

use crate::config;
use crate::strategies::*;

/// Text one to three edits away from a GUID in a random case.
fn guid_near_miss() -> impl Strategy<Value = String> {
    (guid_text(), prop::collection::vec(edit(near_char()), 1..=3))
        .prop_map(|(text, edits)| edits.iter().fold(text, |t, e| e.apply(&t)))
}

/// Bytes one edit away from a GUID, the edit any byte (not always UTF-8 afterwards).
fn guid_byte_near_miss() -> impl Strategy<Value = Vec<u8>> {
    (
        guid_text(),
        0u8..3,
        any::<prop::sample::Index>(),
        any::<u8>(),
    )
        .prop_map(|(text, kind, at, byte)| {
            let mut b = text.into_bytes();
            match kind {
                0 => {
                    let i = at.index(b.len());
                    b[i] = byte;
                }
                1 => b.insert(at.index(b.len() + 1), byte),
                _ => {
                    b.remove(at.index(b.len()));
                }
            }
            b
        })
}

/// Checks one input against the reference rule: it parses iff canonical, and then prints as
/// its own lower-case text.
fn agrees_with_rule(b: &[u8]) -> Result<(), TestCaseError> {
    let parsed = Guid::parse_bytes(b);
    prop_assert_eq!(parsed.is_some(), is_canonical(b), "{:?}", b);
    prop_assert_eq!(is_guid(b), parsed.is_some());
    if let Ok(text) = std::str::from_utf8(b) {
        prop_assert_eq!(Guid::parse(text), parsed);
    }
    if let Some(g) = parsed {
        prop_assert_eq!(g.to_string().into_bytes(), b.to_ascii_lowercase());
    }
    Ok(())
}

/// A correlation header's value as sent: absent, a GUID, a near-miss, or anything.
fn id_header() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        2 => guid_text().prop_map(|t| Some(t.into_bytes())),
        2 => guid_near_miss().prop_map(|t| Some(t.into_bytes())),
        1 => header_bytes(48).prop_map(Some),
    ]
}

/// What a minted ID looks like: a lower-case UUID v4.
fn is_fresh_v4(b: &[u8]) -> bool {
    is_canonical(b) && b == b.to_ascii_lowercase() && b[14] == b'4' && b"89ab".contains(&b[19])
}

proptest! {
    #![proptest_config(config(4096))]

    /// Any bytes: no panic, and a GUID exactly when the reference rule says so.
    #[test]
    fn guid_any_bytes(b in any_bytes(48)) {
        agrees_with_rule(&b)?;
    }

    /// Any string (any Unicode): the same.
    #[test]
    fn guid_any_string(s in ".{0,40}") {
        agrees_with_rule(s.as_bytes())?;
    }

    /// A GUID one to three character edits away (replace, insert, delete; hex digits either side
    /// of the ranges, hyphens, braces, non-ASCII) parses only if it is still canonical.
    #[test]
    fn guid_near_misses(s in guid_near_miss()) {
        agrees_with_rule(s.as_bytes())?;
    }

    /// The same with a raw byte edit (obs-text, NUL, invalid UTF-8), as header values carry.
    #[test]
    fn guid_byte_near_misses(b in guid_byte_near_miss()) {
        agrees_with_rule(&b)?;
    }

    /// Every 128-bit value in every case mix: parses, prints canonically, round-trips, and
    /// two values never parse to the same GUID.
    #[test]
    fn guid_round_trip(v in any::<u128>(), w in any::<u128>(), mask in any::<u64>()) {
        let canonical = hyphenated(v);
        let g = Guid::parse(&mix_case(&canonical, mask)).expect("a GUID in any case parses");
        prop_assert_eq!(g.to_string(), canonical.clone());
        prop_assert_eq!(Guid::parse(&g.to_string()), Some(g));
        prop_assert_eq!(Guid::parse_bytes(canonical.to_uppercase().as_bytes()), Some(g));
        let other = Guid::parse(&hyphenated(w)).expect("guid");
        prop_assert_eq!(other == g, v == w);
    }

    /// `MS-CorrelationId` and `MS-RequestId`: a GUID sent (the first field, when there are two)
    /// is kept byte for byte; anything else is replaced by a fresh lower-case v4; both IDs are
    /// always GUIDs and a minted pair differs.
    #[test]
    fn correlation_ids_kept_or_minted(
        correlation in id_header(),
        request in id_header(),
        second in proptest::option::of(guid_text()),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [(&CORRELATION_ID, &correlation), (&REQUEST_ID, &request)] {
            if let Some(v) = value.as_ref().and_then(|b| HeaderValue::from_bytes(b).ok()) {
                headers.append(name, v);
            }
        }
        if let Some(second) = second {
            headers.append(&CORRELATION_ID, HeaderValue::from_str(&second).expect("value"));
        }
        let sent = [headers.get(&CORRELATION_ID).cloned(), headers.get(&REQUEST_ID).cloned()];
        let c = Correlation::from_request(&headers);
        let got = [c.correlation_id.as_bytes(), c.request_id.as_bytes()];
        for (got, sent) in got.iter().zip(&sent) {
            match sent {
                Some(v) if is_canonical(v.as_bytes()) => prop_assert_eq!(*got, v.as_bytes()),
                _ => prop_assert!(is_fresh_v4(got), "{:?}", got),
            }
        }
        prop_assert!(is_guid(c.correlation_str().as_bytes()));
        prop_assert!(is_guid(c.request_str().as_bytes()));
        let minted = |v: &Option<HeaderValue>| !v.as_ref().is_some_and(|v| is_canonical(v.as_bytes()));
        if minted(&sent[0]) && minted(&sent[1]) {
            prop_assert_ne!(got[0], got[1]);
        }
    }
}
