//! Order bodies for the judge's properties: a description ([`Body`]) of what an upstream answer
//! says, rendered to JSON, with the judge's expected answer as a model. Filler is nested
//! thousands deep or hundreds of kilobytes long.

use partner_gateway::guid::Guid;
use partner_gateway::outcome::NotStored;
use partner_gateway::request::conditional::format_etag;
use proptest::prelude::*;

use crate::strategies::*;

/// The order every body is judged against.
pub const ORDER: u128 = 0xd659_5733_265f_4918_a62e_026e_64bc_8384;

pub fn order() -> Guid {
    Guid::parse(&hyphenated(ORDER)).expect("order")
}

/// Values nobody reads: nested `depth` deep (arrays, objects or a mix by `shape`'s bits), or a
/// long string.
#[derive(Debug, Clone)]
pub enum Filler {
    Nested { depth: usize, shape: u64 },
    Long { unit: &'static str, times: usize },
    Scalar(&'static str),
}

impl Filler {
    fn depth(&self) -> usize {
        match self {
            Filler::Nested { depth, .. } => *depth,
            _ => 0,
        }
    }

    fn render(&self, out: &mut String) {
        match self {
            Filler::Nested { depth, shape } => {
                let is_array = |i: usize| shape.rotate_left(i as u32 % 64) & 1 == 1;
                for i in 0..*depth {
                    out.push_str(if is_array(i) { "[" } else { "{\"k\":" });
                }
                out.push('1');
                for i in (0..*depth).rev() {
                    out.push(if is_array(i) { ']' } else { '}' });
                }
            }
            Filler::Long { unit, times } => {
                out.push('"');
                for _ in 0..*times {
                    out.push_str(unit);
                }
                out.push('"');
            }
            Filler::Scalar(s) => out.push_str(s),
        }
    }
}

fn depth() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..8, 2 => 100usize..160, 1 => 1000usize..3000]
}

fn filler() -> impl Strategy<Value = Filler> {
    prop_oneof![
        4 => (depth(), any::<u64>()).prop_map(|(depth, shape)| Filler::Nested { depth, shape }),
        1 => (
            prop::sample::select(vec!["a", "\\\"", "\\u00e9", "\u{e9}", "\\n", "\\\\", "\u{1f600}"]),
            prop_oneof![15 => 0usize..64, 1 => 0usize..200_000],
        )
            .prop_map(|(unit, times)| Filler::Long { unit, times }),
        2 => prop::sample::select(vec!["null", "true", "-0.5e-3", "\"x\"", "[]", "{}", "1e400"])
            .prop_map(Filler::Scalar),
    ]
}

/// A JSON string for `text`, the characters whose bit in `mask` is set written as `\u` escapes.
fn json_string(text: &str, mask: u64) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if mask >> (i % 64) & 1 == 1 || c == '"' || c == '\\' || c < ' ' {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// The `id` member.
#[derive(Debug, Clone)]
pub enum Id {
    Absent,
    Null,
    Text(String, u64),
    Number,
    Nested(usize),
}

/// The `attributes.etag` member.
#[derive(Debug, Clone)]
pub enum Etag {
    Absent,
    Null,
    Text(String, u64),
    Number,
    Nested(usize),
}

/// The `attributes` member.
#[derive(Debug, Clone)]
pub enum Attributes {
    Absent,
    Null,
    Object(Etag, Vec<(String, Filler)>),
    Scalar(&'static str),
}

/// One upstream answer.
#[derive(Debug, Clone)]
pub struct Body {
    id: Id,
    attributes: Attributes,
    extras: Vec<(String, Filler)>,
    /// An `id` member naming the order after the others (a second one, unless `id` is absent).
    duplicate_id: bool,
    /// Where `id` and `attributes` go among the extras.
    slots: (prop::sample::Index, prop::sample::Index),
    /// Whitespace between tokens.
    space: &'static str,
    /// After the closing brace.
    trailer: &'static str,
}

fn id() -> impl Strategy<Value = Id> {
    let ours = hyphenated(ORDER);
    let text = prop_oneof![
        6 => any::<u64>().prop_map(move |m| mix_case(&hyphenated(ORDER), m)),
        2 => guid_text(),
        2 => (any::<u64>(), edit(near_char()))
            .prop_map(move |(m, e)| e.apply(&mix_case(&ours, m))),
        1 => Just(format!("{{{}}}", hyphenated(ORDER))),
        1 => ".{0,40}",
    ];
    prop_oneof![
        1 => Just(Id::Absent),
        1 => Just(Id::Null),
        12 => (text, prop_oneof![3 => Just(0u64), 1 => any::<u64>()])
            .prop_map(|(t, m)| Id::Text(t, m)),
        1 => Just(Id::Number),
        1 => depth().prop_map(Id::Nested),
    ]
}

fn etag() -> impl Strategy<Value = Etag> {
    let text = prop_oneof![
        6 => "[A-Za-z0-9+/=]{1,40}",
        1 => "(W/)?\"[!-~]{0,12}\"",
        1 => Just(String::new()),
        1 => ".{0,20}",
        1 => (1usize..100_000).prop_map(|n| "e".repeat(n)),
    ];
    prop_oneof![
        1 => Just(Etag::Absent),
        1 => Just(Etag::Null),
        12 => (text, prop_oneof![3 => Just(0u64), 1 => any::<u64>()])
            .prop_map(|(t, m)| Etag::Text(t, m)),
        1 => Just(Etag::Number),
        1 => depth().prop_map(Etag::Nested),
    ]
}

/// Member names for filler: near-misses of the ones read (`Id`, `Etag`), never the ones read.
fn filler_key(taken: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "objectType",
            "lineItems",
            "Id",
            "ID",
            "Etag",
            "links",
            "a"
        ])
        .prop_map(String::from),
        "[a-zA-Z]{1,8}",
    ]
    .prop_map(move |k| {
        if taken.contains(&k.as_str()) {
            k + "_"
        } else {
            k
        }
    })
}

fn extras(taken: &'static [&'static str]) -> impl Strategy<Value = Vec<(String, Filler)>> {
    prop::collection::vec((filler_key(taken), filler()), 0..4)
}

pub fn body() -> impl Strategy<Value = Body> {
    let attributes = prop_oneof![
        1 => Just(Attributes::Absent),
        1 => Just(Attributes::Null),
        12 => (etag(), extras(&["etag"])).prop_map(|(e, x)| Attributes::Object(e, x)),
        1 => prop::sample::select(vec!["\"etag\"", "7", "true"]).prop_map(Attributes::Scalar),
    ];
    (
        id(),
        attributes,
        extras(&["id", "attributes"]),
        prop::bool::weighted(0.05),
        any::<(prop::sample::Index, prop::sample::Index)>(),
        prop::sample::select(vec!["", " ", "\n  ", "\t\r\n"]),
        prop_oneof![8 => Just(""), 1 => Just(" \n"), 1 => Just("x"), 1 => Just("}")],
    )
        .prop_map(
            |(id, attributes, extras, duplicate_id, slots, space, trailer)| Body {
                id,
                attributes,
                extras,
                duplicate_id,
                slots,
                space,
                trailer,
            },
        )
}

fn render_object(members: &[(String, String)], space: &str) -> String {
    let mut out = format!("{{{space}");
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push_str(&format!("{space},{space}"));
        }
        out.push_str(&format!("{}{space}:{space}{value}", json_string(key, 0)));
    }
    out.push_str(&format!("{space}}}"));
    out
}

fn rendered(filler: &Filler) -> String {
    let mut out = String::new();
    filler.render(&mut out);
    out
}

pub fn nested(depth: usize) -> String {
    rendered(&Filler::Nested {
        depth,
        shape: 0x5555_5555_5555_5555,
    })
}

impl Body {
    pub fn render(&self) -> String {
        let mut members: Vec<(String, String)> = self
            .extras
            .iter()
            .map(|(k, f)| (k.clone(), rendered(f)))
            .collect();
        let id = match &self.id {
            Id::Absent => None,
            Id::Null => Some("null".to_owned()),
            Id::Text(t, mask) => Some(json_string(t, *mask)),
            Id::Number => Some("42".to_owned()),
            Id::Nested(d) => Some(nested(*d)),
        };
        let attributes = match &self.attributes {
            Attributes::Absent => None,
            Attributes::Null => Some("null".to_owned()),
            Attributes::Scalar(s) => Some((*s).to_owned()),
            Attributes::Object(etag, extras) => {
                let mut inner: Vec<(String, String)> = extras
                    .iter()
                    .map(|(k, f)| (k.clone(), rendered(f)))
                    .collect();
                let value = match etag {
                    Etag::Absent => None,
                    Etag::Null => Some("null".to_owned()),
                    Etag::Text(t, mask) => Some(json_string(t, *mask)),
                    Etag::Number => Some("7".to_owned()),
                    Etag::Nested(d) => Some(nested(*d)),
                };
                if let Some(v) = value {
                    inner.insert(inner.len() / 2, ("etag".to_owned(), v));
                }
                Some(render_object(&inner, self.space))
            }
        };
        if let Some(v) = id {
            members.insert(self.slots.0.index(members.len() + 1), ("id".to_owned(), v));
        }
        if let Some(v) = attributes {
            let at = self.slots.1.index(members.len() + 1);
            members.insert(at, ("attributes".to_owned(), v));
        }
        if self.duplicate_id {
            members.push(("id".to_owned(), json_string(&hyphenated(ORDER), 0)));
        }
        render_object(&members, self.space) + self.trailer
    }

    /// Deepest filler nobody reads.
    pub fn ignored_depth(&self) -> usize {
        let inner = match &self.attributes {
            Attributes::Object(_, extras) => extras.iter().map(|(_, f)| f.depth()).max(),
            _ => None,
        };
        let outer = self.extras.iter().map(|(_, f)| f.depth()).max();
        inner.max(outer).unwrap_or(0)
    }

    /// What the judge must say of this body under a JSON content type, the parser's nesting
    /// limit aside.
    pub fn expected(&self) -> Result<String, NotStored> {
        let two_ids = self.duplicate_id && !matches!(self.id, Id::Absent);
        if !self.trailer.trim().is_empty() || two_ids {
            return Err(NotStored::NotJson);
        }
        // Wrong types where a string or an object is read: the body is not an Order.
        if matches!(self.id, Id::Number | Id::Nested(_))
            || matches!(self.attributes, Attributes::Scalar(_))
        {
            return Err(NotStored::NotJson);
        }
        let id_matches = match &self.id {
            Id::Text(t, _) => {
                is_canonical(t.as_bytes()) && t.to_ascii_lowercase() == hyphenated(ORDER)
            }
            // The appended `id` member is then the only one.
            Id::Absent => self.duplicate_id,
            _ => false,
        };
        if !id_matches {
            return Err(NotStored::IdMismatch);
        }
        let Attributes::Object(Etag::Text(etag, _), _) = &self.attributes else {
            return Err(NotStored::NoEtag);
        };
        if etag.is_empty() {
            return Err(NotStored::NoEtag);
        }
        format_etag(etag)
            .map(|v| v.to_str().expect("ascii").to_owned())
            .ok_or(NotStored::NoEtag)
    }

    /// Whether the parser's nesting limit may turn the answer into `NotJson`: a read value
    /// nested past it (serde_json stops at 128 levels), or, loosely, filler near it.
    pub fn may_hit_depth_limit(&self) -> bool {
        let read = match (&self.id, &self.attributes) {
            (Id::Nested(d), _) | (_, Attributes::Object(Etag::Nested(d), _)) => *d >= 100,
            _ => false,
        };
        read || self.ignored_depth() >= 100
    }
}
