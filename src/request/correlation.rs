//! Stage 1 — correlation IDs (SPEC §3.1).
//!
//! Partner Center traces a call by `MS-CorrelationId` and deduplicates retries by
//! `MS-RequestId`. The gateway keeps a client's IDs when they are GUIDs, mints new ones
//! otherwise, sends them upstream and puts them on every response it sends, including errors
//! and answers from cache (which must never replay the IDs of the request that filled them).

use http::header::{HeaderMap, HeaderName, HeaderValue};
use uuid::Uuid;

use crate::guid::Guid;

/// `MS-CorrelationId`: traces one call through every log it touches.
pub static CORRELATION_ID: HeaderName = HeaderName::from_static("ms-correlationid");
/// `MS-RequestId`: Partner Center's idempotency key.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("ms-requestid");

/// The two IDs of one request, ready to be written as header values.
#[derive(Debug, Clone)]
pub struct Correlation {
    pub correlation_id: HeaderValue,
    pub request_id: HeaderValue,
}

impl Correlation {
    /// Keeps the client's GUIDs, replaces anything else with a fresh UUID v4.
    pub fn from_request(headers: &HeaderMap) -> Correlation {
        Correlation {
            correlation_id: keep_or_mint(headers.get(&CORRELATION_ID)),
            request_id: keep_or_mint(headers.get(&REQUEST_ID)),
        }
    }

    /// Sets both IDs on a header map, replacing any value already there.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(CORRELATION_ID.clone(), self.correlation_id.clone());
        headers.insert(REQUEST_ID.clone(), self.request_id.clone());
    }

    /// The request's span (SPEC §9), which ties its log lines (and its fill's) to its IDs. It
    /// is made where the request first has something to log under it: a fill, a refresh, a
    /// forward, an error. A hit logs nothing but its access line, which carries the IDs as its
    /// own fields, so it never builds one: built eagerly, it measured 1.1–1.3 µs per hit at
    /// `info` (10–12 %) and changed no line of output.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "request",
            correlation_id = self.correlation_str(),
            request_id = self.request_str(),
        )
    }

    /// The correlation ID as text (it is always ASCII: a GUID).
    pub fn correlation_str(&self) -> &str {
        self.correlation_id.to_str().unwrap_or_default()
    }

    /// The request ID as text (it is always ASCII: a GUID).
    pub fn request_str(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }
}

fn keep_or_mint(value: Option<&HeaderValue>) -> HeaderValue {
    match value {
        Some(v) if is_guid(v.as_bytes()) => v.clone(),
        _ => mint(),
    }
}

fn mint() -> HeaderValue {
    let mut buf = Uuid::encode_buffer();
    let text = Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A GUID in the canonical hyphenated 8-4-4-4-12 form, any hex case; nothing else.
pub fn is_guid(s: &[u8]) -> bool {
    Guid::parse_bytes(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_forms() {
        assert!(is_guid(b"0e5fc923-8e3c-4560-9100-ce7283c3e081"));
        assert!(is_guid(b"0E5FC923-8E3C-4560-9100-CE7283C3E081"));
        assert!(!is_guid(b"{0e5fc923-8e3c-4560-9100-ce7283c3e081}"));
        assert!(!is_guid(b"0e5fc9238e3c45609100ce7283c3e081"));
        assert!(!is_guid(b"0e5fc923-8e3c-4560-9100-ce7283c3e08g"));
        assert!(!is_guid(b"0e5fc923-8e3c-4560-9100ce7283c3e0811"));
        assert!(!is_guid(b""));
    }

    #[test]
    fn keeps_guids_and_replaces_the_rest() {
        let mut h = HeaderMap::new();
        h.insert(
            &CORRELATION_ID,
            HeaderValue::from_static("8A53B025-D5BE-4D98-AB20-229D1813DE76"),
        );
        h.insert(&REQUEST_ID, HeaderValue::from_static("not-a-guid"));
        let c = Correlation::from_request(&h);
        assert_eq!(c.correlation_str(), "8A53B025-D5BE-4D98-AB20-229D1813DE76");
        assert_ne!(c.request_str(), "not-a-guid");
        assert!(is_guid(c.request_str().as_bytes()));
        let fresh = Correlation::from_request(&HeaderMap::new());
        assert!(is_guid(fresh.correlation_str().as_bytes()));
        assert_ne!(fresh.correlation_str(), fresh.request_str());
    }
}
