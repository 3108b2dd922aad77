//! The cache as the rest of the gateway sees it: look up, store, purge — whatever tiers sit
//! behind.
//!
//! The lookup, the fill, the write invalidation and the admin talk to [`Tiers`] only, never to
//! a tier directly. Today it holds one tier, the memory store (L1). Fleet mode (SPEC §12) adds
//! a shared tier (L2, Redis) behind the same methods: [`Tiers::get`] stays L1-only and
//! synchronous (the hit path never waits for Redis), a miss then asks L2 before the upstream,
//! [`Tiers::put`] writes L2 before L1 (write-through, before the answer goes out), and
//! [`Tiers::purge`] drops in L2 and tells the other replicas. New resources (SPEC §13) add
//! [`Purge`] words; callers do not change.

use std::sync::Arc;

use crate::cache::key::{CacheKey, Purge};
use crate::cache::policy::Policy;
use crate::cache::store::{Entry, Store};
use crate::ops::metrics::Metrics;

/// A purge generation: read before a fill asks the upstream, checked when it stores, so that
/// a fill that began before a write or a purge cannot put the old version back afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

/// What the cache holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Entries stored.
    pub entries: u64,
    /// Their weight against `cache.max_bytes` (body + key + header bytes).
    pub bytes: u64,
}

/// Every tier of the cache, behind one small interface.
pub struct Tiers {
    memory: Store,
}

impl Tiers {
    /// The tiers of this process: the memory store, bounded by `max_bytes` and keeping entries
    /// as long as `policy` can use them.
    pub fn new(max_bytes: u64, policy: &Policy, metrics: Arc<Metrics>) -> Tiers {
        Tiers {
            memory: Store::new(max_bytes, policy, metrics),
        }
    }

    /// The entry for `key`, whatever its age, from memory: answers without waiting, so a hit
    /// builds no future.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.memory.get(key)
    }

    /// The current purge generation, for a fill about to ask the upstream.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.memory.epoch())
    }

    /// Stores an entry in every tier, unless a purge happened since `epoch`. Returns whether
    /// it was stored.
    pub fn put(&self, key: CacheKey, entry: Arc<Entry>, epoch: Epoch) -> bool {
        self.memory.insert(key, entry, epoch.0)
    }

    /// Drops one key's entry from every tier, if it is still `entry` (a revalidation learned
    /// that it may no longer be served: a 401, 403 or 404).
    pub fn drop_entry(&self, key: &CacheKey, entry: &Entry) -> bool {
        self.memory.remove(key, entry.id)
    }

    /// Drops what `what` names from every tier; returns how many entries this process held.
    pub fn purge(&self, what: Purge) -> usize {
        let purged = self.memory.purge(what);
        tracing::debug!(purged, ?what, "cache purged");
        purged
    }

    /// Entries and bytes held in memory, current as of this call.
    pub fn usage(&self) -> Usage {
        let (entries, bytes) = self.memory.usage();
        Usage { entries, bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::front::route::{Guid, OrderRef};
    use bytes::Bytes;
    use http::{HeaderValue, StatusCode};
    use std::time::Instant;

    #[test]
    fn a_fill_that_began_before_a_purge_does_not_store_after_it() {
        let config = Config::defaults().expect("defaults");
        let tiers = Tiers::new(1 << 20, &Policy::new(&config.cache), Arc::default());
        let order = OrderRef {
            customer: Guid::parse("00000000-0000-0000-0000-0000000000c1").expect("c"),
            order: Guid::parse("00000000-0000-0000-0000-0000000000a1").expect("o"),
        };
        let maker = crate::cache::key::KeyMaker::new(crate::config::Partition::Shared);
        let headers = [(http::header::AUTHORIZATION, HeaderValue::from_static("t"))];
        let crate::cache::key::Keyed::Key(key) =
            maker.key(order, &headers.into_iter().collect(), None)
        else {
            panic!("a request with a credential has a key");
        };
        let entry = || {
            Arc::new(Entry::new(
                StatusCode::OK,
                Bytes::from_static(b"{}"),
                None,
                Some(HeaderValue::from_static("\"v\"")),
                Instant::now(),
            ))
        };
        let before = tiers.epoch();
        assert!(tiers.put(key.clone(), entry(), before));
        assert!(tiers.get(&key).is_some());
        assert_eq!(tiers.purge(Purge::Order(order)), 1);
        assert!(tiers.get(&key).is_none());
        assert!(!tiers.put(key.clone(), entry(), before));
        assert!(tiers.put(key.clone(), entry(), tiers.epoch()));
        assert_eq!(
            tiers.usage().entries,
            1,
            "one entry after a store with the current epoch"
        );
    }
}
