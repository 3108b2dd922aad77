//! Whether an upstream answer to an order-by-ID request may be stored (SPEC §4.2), as one pure
//! function. Its "why not" is [`NotStored`], which logs and metrics share. Size is not judged
//! here: the fill stops reading a body past the entry limit and streams it instead.

use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::outcome::NotStored;
use crate::request::conditional::{format_etag, response_forbids_store};
use crate::request::route::Guid;

/// What a storable order response brings besides its body.
#[derive(Debug, Clone)]
pub struct Storable {
    /// The `ETag` header value built from `attributes.etag`; two bodies with the same
    /// `attributes.etag` have equal values (how a refetch revalidates an entry).
    pub etag: HeaderValue,
    /// The body's top-level `status` is one of `cache.unsettled_statuses` (SPEC §15.1).
    pub unsettled: bool,
}

/// The fields of an Order this gateway reads; everything else is ignored unparsed. serde's
/// derive would also read a struct from an array of its fields in order, which no Order is:
/// `judge` admits a top-level object only, and [`AttributesProbe`] reads objects only.
#[derive(Deserialize)]
struct OrderProbe<'a> {
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    attributes: Option<AttributesProbe>,
    /// Read in the same pass (SPEC §15.1); any JSON value (only a string can be unsettled).
    status: Option<serde_json::Value>,
}

/// `attributes.etag`, read from a JSON object only; other members are skipped unparsed.
struct AttributesProbe {
    etag: Option<serde_json::Value>,
}

impl<'de> Deserialize<'de> for AttributesProbe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = AttributesProbe;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an attributes object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributesProbe, A::Error> {
                let mut etag = None;
                while let Some(IsEtag(is_etag)) = map.next_key()? {
                    if !is_etag {
                        map.next_value::<IgnoredAny>()?;
                    } else if etag.is_some() {
                        return Err(serde::de::Error::duplicate_field("etag"));
                    } else {
                        etag = Some(map.next_value()?);
                    }
                }
                Ok(AttributesProbe { etag })
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// A member name, read only as far as "is it `etag`" (no allocation).
struct IsEtag(bool);

impl<'de> Deserialize<'de> for IsEtag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = IsEtag;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<IsEtag, E> {
                Ok(IsEtag(name == "etag"))
            }
        }
        deserializer.deserialize_identifier(Name)
    }
}

/// Judges a complete upstream response (a body within the entry limit); `unsettled` lists the
/// lower-cased `status` values that make a body unsettled.
pub fn judge(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    order: &Guid,
    unsettled: &[String],
) -> Result<Storable, NotStored> {
    if status != StatusCode::OK {
        return Err(NotStored::Status);
    }
    if response_forbids_store(headers) {
        return Err(NotStored::NoStore);
    }
    if !is_json_content_type(headers) {
        return Err(NotStored::NotJson);
    }
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(NotStored::NotJson);
    }
    let probe: OrderProbe = serde_json::from_slice(body).map_err(|_| NotStored::NotJson)?;
    match probe.id {
        Some(id) if Guid::parse(&id) == Some(*order) => {}
        _ => return Err(NotStored::IdMismatch),
    }
    let etag = probe.attributes.and_then(|attributes| attributes.etag);
    let version = match etag {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s,
        _ => return Err(NotStored::NoEtag),
    };
    let etag = format_etag(&version).ok_or(NotStored::NoEtag)?;
    let unsettled = match &probe.status {
        Some(serde_json::Value::String(word)) => unsettled
            .iter()
            .any(|listed| listed.eq_ignore_ascii_case(word)),
        _ => false,
    };
    Ok(Storable { etag, unsettled })
}

/// `application/json`, `…+json`, or no Content-Type at all (then the body must still parse).
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let essence = text.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: &str = "d6595733-265f-4918-a62e-026e64bc8384";

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h
    }

    fn check(status: u16, headers: &HeaderMap, body: &str) -> Result<String, NotStored> {
        let order = Guid::parse(O).expect("guid");
        judge(
            StatusCode::from_u16(status).expect("status"),
            headers,
            body.as_bytes(),
            &order,
            &[],
        )
        .map(|s| s.etag.to_str().expect("ascii").to_owned())
    }

    #[test]
    fn the_status_says_whether_a_body_is_settled() {
        let order = Guid::parse(O).expect("guid");
        let unsettled = ["pending".to_owned(), "unknown".to_owned()];
        let body = |status: &str| {
            format!(r#"{{"id":"{O}","status":{status},"attributes":{{"etag":"e"}}}}"#)
        };
        for (status, want) in [
            (r#""pending""#, true),
            (r#""Pending""#, true),
            (r#""UNKNOWN""#, true),
            (r#""completed""#, false),
            (r#""pending ""#, false),
            ("5", false),
            ("null", false),
            (r#"{"pending":1}"#, false),
        ] {
            let storable = judge(
                StatusCode::OK,
                &json_headers(),
                body(status).as_bytes(),
                &order,
                &unsettled,
            )
            .expect("storable");
            assert_eq!(storable.unsettled, want, "{status}");
        }
        // No status at all: settled; an empty list: nothing is unsettled.
        let plain = format!(r#"{{"id":"{O}","attributes":{{"etag":"e"}}}}"#);
        let storable = judge(
            StatusCode::OK,
            &json_headers(),
            plain.as_bytes(),
            &order,
            &unsettled,
        );
        assert!(!storable.expect("storable").unsettled);
        let pending = body(r#""pending""#);
        let storable = judge(
            StatusCode::OK,
            &json_headers(),
            pending.as_bytes(),
            &order,
            &[],
        );
        assert!(!storable.expect("storable").unsettled);
    }

    #[test]
    fn rules() {
        let good = format!(
            r#"{{"id":"{}","attributes":{{"etag":"abc=","objectType":"Order"}}}}"#,
            O.to_uppercase()
        );
        let h = json_headers();
        assert_eq!(check(200, &h, &good), Ok("\"abc=\"".to_owned()));
        assert_eq!(check(404, &h, &good), Err(NotStored::Status));
        assert_eq!(check(201, &h, &good), Err(NotStored::Status));
        assert_eq!(check(200, &h, "<html>"), Err(NotStored::NotJson));
        let mut html = HeaderMap::new();
        html.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        assert_eq!(check(200, &html, &good), Err(NotStored::NotJson));
        let mut vendor = HeaderMap::new();
        vendor.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.ms+json"),
        );
        assert!(check(200, &vendor, &good).is_ok());
        assert!(check(200, &HeaderMap::new(), &good).is_ok());
        let other = r#"{"id":"00000000-0000-0000-0000-000000000000","attributes":{"etag":"x"}}"#;
        assert_eq!(check(200, &h, other), Err(NotStored::IdMismatch));
        let no_id = r#"{"attributes":{"etag":"x"}}"#;
        assert_eq!(check(200, &h, no_id), Err(NotStored::IdMismatch));
        for body in [
            format!(r#"{{"id":"{O}"}}"#),
            format!(r#"{{"id":"{O}","attributes":{{}}}}"#),
            format!(r#"{{"id":"{O}","attributes":{{"etag":""}}}}"#),
            format!(r#"{{"id":"{O}","attributes":{{"etag":7}}}}"#),
            format!(r#"{{"id":"{O}","attributes":{{"etag":"bad\"tag"}}}}"#),
        ] {
            assert_eq!(check(200, &h, &body), Err(NotStored::NoEtag), "{body}");
        }
        let mut no_store = json_headers();
        no_store.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        assert_eq!(check(200, &no_store, &good), Err(NotStored::NoStore));
        assert_eq!(check(200, &h, "[1,2]"), Err(NotStored::NotJson));
        // Found by the property tests: serde reads a struct from an array of its fields.
        let array = format!(r#" ["{O}", {{"etag":"x"}}]"#);
        assert_eq!(check(200, &h, &array), Err(NotStored::NotJson));
        let attributes_array = format!(r#"{{"id":"{O}","attributes":["x"]}}"#);
        assert_eq!(check(200, &h, &attributes_array), Err(NotStored::NotJson));
    }
}
