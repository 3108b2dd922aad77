//! The body judge (SPEC §4.2): whether an upstream answer to an order request may be stored,
//! over generated Orders and near-Orders (`orders.rs`) and arbitrary bytes.

use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::StatusCode;
use partner_gateway::cache::cacheability::judge;
use partner_gateway::guid::Guid;
use partner_gateway::outcome::NotStored;
use partner_gateway::request::conditional::format_etag;
use proptest::prelude::*;

use crate::config;
use crate::orders::*;
use crate::strategies::*;

fn json_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h
}

/// Content types, with the rule's answer: `application/json` or a `+json` suffix (any case,
/// parameters ignored), or none at all.
fn content_type() -> impl Strategy<Value = (Option<&'static str>, bool)> {
    prop::sample::select(vec![
        (None, true),
        (Some("application/json"), true),
        (Some("application/json; charset=utf-8"), true),
        (Some(" Application/JSON ;x=y"), true),
        (Some("application/vnd.ms+json"), true),
        (Some("application/problem+JSON"), true),
        (Some("text/plain+json"), true),
        (Some("text/html"), false),
        (Some("application/jsonx"), false),
        (Some("application/json+"), false),
        (Some("application/+jsonp"), false),
        (Some(""), false),
        (Some("json"), false),
    ])
}

/// Response `Cache-Control`, and whether it forbids storing.
fn response_cache_control() -> impl Strategy<Value = (Option<&'static str>, bool)> {
    prop::sample::select(vec![
        (None, false),
        (None, false),
        (Some("no-store"), true),
        (Some("private, No-Store"), true),
        (Some("no-cache"), false),
        (Some("max-age=60"), false),
        (Some("no-storex"), false),
    ])
}

/// Runs the judge; panics propagate as failures.
fn run(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<String, NotStored> {
    let status = StatusCode::from_u16(status).expect("status");
    judge(status, headers, body, &order(), &[]).map(|s| s.etag.to_str().expect("ascii").to_owned())
}

/// What an accepted body must hold, checked by a parser of its own: an object whose `id` is the
/// order and whose `attributes.etag` is a non-empty string that formats to the `ETag` given.
fn accepted_body_is_the_order(body: &[u8], etag: &str) -> Result<(), TestCaseError> {
    // Filler the judge never reads but a full parse does may be invalid UTF-8, a lone
    // surrogate escape, a number beyond f64 (`1e400`) or nested past the parser's limit: the
    // judge checks the members it reads, and stores the rest as the upstream sent it.
    let text = String::from_utf8_lossy(body);
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e)
            if ["recursion limit", "number out of range", "surrogate"]
                .iter()
                .any(|m| e.to_string().contains(m)) =>
        {
            return Ok(())
        }
        Err(e) => return Err(TestCaseError::fail(format!("accepted, but not JSON: {e}"))),
    };
    prop_assert!(value.is_object(), "accepted a non-object: {}", value);
    let id = value["id"].as_str().and_then(Guid::parse);
    prop_assert_eq!(id, Some(order()));
    let attribute = value["attributes"]["etag"].as_str().unwrap_or_default();
    prop_assert!(!attribute.is_empty());
    let formatted = format_etag(attribute).expect("an accepted etag formats");
    prop_assert_eq!(formatted.to_str().expect("ascii"), etag);
    Ok(())
}

proptest! {
    #![proptest_config(config(4096))]

    /// Generated Orders and near-Orders (ids in any case or one edit away, etags of any kind,
    /// members of the wrong type, duplicate ids, filler nested to 3000 levels or 800 kB long,
    /// trailing bytes): the judge gives the model's answer; only the nesting limit may turn it
    /// into `NotJson`, and nothing accepted is anything but the order with its etag.
    #[test]
    fn judge_agrees_with_the_model(body in body()) {
        let text = body.render();
        let got = run(200, &json_headers(), text.as_bytes());
        let want = body.expected();
        if body.may_hit_depth_limit() && got == Err(NotStored::NotJson) {
            prop_assert!(want.is_err() || body.ignored_depth() >= 100, "{:?}", body);
        } else {
            prop_assert_eq!(&got, &want, "{:?}", body);
        }
        if let Ok(etag) = &got {
            accepted_body_is_the_order(text.as_bytes(), etag)?;
        }
    }

    /// The head decides first: status, then `Cache-Control: no-store`, then the content type;
    /// the body is judged only after all three allow it.
    #[test]
    fn judge_reads_the_head_first(
        body in body(),
        status in prop_oneof![4 => Just(200u16), 1 => 100u16..600],
        (content_type, json) in content_type(),
        (cache_control, no_store) in response_cache_control(),
    ) {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        if let Some(cc) = cache_control {
            h.insert(CACHE_CONTROL, HeaderValue::from_static(cc));
        }
        let text = body.render();
        let got = run(status, &h, text.as_bytes());
        match (status, no_store, json) {
            (s, _, _) if s != 200 => prop_assert_eq!(got, Err(NotStored::Status)),
            (_, true, _) => prop_assert_eq!(got, Err(NotStored::NoStore)),
            (_, _, false) => prop_assert_eq!(got, Err(NotStored::NotJson)),
            _ => prop_assert_eq!(got, run(200, &json_headers(), text.as_bytes())),
        }
    }

    /// Any bytes, and a valid Order with bytes replaced, inserted or cut off: no panic, and
    /// nothing accepted is anything but the order with its etag.
    #[test]
    fn judge_any_bytes(
        body in prop_oneof![
            any_bytes(256),
            (any::<prop::sample::Index>(), any_bytes(4), 0u8..3).prop_map(|(at, bytes, how)| {
                let mut b = format!(
                    r#"{{"id":"{}","attributes":{{"etag":"abc=","objectType":"Order"}}}}"#,
                    hyphenated(ORDER)
                )
                .into_bytes();
                let tail = b.split_off(at.index(b.len()));
                match how {
                    0 => {
                        b.extend(&bytes);
                        b.extend(tail.iter().skip(bytes.len()));
                    }
                    1 => {
                        b.extend(&bytes);
                        b.extend(tail);
                    }
                    _ => {}
                }
                b
            }),
        ],
    ) {
        if let Ok(etag) = run(200, &json_headers(), &body) {
            accepted_body_is_the_order(&body, &etag)?;
        }
    }
}

/// An Order in serde's sequence form (`[id, attributes]`, and `attributes` as `[etag]`) is
/// not an object with an `id` member (serde's derive reads a struct from one; the judge must not).
#[test]
fn judge_refuses_the_sequence_form() {
    let id = hyphenated(ORDER);
    for body in [
        format!(r#"["{id}", ["x"]]"#),
        format!(r#"["{id}", {{"etag": "x"}}]"#),
        format!(r#"{{"id": "{id}", "attributes": ["x"]}}"#),
    ] {
        assert!(
            run(200, &json_headers(), body.as_bytes()).is_err(),
            "{body}"
        );
    }
}

/// The extremes, once each: nesting a hundred thousand deep where the judge reads (an error,
/// not a stack overflow) and where it does not (ignored without recursion), and an 8 MB etag.
#[test]
fn judge_extremes() {
    let id = hyphenated(ORDER);
    let h = json_headers();
    let deep = nested(100_000);
    let in_etag = format!(r#"{{"id":"{id}","attributes":{{"etag":{deep}}}}}"#);
    assert_eq!(run(200, &h, in_etag.as_bytes()), Err(NotStored::NotJson));
    let in_id = format!(r#"{{"id":{deep},"attributes":{{"etag":"x"}}}}"#);
    assert_eq!(run(200, &h, in_id.as_bytes()), Err(NotStored::NotJson));
    let in_filler = format!(r#"{{"id":"{id}","x":{deep},"attributes":{{"etag":"x"}}}}"#);
    assert_eq!(run(200, &h, in_filler.as_bytes()), Ok("\"x\"".to_owned()));
    let whole = "[".repeat(100_000);
    assert_eq!(run(200, &h, whole.as_bytes()), Err(NotStored::NotJson));
    let long = "e".repeat(8 << 20);
    let big = format!(r#"{{"id":"{id}","attributes":{{"etag":"{long}"}}}}"#);
    assert_eq!(run(200, &h, big.as_bytes()), Ok(format!("\"{long}\"")));
}
