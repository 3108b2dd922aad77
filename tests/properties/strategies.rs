//! Inputs shared by the properties: GUID text in any case, single-character edits, bytes a
//! header value may hold, and the reference rules several areas use.

use proptest::prelude::*;
use proptest::sample::Index;

/// The canonical lower-case 8-4-4-4-12 text of a 128-bit value, by the `uuid` crate (an
/// implementation independent of the gateway's).
pub fn hyphenated(value: u128) -> String {
    uuid::Uuid::from_u128(value).hyphenated().to_string()
}

/// The reference rule for a GUID (SPEC §3.2): 36 bytes, hyphens at 8, 13, 18 and 23, hex
/// digits of any case everywhere else.
pub fn is_canonical(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `text` with the ASCII letters whose position's bit is set in `mask` upper-cased.
pub fn mix_case(text: &str, mask: u64) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A random 128-bit value as a GUID in a random mix of cases.
pub fn guid_text() -> impl Strategy<Value = String> {
    (any::<u128>(), any::<u64>()).prop_map(|(v, mask)| mix_case(&hyphenated(v), mask))
}

/// One change of one character.
#[derive(Debug, Clone)]
pub enum Edit {
    Replace(Index, char),
    Insert(Index, char),
    Delete(Index),
}

impl Edit {
    pub fn apply(&self, text: &str) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        match self {
            Edit::Replace(at, c) if !chars.is_empty() => {
                let i = at.index(chars.len());
                chars[i] = *c;
            }
            Edit::Insert(at, c) => {
                let i = at.index(chars.len() + 1);
                chars.insert(i, *c);
            }
            Edit::Delete(at) if !chars.is_empty() => {
                chars.remove(at.index(chars.len()));
            }
            _ => {}
        }
        chars.into_iter().collect()
    }
}

/// Characters a near-miss is made of: hex digits either side of the ranges, the hyphen, what
/// GUIDs are wrapped in, percent-encoding, and anything at all.
pub fn near_char() -> BoxedStrategy<char> {
    prop_oneof![
        4 => prop::sample::select(
            "0123456789abcdefgABCDEFG-{}()% ._~\0\u{e9}\u{ff10}".chars().collect::<Vec<_>>()
        ),
        1 => any::<char>(),
    ]
    .boxed()
}

/// Characters a path segment may hold without `http::Uri` refusing it (near-misses that stay
/// a target).
pub fn uri_char() -> BoxedStrategy<char> {
    prop::sample::select(
        "0123456789abcdefgABCDEFG-%._~!$&'()*+,;=:@"
            .chars()
            .collect::<Vec<_>>(),
    )
    .boxed()
}

/// One edit drawn from `chars`.
pub fn edit(chars: BoxedStrategy<char>) -> impl Strategy<Value = Edit> {
    (0u8..3, any::<Index>(), chars).prop_map(|(kind, at, c)| match kind {
        0 => Edit::Replace(at, c),
        1 => Edit::Insert(at, c),
        _ => Edit::Delete(at),
    })
}

/// Bytes a header value may hold (`HeaderValue::from_bytes` takes them): tab, visible ASCII
/// with space, obs-text. Biased towards the characters the header grammars use.
pub fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b" \t,;=\"*/W-0123456789azAZ".to_vec()),
            4 => 0x20u8..0x7f,
            1 => Just(b'\t'),
            1 => 0x80u8..=0xff,
        ],
        0..max,
    )
}

/// Any bytes at all, sometimes ones a header value cannot hold.
pub fn any_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// Optional whitespace as RFC 9110 §5.6.3 allows it around list separators.
pub fn ows() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}
