//! Stage 3 — the cache key (SPEC §3.3), and whether a request may use the cache at all.
//!
//! A key is the order (customer + order, lower-cased), the `X-Locale` value (absent is a value
//! of its own) and the partition. In `credential` mode the partition is a keyed BLAKE3 hash of
//! the `Authorization` value under a random per-process key: entries of two credentials can
//! never meet, and the raw credential is never stored in the cache, not even inside the key.
//! The one copy kept is a connection's last credential, in that connection's [`CredentialMemo`],
//! for as long as the connection is open.

use std::cell::Cell;
use std::hash::{Hash, Hasher};

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use crate::config::Partition;
use crate::route::OrderRef;

/// Name of the locale header that selects the language of an answer.
pub static X_LOCALE: HeaderName = HeaderName::from_static("x-locale");

/// Who may see an entry: a credential's fingerprint, or everybody (`shared`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionId(Option<[u8; 32]>);

impl std::fmt::Debug for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            // A prefix of the keyed hash is enough to tell partitions apart in a debug print.
            Some(h) => write!(
                f,
                "partition:{:02x}{:02x}{:02x}{:02x}…",
                h[0], h[1], h[2], h[3]
            ),
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

/// The last credential seen on one client connection, with its fingerprint. A keep-alive
/// connection nearly always carries one credential, and hashing it (a Partner Center bearer
/// token is a 1–2 KB JWT) costs more than the rest of a hit, where comparing it costs little.
/// One per connection: a client's credential is only ever compared with its own.
#[derive(Default)]
pub struct CredentialMemo(Cell<Option<(HeaderValue, [u8; 32])>>);

impl CredentialMemo {
    /// [`KeyMaker::fingerprint`], taken from the memo when the connection's previous request
    /// carried the same credential.
    pub fn fingerprint(&self, keys: &KeyMaker, authorization: &HeaderValue) -> [u8; 32] {
        match self.0.take() {
            Some((value, fingerprint)) if value == authorization => {
                self.0.set(Some((value, fingerprint)));
                fingerprint
            }
            _ => {
                let fingerprint = keys.fingerprint(authorization);
                // Copied: a value parsed by hyper would keep the connection's read buffer alive.
                if let Ok(value) = HeaderValue::from_bytes(authorization.as_bytes()) {
                    self.0.set(Some((value, fingerprint)));
                }
                fingerprint
            }
        }
    }
}

/// Builds keys; holds the per-process secret of the credential hash.
pub struct KeyMaker {
    mode: Partition,
    secret: [u8; 32],
}

impl KeyMaker {
    /// A key maker with a fresh random secret.
    pub fn new(mode: Partition) -> KeyMaker {
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        KeyMaker { mode, secret }
    }

    /// A credential's keyed hash: stable within this process, meaningless outside it.
    pub fn fingerprint(&self, authorization: &HeaderValue) -> [u8; 32] {
        *blake3::keyed_hash(&self.secret, authorization.as_bytes()).as_bytes()
    }

    /// The partition a credential belongs to.
    pub fn partition(&self, authorization: &HeaderValue, memo: &CredentialMemo) -> PartitionId {
        match self.mode {
            Partition::Shared => PartitionId(None),
            Partition::Credential => PartitionId(Some(memo.fingerprint(self, authorization))),
        }
    }

    /// The key of an order-by-ID request, or `None` when it carries no `Authorization`
    /// (such requests are never cached nor served from cache, in either mode).
    pub fn key(
        &self,
        order: OrderRef,
        headers: &HeaderMap,
        memo: &CredentialMemo,
    ) -> Option<CacheKey> {
        let authorization = headers.get(AUTHORIZATION)?;
        Some(CacheKey {
            order,
            // Copied: a value parsed by hyper would keep the client's read buffer alive.
            locale: headers.get(&X_LOCALE).map(crate::fill::detach),
            partition: self.partition(authorization, memo),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Guid;

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

    fn key_of(maker: &KeyMaker, pairs: &[(&'static str, &'static str)]) -> Option<CacheKey> {
        maker.key(order(), &headers(pairs), &CredentialMemo::default())
    }

    #[test]
    fn credential_mode_separates_tokens_and_hides_them() {
        let maker = KeyMaker::new(Partition::Credential);
        let a = key_of(&maker, &[("authorization", "Bearer a")]).expect("a");
        let a2 = key_of(&maker, &[("authorization", "Bearer a")]).expect("a");
        let b = key_of(&maker, &[("authorization", "Bearer b")]).expect("b");
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains("Bearer"));
        // Another process (another secret) hashes the same token differently.
        let other = KeyMaker::new(Partition::Credential);
        let a3 = key_of(&other, &[("authorization", "Bearer a")]).expect("a");
        assert_ne!(a.partition, a3.partition);
    }

    #[test]
    fn a_connection_memo_never_answers_for_another_credential() {
        let maker = KeyMaker::new(Partition::Credential);
        let memo = CredentialMemo::default();
        let key = |token| {
            maker
                .key(order(), &headers(&[("authorization", token)]), &memo)
                .expect("key")
        };
        let (a, b, a_again) = (key("Bearer a"), key("Bearer b"), key("Bearer a"));
        assert_ne!(a.partition, b.partition);
        assert_eq!(a.partition, a_again.partition);
        assert_eq!(
            a.partition,
            key_of(&maker, &[("authorization", "Bearer a")])
                .expect("a")
                .partition
        );
    }

    #[test]
    fn shared_mode_and_locale_and_no_credential() {
        let maker = KeyMaker::new(Partition::Shared);
        let a = key_of(&maker, &[("authorization", "Bearer a")]).expect("a");
        let b = key_of(&maker, &[("authorization", "Bearer b")]).expect("b");
        assert_eq!(a, b);
        let fr = key_of(
            &maker,
            &[("authorization", "Bearer a"), ("x-locale", "fr-FR")],
        )
        .expect("fr");
        assert_ne!(a, fr);
        assert!(key_of(&maker, &[]).is_none());
        assert!(key_of(&KeyMaker::new(Partition::Credential), &[]).is_none());
    }
}
