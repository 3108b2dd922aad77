//! The cache as the rest of the gateway sees it: look up, store, purge — whatever tiers sit
//! behind.
//!
//! The lookup, the fill, the write invalidation and the admin talk to [`Tiers`] only, never to
//! a tier directly. It holds the memory store (L1) and, in fleet mode (SPEC §12), the fleet's
//! shared tier (L2, Redis): [`Tiers::get`] stays L1-only and synchronous (the hit path never
//! waits for Redis), a fill asks L2 ([`Tiers::get_shared`]) before the upstream,
//! [`Tiers::put`] writes both tiers before the answer goes out, and [`Tiers::purge`] drops in
//! both. New resources (SPEC §13) add [`Purge`] words; callers do not change.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::key::CacheKey;
use crate::cache::policy::Policy;
use crate::cache::shared::{Lease, SharedTier};
use crate::cache::store::{Entry, Store};
use crate::observe::metrics::Metrics;
use crate::outcome::L2Lookup;
use crate::resource::{Purge, Resource};

/// A purge generation: read before a fill asks the upstream, checked when it stores, so that
/// a fill that began before a write or a purge cannot put the old version back afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

/// What a fill read before it asked the upstream, and what its answer is stored under: the
/// purge epoch of memory, and in fleet mode the customer's generation in the shared tier
/// (`None`: not known, and then nothing is stored there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub epoch: Epoch,
    pub generation: Option<u64>,
}

/// How long a fleet lease is taken or renewed for at a time (SPEC §12.2): short, so that the
/// key's other waiters do not wait for a replica that died or lost Redis while filling.
pub const LEASE_HOLD: Duration = Duration::from_secs(3);

/// Renews a lease while it lives; stops renewing when dropped.
pub struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the cache holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Entries stored.
    pub entries: u64,
    /// Their weight against `cache.max_bytes` (body + key + header bytes).
    pub bytes: u64,
    /// Entries per resource, in [`Resource::ALL`] order.
    pub per_resource: [u64; Resource::ALL.len()],
}

/// Every tier of the cache, behind one small interface.
pub struct Tiers {
    memory: Store,
    shared: Option<SharedTier>,
}

impl Tiers {
    /// The tiers of this process: the memory store, bounded by `max_bytes` and keeping entries
    /// as long as `policy` can use them, and in fleet mode the fleet's shared tier.
    pub fn new(
        max_bytes: u64,
        policy: &Policy,
        metrics: Arc<Metrics>,
        shared: Option<SharedTier>,
    ) -> Tiers {
        Tiers {
            memory: Store::new(max_bytes, policy, metrics),
            shared,
        }
    }

    /// Whether a shared tier stands behind memory (fleet mode).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The entry for `key`, whatever its age, from memory: answers without waiting, so a hit
    /// builds no future and never touches Redis.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.memory.get(key)
    }

    /// The entry for `key` from the shared tier, copied into memory (unless a purge happened
    /// since `epoch`). Only after a memory miss, and only in fleet mode.
    pub async fn get_shared(&self, key: &CacheKey, epoch: Epoch) -> Option<Arc<Entry>> {
        let entry = Arc::new(self.shared.as_ref()?.get(key).await?);
        self.memory.insert(key.clone(), entry.clone(), epoch.0);
        Some(entry)
    }

    /// The fleet's lease on filling `key` for `scope` (SPEC §12.2); without a shared tier
    /// every replica fills alone.
    pub async fn take_lease(&self, key: &CacheKey, scope: &str, ttl: Duration) -> Lease {
        match &self.shared {
            Some(shared) => shared.take_lease(key, scope, ttl).await,
            None => Lease::Unavailable,
        }
    }

    /// Keeps this replica's lease on `key` alive while its fill runs (renewed every second,
    /// never past `bound`); the renewal stops when the returned guard is dropped. A replica that
    /// dies or loses Redis mid-fill so holds the key at most [`LEASE_HOLD`] longer.
    pub fn keep_lease(
        &self,
        key: &CacheKey,
        scope: &str,
        token: &str,
        bound: Duration,
    ) -> Option<LeaseKeeper> {
        let hold = LEASE_HOLD.min(bound);
        let renewal = self
            .shared
            .as_ref()?
            .keep_lease(key, scope, token, hold, bound);
        Some(LeaseKeeper(tokio::spawn(renewal)))
    }

    /// Waits until the replica holding the lease on `key` stored an entry that `usable`
    /// accepts (copied into memory, as any L2 entry: `Ok(Some)`), or gave the lease back
    /// without one, or `until` passed (`Ok(None)`), or Redis failed (`Err`: fill alone, and
    /// make no further Redis call).
    pub async fn wait_for_fill(
        &self,
        key: &CacheKey,
        scope: &str,
        epoch: Epoch,
        until: Instant,
        usable: impl Fn(&Entry) -> bool,
    ) -> Result<Option<Arc<Entry>>, ()> {
        let Some(shared) = self.shared.as_ref() else {
            return Ok(None);
        };
        // The lease is checked after the entry, so once it is gone the entry is looked at once
        // more: the holder may have stored and released between the two looks.
        let mut last_look = false;
        while Instant::now() < until {
            if !last_look {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let (looked, found) = shared.fetch(key).await;
            if let Some(entry) = found.filter(|e| usable(e)) {
                let entry = Arc::new(entry);
                self.memory.insert(key.clone(), entry.clone(), epoch.0);
                return Ok(Some(entry));
            }
            if looked == L2Lookup::Error {
                return Err(());
            }
            if last_look {
                return Ok(None);
            }
            match shared.lease_held(key, scope).await {
                Some(true) => {}
                Some(false) => last_look = true,
                // Redis failed: no further call (SPEC §12.5); fill alone.
                None => return Err(()),
            }
        }
        Ok(None)
    }

    /// Gives the fleet's lease on `key` back.
    pub async fn release_lease(&self, key: &CacheKey, scope: &str, token: &str) {
        if let Some(shared) = &self.shared {
            shared.release_lease(key, scope, token).await;
        }
    }

    /// The current purge generation of `key`'s customer, for a fill about to ask the upstream.
    pub fn epoch(&self, key: &CacheKey) -> Epoch {
        Epoch(self.memory.epoch(key.item.customer))
    }

    /// The customer generation of `key` in the shared tier, for a fill that holds no lease
    /// (the lease reads it too); `None` without a shared tier or when Redis did not say.
    pub async fn generation(&self, key: &CacheKey) -> Option<u64> {
        self.shared.as_ref()?.generation(key).await
    }

    /// Stores an entry in every tier — the shared one before this returns, so the answer that
    /// follows is already there for every replica — unless a purge happened since `stamp` was
    /// read (memory's epoch; the shared tier's generation, compared there atomically).
    /// Returns whether it was stored in memory.
    pub async fn put(&self, key: CacheKey, entry: Arc<Entry>, stamp: Stamp) -> bool {
        let epoch = stamp.epoch;
        if !self.memory.insert(key.clone(), entry.clone(), epoch.0) {
            return false;
        }
        if let (Some(shared), Some(generation)) = (&self.shared, stamp.generation) {
            shared.put(&key, &entry, generation).await;
            // A purge that ran while the entry went to Redis dropped L2 before it arrived:
            // take it back out, so the old version does not outlive the write.
            if self.memory.epoch(key.item.customer) != epoch.0 {
                shared.remove(&key).await;
                return false;
            }
        }
        true
    }

    /// Drops one key's entry from every tier, if memory still holds `entry` (a revalidation
    /// learned that it may no longer be served: a 401, 403 or 404).
    pub async fn drop_entry(&self, key: &CacheKey, entry: &Entry) -> bool {
        let dropped = self.memory.remove(key, entry.id);
        if let Some(shared) = &self.shared {
            shared.remove(key).await;
        }
        dropped
    }

    /// Drops what `what` names from this process's memory only (after a fleet outage, or as
    /// the first step of [`Tiers::purge`]). Synchronous: a large purge belongs on the blocking
    /// pool.
    pub fn purge_memory(&self, what: Purge) -> usize {
        let purged = self.memory.purge(what);
        tracing::debug!(purged, ?what, "memory tier purged");
        purged
    }

    /// Drops what `what` names from the shared tier; returns how many entries it held.
    pub async fn purge_shared(&self, what: Purge) -> usize {
        match &self.shared {
            Some(shared) => shared.purge(what).await,
            None => 0,
        }
    }

    /// Drops what `what` names from every tier; returns how many entries they held.
    pub async fn purge(&self, what: Purge) -> usize {
        self.purge_memory(what) + self.purge_shared(what).await
    }

    /// Entries and bytes held in memory, current as of this call.
    pub fn usage(&self) -> Usage {
        let (entries, bytes) = self.memory.usage();
        Usage {
            entries,
            bytes,
            per_resource: self.memory.per_resource(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::request::route::{Guid, ItemRef};
    use bytes::Bytes;
    use http::{HeaderValue, StatusCode};
    use std::time::Instant;

    #[tokio::test]
    async fn a_fill_that_began_before_a_purge_does_not_store_after_it() {
        let config = Config::defaults().expect("defaults");
        let tiers = Tiers::new(1 << 20, &Policy::new(&config.cache), Arc::default(), None);
        let order = ItemRef {
            resource: Resource::Orders,
            customer: Guid::parse("00000000-0000-0000-0000-0000000000c1").expect("c"),
            id: Guid::parse("00000000-0000-0000-0000-0000000000a1").expect("o"),
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
        let stamp = |epoch| Stamp {
            epoch,
            generation: None,
        };
        let before = stamp(tiers.epoch(&key));
        assert!(tiers.put(key.clone(), entry(), before).await);
        assert!(tiers.get(&key).is_some());
        assert_eq!(tiers.purge(Purge::One(order)).await, 1);
        assert!(tiers.get(&key).is_none());
        assert!(!tiers.put(key.clone(), entry(), before).await);
        assert!(
            tiers
                .put(key.clone(), entry(), stamp(tiers.epoch(&key)))
                .await
        );
        assert_eq!(
            tiers.usage().entries,
            1,
            "one entry after a store with the current epoch"
        );
    }
}
