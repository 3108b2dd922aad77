//! The order cache's memory: one moka cache for the process, bounded by bytes, plus a small
//! secondary index so that "every entry of this order" and "every order of this customer" can
//! be dropped without scanning the cache (SPEC §4.4).
//!
//! The index maps each order to its variants (partition + locale) with the id of the entry
//! stored for each, and each customer to its orders. Recording the id means a late eviction
//! notice for an entry that was since replaced cannot remove the newer entry's record. It costs
//! one short mutex section per store and per eviction, never on a hit, and about 250 bytes per
//! entry. Purges also advance an epoch that in-flight fills check before storing, so a fill
//! that started before a PATCH cannot put the old version back afterwards.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::StatusCode;
use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::config::CacheConfig;
use crate::key::{CacheKey, PartitionId};
use crate::metrics::{Eviction, Metrics};
use crate::route::{Guid, OrderRef};

/// One stored answer: an order (200) or a remembered 404.
#[derive(Debug)]
pub struct Entry {
    /// Unique per stored value; ties index records to the value they describe.
    pub id: u64,
    pub status: StatusCode,
    /// The upstream's body bytes, unchanged.
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    /// The `ETag` header (orders only).
    pub etag: Option<HeaderValue>,
    /// When the entry was stored or last revalidated: the origin of `Age`.
    pub stored_at: Instant,
}

impl Entry {
    /// Bytes this entry costs in the byte bound (body + headers; the key is added by the store).
    pub fn weight(&self) -> usize {
        self.body.len()
            + self.content_type.as_ref().map_or(0, |v| v.len())
            + self.etag.as_ref().map_or(0, |v| v.len())
    }

    /// Time since stored or revalidated.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }

    /// Whether this is a remembered 404.
    pub fn is_negative(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
    }
}

/// What tells apart the entries of one order.
type Variant = (Option<HeaderValue>, PartitionId);

/// foldhash: seeded per process (so callers cannot aim for collisions) and much cheaper than
/// SipHash on the 72-byte order keys, for the index and the cache alike.
type Hasher = foldhash::fast::RandomState;

#[derive(Default)]
struct Index {
    orders: HashMap<OrderRef, Vec<(Variant, u64)>, Hasher>,
    customers: HashMap<Guid, HashSet<Guid, Hasher>, Hasher>,
}

impl Index {
    fn record(&mut self, key: &CacheKey, id: u64) {
        let variant = (key.locale.clone(), key.partition);
        match self.orders.entry(key.order) {
            // Most orders have one variant: an exact-size vector (a first push would reserve 4).
            MapEntry::Vacant(slot) => {
                slot.insert(vec![(variant, id)]);
            }
            MapEntry::Occupied(mut slot) => {
                let variants = slot.get_mut();
                match variants.iter_mut().find(|(v, _)| *v == variant) {
                    Some(found) => found.1 = id,
                    None => variants.push((variant, id)),
                }
            }
        }
        self.customers
            .entry(key.order.customer)
            .or_default()
            .insert(key.order.order);
    }

    /// Forgets a key if the recorded entry is `id`.
    fn forget(&mut self, key: &CacheKey, id: u64) {
        let Some(variants) = self.orders.get_mut(&key.order) else {
            return;
        };
        variants.retain(|((locale, partition), recorded)| {
            !(*recorded == id && *locale == key.locale && *partition == key.partition)
        });
        if variants.is_empty() {
            self.orders.remove(&key.order);
            self.forget_order_of_customer(key.order);
        }
    }

    fn forget_order_of_customer(&mut self, order: OrderRef) {
        if let Some(orders) = self.customers.get_mut(&order.customer) {
            orders.remove(&order.order);
            if orders.is_empty() {
                self.customers.remove(&order.customer);
            }
        }
    }

    /// Removes an order's record and returns its keys.
    fn take_order(&mut self, order: OrderRef) -> Vec<CacheKey> {
        let keys = self
            .orders
            .remove(&order)
            .unwrap_or_default()
            .into_iter()
            .map(|((locale, partition), _)| CacheKey {
                order,
                locale,
                partition,
            })
            .collect();
        self.forget_order_of_customer(order);
        keys
    }
}

/// The process's order cache.
pub struct Store {
    cache: Cache<CacheKey, Arc<Entry>, Hasher>,
    index: Arc<Mutex<Index>>,
    next_id: AtomicU64,
    epoch: AtomicU64,
}

fn lock(index: &Mutex<Index>) -> std::sync::MutexGuard<'_, Index> {
    // The index holds no invariant a panic could break halfway; keep going.
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// A store bounded by `cache.max_bytes`, keeping entries as long as any rule may use them.
    pub fn new(config: &CacheConfig, metrics: Arc<Metrics>) -> Store {
        let index: Arc<Mutex<Index>> = Arc::default();
        let listener_index = index.clone();
        let keep = (config.ttl + config.stale_while_revalidate.max(config.stale_if_error))
            .max(config.negative_ttl)
            .max(Duration::from_millis(1));
        let cache = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|key: &CacheKey, entry: &Arc<Entry>| {
                u32::try_from(key.weight() + entry.weight()).unwrap_or(u32::MAX)
            })
            .time_to_live(keep)
            .eviction_listener(move |key: Arc<CacheKey>, entry: Arc<Entry>, cause| {
                let cause = match cause {
                    RemovalCause::Replaced => return,
                    RemovalCause::Size => Eviction::Size,
                    RemovalCause::Expired => Eviction::Expired,
                    RemovalCause::Explicit => Eviction::Explicit,
                };
                metrics.eviction(cause);
                lock(&listener_index).forget(&key, entry.id);
            })
            .build_with_hasher(Hasher::default());
        Store {
            cache,
            index,
            next_id: AtomicU64::new(1),
            epoch: AtomicU64::new(0),
        }
    }

    /// A fresh entry id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The entry for a key, whatever its age. Synchronous, so that a hit is answered without
    /// building a future at all.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.cache.get(key)
    }

    /// The purge epoch: read before a fill, compared before storing its result.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores an entry unless a purge happened since `epoch` was read. Returns whether stored.
    pub fn insert(&self, key: CacheKey, entry: Arc<Entry>, epoch: u64) -> bool {
        {
            let mut index = lock(&self.index);
            if self.epoch() != epoch {
                return false;
            }
            index.record(&key, entry.id);
        }
        self.cache.insert(key, entry);
        true
    }

    /// Drops every entry of one order, in every partition and locale.
    pub fn purge_order(&self, order: OrderRef) -> usize {
        let keys = {
            let mut index = lock(&self.index);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            index.take_order(order)
        };
        self.remove_all(keys)
    }

    /// Drops every entry of one customer.
    pub fn purge_customer(&self, customer: Guid) -> usize {
        let keys: Vec<CacheKey> = {
            let mut index = lock(&self.index);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            let orders = index.customers.remove(&customer).unwrap_or_default();
            orders
                .into_iter()
                .flat_map(|order| index.take_order(OrderRef { customer, order }))
                .collect()
        };
        self.remove_all(keys)
    }

    /// Drops everything.
    pub fn purge_all(&self) -> usize {
        let keys: Vec<CacheKey> = {
            let mut index = lock(&self.index);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            let orders: Vec<OrderRef> = index.orders.keys().copied().collect();
            orders
                .into_iter()
                .flat_map(|order| index.take_order(order))
                .collect()
        };
        self.remove_all(keys)
    }

    fn remove_all(&self, keys: Vec<CacheKey>) -> usize {
        keys.iter()
            .filter(|key| self.cache.remove(*key).is_some())
            .count()
    }

    /// Entry count and weighted bytes, after moka's pending maintenance (so they are current).
    pub fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::key::{CredentialMemo, KeyMaker};
    use http::HeaderMap;

    fn order(c: &str, o: &str) -> OrderRef {
        OrderRef {
            customer: Guid::parse(c).expect("c"),
            order: Guid::parse(o).expect("o"),
        }
    }

    fn entry(store: &Store, body: &'static str) -> Arc<Entry> {
        Arc::new(Entry {
            id: store.next_id(),
            status: StatusCode::OK,
            body: Bytes::from_static(body.as_bytes()),
            content_type: None,
            etag: Some(HeaderValue::from_static("\"v\"")),
            stored_at: Instant::now(),
        })
    }

    fn key(maker: &KeyMaker, o: OrderRef, token: &'static str) -> CacheKey {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static(token));
        maker.key(o, &h, &CredentialMemo::default()).expect("key")
    }

    const C1: &str = "00000000-0000-0000-0000-0000000000c1";
    const C2: &str = "00000000-0000-0000-0000-0000000000c2";
    const O1: &str = "00000000-0000-0000-0000-0000000000a1";
    const O2: &str = "00000000-0000-0000-0000-0000000000a2";

    #[test]
    fn purges_by_order_customer_and_all_through_the_index() {
        let config = Config::defaults().expect("defaults");
        let store = Store::new(&config.cache, Arc::default());
        let maker = KeyMaker::new(config.cache.partition);
        let epoch = store.epoch();
        for (c, o) in [(C1, O1), (C1, O2), (C2, O1)] {
            for token in ["Bearer a", "Bearer b"] {
                let stored =
                    store.insert(key(&maker, order(c, o), token), entry(&store, "{}"), epoch);
                assert!(stored);
            }
        }
        assert_eq!(store.usage().0, 6);
        assert_eq!(store.purge_order(order(C1, O1)), 2);
        assert_eq!(store.purge_order(order(C1, O1)), 0);
        assert_eq!(store.purge_customer(Guid::parse(C1).expect("c")), 2);
        assert_eq!(store.purge_all(), 2);
        assert_eq!(store.usage().0, 0);
        // A fill that read the epoch before a purge does not store afterwards.
        let stale = store.insert(
            key(&maker, order(C1, O1), "Bearer a"),
            entry(&store, "{}"),
            epoch,
        );
        assert!(!stale);
    }

    #[test]
    fn replaced_entries_keep_their_index_record() {
        let config = Config::defaults().expect("defaults");
        let store = Store::new(&config.cache, Arc::default());
        let maker = KeyMaker::new(config.cache.partition);
        let k = key(&maker, order(C1, O1), "Bearer a");
        let epoch = store.epoch();
        assert!(store.insert(k.clone(), entry(&store, "{}"), epoch));
        assert!(store.insert(k.clone(), entry(&store, "{\"v\":2}"), epoch));
        store.usage();
        assert_eq!(store.purge_order(order(C1, O1)), 1);
    }
}
