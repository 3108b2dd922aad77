//! The cache key (SPEC §3.3), and whether a request may use the cache at all.
//!
//! A key is the item (resource, customer and id, lower-cased), the `X-Locale` value (absent is a value
//! of its own) and the partition. In `credential` mode the partition is the caller's
//! [`Fingerprint`] (a keyed hash): entries of two credentials can never meet, and the raw
//! credential is never stored in the cache, not even inside the key. The key is made from the
//! request as it goes upstream: a header that hop-by-hop stripping removes is not in it, so a
//! cached answer is always the answer to the request that keyed it.

use std::hash::{Hash, Hasher};

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use crate::config::Partition;
use crate::request::credential::{is_blank, Fingerprint};
use crate::resource::ItemRef;
use crate::upstream::forward;

/// Name of the locale header that selects the language of an answer.
pub static X_LOCALE: HeaderName = HeaderName::from_static("x-locale");

/// Who may see an entry: one credential's fingerprint, or everybody (`shared`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionId(Option<Fingerprint>);

impl std::fmt::Debug for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(fingerprint) => write!(f, "partition:{fingerprint:?}"),
            None => f.write_str("partition:shared"),
        }
    }
}

impl PartitionId {
    /// The partition's name in the shared tier's keys: the fingerprint's hex, or `shared`.
    pub fn label(&self) -> String {
        match &self.0 {
            Some(fingerprint) => fingerprint.to_hex(),
            None => "shared".to_owned(),
        }
    }
}

/// Identifies one cached answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub item: ItemRef,
    pub locale: Option<HeaderValue>,
    pub partition: PartitionId,
}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.item.hash(state);
        self.locale.as_ref().map(HeaderValue::as_bytes).hash(state);
        self.partition.hash(state);
    }
}

impl CacheKey {
    /// Bytes this key costs in the cache's byte bound.
    pub fn weight(&self) -> usize {
        32 + self.locale.as_ref().map_or(0, |l| l.len()) + 32
    }
}

/// What a request is to the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyed {
    /// Eligible: its key.
    Key(CacheKey),
    /// Not eligible (no or an empty `Authorization`, an `X-Locale` that is not a language
    /// tag): forwarded untouched, `X-Cache: BYPASS`.
    Bypass,
    /// Two `Authorization` fields: which one keys it and which ones go upstream would differ,
    /// so it is refused (`400 InvalidAuthorization`).
    TwoCredentials,
}

/// Builds keys in the configured partition mode.
pub struct KeyMaker {
    mode: Partition,
}

impl KeyMaker {
    /// A key maker for `cache.partition`.
    pub fn new(mode: Partition) -> KeyMaker {
        KeyMaker { mode }
    }

    /// Who a fill for this caller may be shared with, beyond its key (SPEC §4.2). In `shared`
    /// mode entries are shared but fills are not: a request waits only for a fill sent with
    /// its own credential, so no caller receives the 401, 403 or error another caller's
    /// credential drew. In `credential` mode the partition already says it.
    pub fn fill_scope(&self, caller: Option<Fingerprint>) -> Option<Fingerprint> {
        match self.mode {
            Partition::Shared => caller,
            Partition::Credential => None,
        }
    }

    /// Whether an upstream 404 may be remembered (SPEC §4.2): in `credential` mode only, since
    /// in `shared` mode a 404 may only mean that one caller lacks access.
    pub fn remembers_not_found(&self) -> bool {
        self.mode == Partition::Credential
    }

    /// What a cached resource's request is to the cache (SPEC §3.3). `caller` is the request's
    /// fingerprint (the front computes it for every cached route: the partition in
    /// `credential` mode, the fill scope in `shared` mode).
    pub fn key(&self, item: ItemRef, headers: &HeaderMap, caller: Option<Fingerprint>) -> Keyed {
        let mut credentials = headers.get_all(AUTHORIZATION).iter();
        let Some(credential) = credentials.next() else {
            return Keyed::Bypass;
        };
        if credentials.next().is_some() {
            return Keyed::TwoCredentials;
        }
        if is_blank(credential) || forward::is_stripped(headers, &AUTHORIZATION) {
            return Keyed::Bypass;
        }
        let locale = match headers.get(&X_LOCALE) {
            None => None,
            // Not sent upstream, so not part of what the answer depends on.
            Some(_) if forward::is_stripped(headers, &X_LOCALE) => None,
            // Copied: a value parsed by hyper would keep the client's read buffer alive.
            Some(locale) if is_language_tag(locale.as_bytes()) => Some(detach(locale)),
            // One variant (and one upstream fetch) per arbitrary value is not a cache.
            Some(_) => return Keyed::Bypass,
        };
        let partition = match (self.mode, caller) {
            (Partition::Shared, _) => PartitionId(None),
            (Partition::Credential, Some(caller)) => PartitionId(Some(caller)),
            // Fail closed: without a fingerprint there is no partition to serve from.
            (Partition::Credential, None) => return Keyed::Bypass,
        };
        Keyed::Key(CacheKey {
            item,
            locale,
            partition,
        })
    }
}

/// A language tag as `X-Locale` may carry it (SPEC §3.3): letters, digits and `-`, at most
/// 35 bytes, starting with a letter.
pub fn is_language_tag(value: &[u8]) -> bool {
    value.len() <= 35
        && value.first().is_some_and(u8::is_ascii_alphabetic)
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// A copy of a header value in its own small allocation. Values parsed by hyper share the
/// connection's whole read buffer; keeping one in a long-lived key or entry would keep that
/// buffer (kilobytes) alive with it. The usual Content-Types are not copied at all but shared
/// as static values.
pub fn detach(value: &HeaderValue) -> HeaderValue {
    const COMMON: [&str; 3] = [
        "application/json; charset=utf-8",
        "application/json",
        "application/json;charset=utf-8",
    ];
    COMMON
        .iter()
        .find(|c| c.as_bytes() == value.as_bytes())
        .map(|c| HeaderValue::from_static(c))
        .unwrap_or_else(|| {
            HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guid::Guid;
    use crate::request::credential::Fingerprinter;

    fn order() -> ItemRef {
        ItemRef {
            resource: crate::resource::Resource::Orders,
            customer: Guid::parse("3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f60").expect("c"),
            id: Guid::parse("d6595733-265f-4918-a62e-026e64bc8384").expect("o"),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    fn key_of(
        maker: &KeyMaker,
        hasher: &Fingerprinter,
        pairs: &[(&'static str, &'static str)],
    ) -> Option<CacheKey> {
        let headers = headers(pairs);
        match maker.key(order(), &headers, hasher.caller(&headers, None)) {
            Keyed::Key(key) => Some(key),
            Keyed::Bypass | Keyed::TwoCredentials => None,
        }
    }

    #[test]
    fn credential_mode_separates_tokens_and_hides_them() {
        let (maker, hasher) = (KeyMaker::new(Partition::Credential), Fingerprinter::new());
        let a = key_of(&maker, &hasher, &[("authorization", "Bearer a")]).expect("a");
        let a2 = key_of(&maker, &hasher, &[("authorization", "Bearer a")]).expect("a");
        let b = key_of(&maker, &hasher, &[("authorization", "Bearer b")]).expect("b");
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains("Bearer"));
        // Without the caller's fingerprint, no key: fail closed.
        assert_eq!(
            maker.key(order(), &headers(&[("authorization", "Bearer a")]), None),
            Keyed::Bypass
        );
    }

    #[test]
    fn the_key_is_made_from_the_request_as_sent_upstream() {
        let (maker, hasher) = (KeyMaker::new(Partition::Shared), Fingerprinter::new());
        let plain = key_of(&maker, &hasher, &[("authorization", "Bearer a")]).expect("key");
        // An X-Locale that Connection names is stripped before the upstream sees it.
        let stripped = key_of(
            &maker,
            &hasher,
            &[
                ("authorization", "Bearer a"),
                ("x-locale", "fr-FR"),
                ("connection", "x-locale"),
            ],
        );
        assert_eq!(stripped, Some(plain));
        // An Authorization that Connection names never reaches the upstream: no credential.
        let named = headers(&[
            ("authorization", "Bearer a"),
            ("connection", "Authorization"),
        ]);
        assert_eq!(maker.key(order(), &named, None), Keyed::Bypass);
    }

    #[test]
    fn odd_credentials_and_locales() {
        let (maker, hasher) = (KeyMaker::new(Partition::Credential), Fingerprinter::new());
        let mut two = headers(&[("authorization", "Bearer a")]);
        two.append("authorization", HeaderValue::from_static("Bearer b"));
        assert_eq!(
            maker.key(order(), &two, hasher.caller(&two, None)),
            Keyed::TwoCredentials
        );
        for blank in ["", "   "] {
            let h = headers(&[("authorization", blank)]);
            assert_eq!(
                maker.key(order(), &h, hasher.caller(&h, None)),
                Keyed::Bypass
            );
        }
        let long = "a".repeat(36);
        for (locale, keyed) in [
            ("fr-FR", true),
            ("zh-Hant-TW", true),
            ("x", true),
            ("", false),
            ("1fr", false),
            ("fr_FR", false),
            ("fr FR", false),
            ("-fr", false),
            (long.as_str(), false),
            (&long[..35], true),
        ] {
            let mut h = headers(&[("authorization", "Bearer a")]);
            h.insert("x-locale", HeaderValue::from_str(locale).expect("value"));
            let got = maker.key(order(), &h, hasher.caller(&h, None));
            assert_eq!(matches!(got, Keyed::Key(_)), keyed, "{locale:?}");
        }
    }

    #[test]
    fn shared_mode_and_locale_and_no_credential() {
        let (maker, hasher) = (KeyMaker::new(Partition::Shared), Fingerprinter::new());
        let a = key_of(&maker, &hasher, &[("authorization", "Bearer a")]).expect("a");
        let b = key_of(&maker, &hasher, &[("authorization", "Bearer b")]).expect("b");
        assert_eq!(a, b);
        let fr = key_of(
            &maker,
            &hasher,
            &[("authorization", "Bearer a"), ("x-locale", "fr-FR")],
        )
        .expect("fr");
        assert_ne!(a, fr);
        assert!(key_of(&maker, &hasher, &[]).is_none());
        assert!(key_of(&KeyMaker::new(Partition::Credential), &hasher, &[]).is_none());
    }
}
