//! The cache key (SPEC §3.3), and whether a request may use the cache at all.
//!
//! A key is the order (customer + order, lower-cased), the `X-Locale` value (absent is a value
//! of its own) and the partition. In `credential` mode the partition is the caller's
//! [`Fingerprint`] (a keyed hash): entries of two credentials can never meet, and the raw
//! credential is never stored in the cache, not even inside the key.

use std::hash::{Hash, Hasher};

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use crate::config::Partition;
use crate::front::credential::Fingerprint;
use crate::front::route::{Guid, OrderRef};

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

/// Identifies one cached answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub order: OrderRef,
    pub locale: Option<HeaderValue>,
    pub partition: PartitionId,
}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.order.hash(state);
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

/// A set of keys to drop (SPEC §4.4): every variant (partition, locale) of what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// One order.
    Order(OrderRef),
    /// Everything of one customer.
    Customer(Guid),
    /// Everything.
    All,
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

    /// Whether keys need the caller's fingerprint (so the front computes it).
    pub fn needs_fingerprint(&self) -> bool {
        self.mode == Partition::Credential
    }

    /// The key of an order-by-ID request, or `None` when it carries no `Authorization`
    /// (such requests are never cached nor served from cache, in either mode). `caller` is the
    /// request's fingerprint, computed by the front whenever [`KeyMaker::needs_fingerprint`].
    pub fn key(
        &self,
        order: OrderRef,
        headers: &HeaderMap,
        caller: Option<Fingerprint>,
    ) -> Option<CacheKey> {
        headers.get(AUTHORIZATION)?;
        let partition = match self.mode {
            Partition::Shared => PartitionId(None),
            // Fail closed: without a fingerprint there is no partition to serve from.
            Partition::Credential => PartitionId(Some(caller?)),
        };
        Some(CacheKey {
            order,
            // Copied: a value parsed by hyper would keep the client's read buffer alive.
            locale: headers.get(&X_LOCALE).map(detach),
            partition,
        })
    }
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
    use crate::front::credential::Fingerprinter;

    fn order() -> OrderRef {
        OrderRef {
            customer: Guid::parse("3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f60").expect("c"),
            order: Guid::parse("d6595733-265f-4918-a62e-026e64bc8384").expect("o"),
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
        maker.key(order(), &headers, hasher.caller(&headers, None))
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
        assert!(maker
            .key(order(), &headers(&[("authorization", "Bearer a")]), None)
            .is_none());
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
