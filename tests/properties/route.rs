//! Route matching (SPEC §3.2, §13): `classify`, `is_plain_path` and `changed_by_write` against
//! a reference model over paths built from segments, and over anything at all; every resource
//! is enabled.

use http::{Method, Uri};
use partner_gateway::request::route::{classify, is_plain_path, IdField, ItemRef, Route};
use partner_gateway::request::target::changed_by_write;
use partner_gateway::resource::{Purge, Resource, Resources};
use proptest::prelude::*;

use crate::config;
use crate::strategies::*;

/// A segment the upstream could read differently, or one that is merely odd.
fn odd_segment() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "", ".", "..", "...", ".a", "a.", "%2e", "%2E", "%2e%2e", "%2E.", "%2f", "%2F",
            "a%2Fb", "x%2e", "%2", "%25", "%252e", "%2d", "%", "%e2", "2e", "%2g",
        ])
        .prop_map(String::from),
        1 => prop::collection::vec(uri_char(), 0..12).prop_map(|c| c.into_iter().collect()),
        // Anything but what ends a segment or the path.
        1 => "[^/?#]{0,6}",
    ]
    .boxed()
}

/// A literal of the order path in a random case, sometimes one edit away, sometimes odd.
fn literal(word: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        6 => any::<u64>().prop_map(move |mask| mix_case(word, mask)),
        1 => edit(uri_char()).prop_map(move |e| e.apply(word)),
        1 => odd_segment(),
    ]
    .boxed()
}

/// A GUID parameter: valid in any case, one or two edits away, or odd.
fn guid_segment() -> BoxedStrategy<String> {
    prop_oneof![
        6 => guid_text(),
        2 => (guid_text(), prop::collection::vec(edit(uri_char()), 1..=2))
            .prop_map(|(t, edits)| edits.iter().fold(t, |t, e| e.apply(&t))),
        1 => odd_segment(),
    ]
    .boxed()
}

/// The segments of a path: a cached resource's path (an order's or a subscription's five, a
/// customer's three, or a write's target below a customer) with a structural change (a segment
/// added, removed or prepended, a trailing slash), or any segments at all.
fn segments() -> impl Strategy<Value = Vec<String>> {
    let collection = prop_oneof![
        literal("orders"),
        literal("subscriptions"),
        literal("profiles"),
        literal("carts"),
        odd_segment()
    ];
    let item_path = (
        literal("v1"),
        literal("customers"),
        guid_segment(),
        collection,
        guid_segment(),
        any::<bool>(),
    )
        .prop_map(|(a, b, c, d, e, customer_only)| match customer_only {
            true => vec![a, b, c],
            false => vec![a, b, c, d, e],
        });
    (
        item_path,
        0u8..8,
        any::<prop::sample::Index>(),
        odd_segment(),
        prop::collection::vec(odd_segment(), 0..8),
    )
        .prop_map(|(mut segs, change, at, extra, random)| {
            match change {
                0 => segs.insert(at.index(segs.len() + 1), extra),
                1 => {
                    segs.remove(at.index(segs.len()));
                }
                2 => segs.push(extra),
                3 => segs.push(String::new()),
                4 => segs.insert(0, String::new()),
                5 => return random,
                _ => {}
            }
            segs
        })
}

/// Methods, with near-misses that are extension methods (`get` is not `GET`).
fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "GET", "GET", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT",
        "TRACE", "get", "Head", "GETS", "PURGE",
    ])
}

/// An optional query, sometimes holding what would be refused in the path.
fn query() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        Just(String::new()),
        Just("%2e%2F/../x".to_owned()),
        "[a-z0-9=&%.]{0,10}",
    ])
}

/// What the model expects; GUIDs as their canonical text.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Item(Resource, String, String),
    InvalidId(Resource, IdField),
    InvalidPath,
    MethodNotAllowed,
    Forward,
}

fn all() -> Resources {
    Resource::ALL.into_iter().collect()
}

fn actual(route: Route) -> Expected {
    match route {
        Route::Cached(ItemRef {
            resource,
            customer,
            id,
        }) => Expected::Item(resource, customer.to_string(), id.to_string()),
        Route::InvalidId(resource, field) => Expected::InvalidId(resource, field),
        Route::InvalidPath => Expected::InvalidPath,
        Route::MethodNotAllowed => Expected::MethodNotAllowed,
        Route::Forward => Expected::Forward,
        Route::Webhook => panic!("classify never routes to the webhook path (the pipeline does)"),
    }
}

/// An encoded `.` or `/`, in either case.
fn has_encoded_dot_or_slash(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("%2e") || lower.contains("%2f")
}

/// SPEC §3.2 on a path's segments: an empty segment that is not the last, a dot segment, or an
/// encoded dot or slash anywhere makes the path one the upstream could normalise.
fn segments_are_plain(segs: &[String]) -> bool {
    !segs.iter().enumerate().any(|(i, s)| {
        (s.is_empty() && i + 1 < segs.len()) || s == "." || s == ".." || has_encoded_dot_or_slash(s)
    })
}

/// What a successful write on these segments drops (SPEC §13's table, written out), as
/// (kind, customer, id) with kind `one:<resource>` or `every:<resource>`.
fn changed_model(segs: &[String]) -> Vec<(String, String, String)> {
    let [v1, customers, c, rest @ ..] = segs else {
        return Vec::new();
    };
    if !(v1.eq_ignore_ascii_case("v1")
        && customers.eq_ignore_ascii_case("customers")
        && is_canonical(c.as_bytes()))
    {
        return Vec::new();
    }
    let c = c.to_ascii_lowercase();
    let one = |r: &str, id: &str| ("one:".to_owned() + r, c.clone(), id.to_ascii_lowercase());
    let every = |r: &str| ("every:".to_owned() + r, c.clone(), String::new());
    let id = rest.get(1).filter(|id| is_canonical(id.as_bytes()));
    match rest.first() {
        None => vec![one("customers", &c)],
        Some(first) if first.is_empty() => vec![one("customers", &c)],
        Some(first) if first.eq_ignore_ascii_case("orders") => id
            .map(|id| one("orders", id))
            .into_iter()
            .chain([every("subscriptions")])
            .collect(),
        Some(first) if first.eq_ignore_ascii_case("subscriptions") => {
            id.map(|id| one("subscriptions", id)).into_iter().collect()
        }
        Some(first) if first.eq_ignore_ascii_case("profiles") => vec![every("customers")],
        Some(first) if first.eq_ignore_ascii_case("carts") => vec![every("subscriptions")],
        Some(_) => Vec::new(),
    }
}

fn changed_actual(path: &str) -> Vec<(String, String, String)> {
    changed_by_write(path, all())
        .into_iter()
        .map(|purge| match purge {
            Purge::One(item) => (
                format!("one:{}", item.resource.name()),
                item.customer.to_string(),
                item.id.to_string(),
            ),
            Purge::EveryOf(resource, c) => (
                format!("every:{}", resource.name()),
                c.to_string(),
                String::new(),
            ),
            other => panic!("a write never purges {other:?}"),
        })
        .collect()
}

/// The reference model of `classify`.
fn model(method: &str, segs: &[String], has_query: bool) -> Expected {
    if method == "CONNECT" || method == "TRACE" {
        return Expected::MethodNotAllowed;
    }
    if !segments_are_plain(segs) {
        return Expected::InvalidPath;
    }
    if !(method == "GET" || method == "HEAD") || has_query {
        return Expected::Forward;
    }
    let literals = |v1: &str, customers: &str| {
        v1.eq_ignore_ascii_case("v1") && customers.eq_ignore_ascii_case("customers")
    };
    // The customer itself: a non-GUID there is not the customer resource.
    if let [v1, customers, c] = segs {
        if literals(v1, customers) && is_canonical(c.as_bytes()) {
            let c = c.to_ascii_lowercase();
            return Expected::Item(Resource::Customers, c.clone(), c);
        }
        return Expected::Forward;
    }
    let [v1, customers, c, collection, id] = segs else {
        return Expected::Forward;
    };
    let resource = if collection.eq_ignore_ascii_case("orders") {
        Resource::Orders
    } else if collection.eq_ignore_ascii_case("subscriptions") {
        Resource::Subscriptions
    } else {
        return Expected::Forward;
    };
    if !literals(v1, customers) || c.is_empty() || id.is_empty() {
        return Expected::Forward;
    }
    // Partner Center names collections in a subscription's place (`usagerecords`).
    if resource == Resource::Subscriptions && id.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Expected::Forward;
    }
    match (is_canonical(c.as_bytes()), is_canonical(id.as_bytes())) {
        (true, true) => Expected::Item(resource, c.to_ascii_lowercase(), id.to_ascii_lowercase()),
        (false, _) => Expected::InvalidId(resource, IdField::Customer),
        (true, false) => Expected::InvalidId(resource, IdField::Item(resource)),
    }
}

proptest! {
    #![proptest_config(config(4096))]

    /// Paths built from valid, mutated and odd segments, any method, with or without a query:
    /// `classify` gives the model's route, `is_plain_path` the model's verdict, and
    /// `changed_by_write` the model's purges (targets `http::Uri` refuses are skipped).
    #[test]
    fn classify_agrees_with_the_model(
        method_name in method(),
        segs in segments(),
        query in query(),
    ) {
        let path = format!("/{}", segs.join("/"));
        let target = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let Ok(uri) = target.parse::<Uri>() else {
            return Ok(());
        };
        prop_assert_eq!(uri.path(), path.as_str());
        let method = Method::from_bytes(method_name.as_bytes()).expect("method");
        prop_assert_eq!(
            actual(classify(&method, &uri, all())),
            model(method_name, &segs, query.is_some()),
            "{} {}", method_name, target
        );
        prop_assert_eq!(is_plain_path(&path), segments_are_plain(&segs), "{}", path);
        prop_assert_eq!(changed_actual(&path), changed_model(&segs), "{}", path);
    }

    /// Any string as a path: no panic; `is_plain_path` is the model on its segments (a path
    /// that does not start with `/` has none); `changed_by_write` drops only the model's items.
    #[test]
    fn path_functions_on_any_string(s in prop_oneof![".{0,60}", "/[a-zA-Z0-9/.%-]{0,60}"]) {
        let plain = match s.strip_prefix('/') {
            None => true,
            Some(rest) => {
                let segs: Vec<String> = rest.split('/').map(String::from).collect();
                segments_are_plain(&segs)
            }
        };
        prop_assert_eq!(is_plain_path(&s), plain);
        let want = s.strip_prefix('/').map_or_else(Vec::new, |rest| {
            let segs: Vec<String> = rest.split('/').map(String::from).collect();
            changed_model(&segs)
        });
        prop_assert_eq!(changed_actual(&s), want);
    }

    /// Any request target and any method token that `http` accepts: `classify` never panics,
    /// and answers a cached route only for GET or HEAD.
    #[test]
    fn classify_any_target(
        target in prop_oneof![
            any_bytes(80),
            "[ -~]{0,80}".prop_map(String::into_bytes),
            "(https?://[a-z0-9.:@\\[\\]]{1,16})?/[!-~]{0,60}".prop_map(String::into_bytes),
        ],
        method in "[!-~]{1,8}",
    ) {
        let (Ok(uri), Ok(m)) = (Uri::try_from(target.as_slice()), Method::from_bytes(method.as_bytes()))
        else {
            return Ok(());
        };
        let route = classify(&m, &uri, all());
        if route.resource().is_some() {
            prop_assert!(m == Method::GET || m == Method::HEAD);
            prop_assert!(uri.query().is_none());
        }
    }
}
