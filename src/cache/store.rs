//! The memory tier (L1): one moka cache for the process, bounded by bytes, plus the
//! [`index`](crate::cache::index) of what it holds, so that a purge drops "every entry of this
//! item" or "of this customer" without scanning the cache (SPEC §4.4).
//!
//! The index costs one short mutex section per store and per eviction, never on a hit. Purges
//! also advance an epoch that in-flight fills check before storing, so a fill that started
//! before a PATCH cannot put the old version back afterwards — per slot of customers, so that
//! under steady write traffic a write stops only its own customer's fills from storing.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::StatusCode;
use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::cache::index::{Hasher, Index};
use crate::cache::key::CacheKey;
use crate::cache::policy::{Kind, Policy};
use crate::guid::Guid;
use crate::observe::metrics::Metrics;
use crate::outcome::Eviction;
use crate::resource::{Purge, Resource};

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
    /// Its body is not settled yet (SPEC §15.1): it lives `cache.unsettled_ttl`.
    pub unsettled: bool,
}

/// Source of entry ids: unique in the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Entry {
    /// An entry stored (or revalidated) `stored_at`, with a fresh id.
    pub fn new(
        status: StatusCode,
        body: Bytes,
        content_type: Option<HeaderValue>,
        etag: Option<HeaderValue>,
        stored_at: Instant,
    ) -> Entry {
        Entry {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            status,
            body,
            content_type,
            etag,
            stored_at,
            unsettled: false,
        }
    }

    /// The same entry, marked unsettled (or not).
    pub fn with_unsettled(mut self, unsettled: bool) -> Entry {
        self.unsettled = unsettled;
        self
    }

    /// The same answer, confirmed current at `now` (a new id: it is a new stored value).
    pub fn refreshed(&self, now: Instant) -> Entry {
        Entry::new(
            self.status,
            self.body.clone(),
            self.content_type.clone(),
            self.etag.clone(),
            now,
        )
        .with_unsettled(self.unsettled)
    }

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

    /// What freshness rules apply to it.
    pub fn kind(&self) -> Kind {
        if self.is_negative() {
            Kind::NotFound
        } else if self.unsettled {
            Kind::Unsettled
        } else {
            Kind::Resource
        }
    }
}

/// Customers share purge generations in this many slots.
const SLOTS: usize = 1024;

/// Purge generations: one for purges of everything, one per slot of customers (hashed). A
/// purge of a customer's items advances its slot's; a fill compares the sum of "everything"
/// and its customer's slot (both only grow, so the sum changes exactly when either does).
struct Epochs {
    all: AtomicU64,
    slots: Box<[AtomicU64]>,
}

impl Epochs {
    fn new() -> Epochs {
        Epochs {
            all: AtomicU64::new(0),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, customer: Guid) -> &AtomicU64 {
        // A fixed seed: a collision only costs a fill its store, nothing to aim for.
        let hash = foldhash::fast::FixedState::with_seed(0).hash_one(customer);
        &self.slots[(hash % SLOTS as u64) as usize]
    }

    fn read(&self, customer: Guid) -> u64 {
        let all = self.all.load(Ordering::Acquire);
        all.wrapping_add(self.slot(customer).load(Ordering::Acquire))
    }

    fn advance(&self, what: Purge) {
        let counter = match what {
            Purge::All => &self.all,
            Purge::One(item) => self.slot(item.customer),
            Purge::EveryOf(_, customer) | Purge::Customer(customer) => self.slot(customer),
        };
        counter.fetch_add(1, Ordering::AcqRel);
    }
}

/// The process's memory tier.
pub struct Store {
    cache: Cache<CacheKey, Arc<Entry>, Hasher>,
    index: Arc<Mutex<Index>>,
    epochs: Epochs,
    /// Stores hold it shared from the epoch check to the cache insert; purges hold it
    /// exclusively from the epoch bump to the last removal, so a store that checked the epoch
    /// before a purge is in the cache before the purge looks (and is dropped by it). The index
    /// mutex is never held with it across a cache call: moka's eviction listener takes it.
    gate: RwLock<()>,
}

fn lock(index: &Mutex<Index>) -> std::sync::MutexGuard<'_, Index> {
    // The index holds no invariant a panic could break halfway; keep going.
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// A store bounded by `max_bytes`, keeping entries as long as any rule may use them.
    pub fn new(max_bytes: u64, policy: &Policy, metrics: Arc<Metrics>) -> Store {
        let index: Arc<Mutex<Index>> = Arc::default();
        let listener_index = index.clone();
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &CacheKey, entry: &Arc<Entry>| {
                u32::try_from(key.weight() + entry.weight()).unwrap_or(u32::MAX)
            })
            .time_to_live(policy.longest_retention())
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
            epochs: Epochs::new(),
            gate: RwLock::new(()),
        }
    }

    /// The entry for a key, whatever its age. Synchronous, so that a hit is answered without
    /// building a future at all.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.cache.get(key)
    }

    /// The purge epoch of `customer`'s items: read before a fill, compared before storing
    /// its result.
    pub fn epoch(&self, customer: Guid) -> u64 {
        self.epochs.read(customer)
    }

    /// Stores an entry unless a purge happened since `epoch` was read. Returns whether stored.
    pub fn insert(&self, key: CacheKey, entry: Arc<Entry>, epoch: u64) -> bool {
        let _storing = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        {
            let mut index = lock(&self.index);
            if self.epoch(key.item.customer) != epoch {
                return false;
            }
            index.record(&key, entry.id);
        }
        self.cache.insert(key, entry);
        true
    }

    /// Drops one entry, if it is still the one with `id` (a newer one stays).
    pub fn remove(&self, key: &CacheKey, id: u64) -> bool {
        use moka::ops::compute::{CompResult, Op};
        let result = self
            .cache
            .entry_by_ref(key)
            .and_compute_with(|current| match current {
                Some(entry) if entry.value().id == id => Op::Remove,
                _ => Op::Nop,
            });
        matches!(result, CompResult::Removed(_))
    }

    /// Drops the entries a purge names, in every partition and locale; returns how many.
    pub fn purge(&self, what: Purge) -> usize {
        let _purging = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        let keys: Vec<CacheKey> = {
            let mut index = lock(&self.index);
            self.epochs.advance(what);
            let items = index.named(what);
            items
                .into_iter()
                .flat_map(|item| index.take_item(item))
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

    /// Entries held per resource, in [`Resource::ALL`] order (call after [`Store::usage`], which
    /// lets expired and evicted entries leave the index first).
    pub fn per_resource(&self) -> [u64; Resource::ALL.len()] {
        lock(&self.index).per_resource()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::KeyMaker;
    use crate::config::Config;
    use crate::guid::Guid;
    use crate::request::credential::Fingerprinter;
    use crate::resource::ItemRef;
    use http::HeaderMap;

    fn order(c: &str, o: &str) -> ItemRef {
        item(Resource::Orders, c, o)
    }

    fn item(resource: Resource, c: &str, id: &str) -> ItemRef {
        ItemRef {
            resource,
            customer: Guid::parse(c).expect("c"),
            id: Guid::parse(id).expect("id"),
        }
    }

    fn entry(body: &'static str) -> Arc<Entry> {
        Arc::new(Entry::new(
            StatusCode::OK,
            Bytes::from_static(body.as_bytes()),
            None,
            Some(HeaderValue::from_static("\"v\"")),
            Instant::now(),
        ))
    }

    fn key(maker: &KeyMaker, o: ItemRef, token: &'static str) -> CacheKey {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static(token));
        static HASHER: std::sync::OnceLock<Fingerprinter> = std::sync::OnceLock::new();
        let caller = HASHER.get_or_init(Fingerprinter::new).caller(&h, None);
        match maker.key(o, &h, caller) {
            crate::cache::key::Keyed::Key(key) => key,
            other => panic!("no key: {other:?}"),
        }
    }

    fn store() -> (Store, KeyMaker) {
        let config = Config::defaults().expect("defaults");
        let store = Store::new(
            config.cache.max_bytes,
            &Policy::new(&config.cache),
            Arc::default(),
        );
        (store, KeyMaker::new(config.cache.partition))
    }

    const C1: &str = "00000000-0000-0000-0000-0000000000c1";
    const C2: &str = "00000000-0000-0000-0000-0000000000c2";
    const O1: &str = "00000000-0000-0000-0000-0000000000a1";
    const O2: &str = "00000000-0000-0000-0000-0000000000a2";

    #[test]
    fn purges_by_order_customer_and_all_through_the_index() {
        let (store, maker) = store();
        let epoch = store.epoch(Guid::parse(C1).expect("c"));
        for (c, o) in [(C1, O1), (C1, O2), (C2, O1)] {
            for token in ["Bearer a", "Bearer b"] {
                let stored = store.insert(key(&maker, order(c, o), token), entry("{}"), epoch);
                assert!(stored);
            }
        }
        assert_eq!(store.usage().0, 6);
        assert_eq!(store.purge(Purge::One(order(C1, O1))), 2);
        assert_eq!(store.purge(Purge::One(order(C1, O1))), 0);
        assert_eq!(store.purge(Purge::Customer(Guid::parse(C1).expect("c"))), 2);
        assert_eq!(store.purge(Purge::All), 2);
        assert_eq!(store.usage().0, 0);
        // A fill that read the epoch before a purge does not store afterwards.
        let stale = store.insert(key(&maker, order(C1, O1), "Bearer a"), entry("{}"), epoch);
        assert!(!stale);
    }

    #[test]
    fn purges_by_resource_of_a_customer_leave_the_other_resources() {
        let (store, maker) = store();
        let epoch = store.epoch(Guid::parse(C1).expect("c"));
        let items = [
            order(C1, O1),
            item(Resource::Subscriptions, C1, O1),
            item(Resource::Subscriptions, C1, O2),
            item(Resource::Customers, C1, C1),
            item(Resource::Subscriptions, C2, O1),
        ];
        for i in items {
            assert!(store.insert(key(&maker, i, "Bearer a"), entry("{}"), epoch));
        }
        store.usage();
        assert_eq!(store.per_resource(), [1, 3, 1]);
        let c1 = Guid::parse(C1).expect("c");
        assert_eq!(store.purge(Purge::EveryOf(Resource::Subscriptions, c1)), 2);
        assert_eq!(store.per_resource(), [1, 1, 1]);
        assert_eq!(
            store.purge(Purge::Customer(c1)),
            2,
            "the order and the customer"
        );
        assert_eq!(store.per_resource(), [0, 1, 0]);
    }

    #[test]
    fn a_purge_stops_only_its_own_customers_fills_from_storing() {
        let (store, maker) = store();
        let (c1, c2) = (Guid::parse(C1).expect("c1"), Guid::parse(C2).expect("c2"));
        let (before1, before2) = (store.epoch(c1), store.epoch(c2));
        assert_eq!(store.purge(Purge::Customer(c2)), 0);
        // C1's fill stores; C2's (begun before C2's purge) does not.
        assert!(store.insert(key(&maker, order(C1, O1), "Bearer a"), entry("{}"), before1));
        assert!(!store.insert(key(&maker, order(C2, O1), "Bearer a"), entry("{}"), before2));
        // A purge of everything stops every fill begun before it.
        let before = store.epoch(c1);
        assert_eq!(store.purge(Purge::All), 1);
        assert!(!store.insert(key(&maker, order(C1, O2), "Bearer a"), entry("{}"), before));
    }

    #[test]
    fn replaced_entries_keep_their_index_record() {
        let (store, maker) = store();
        let k = key(&maker, order(C1, O1), "Bearer a");
        let epoch = store.epoch(Guid::parse(C1).expect("c"));
        assert!(store.insert(k.clone(), entry("{}"), epoch));
        assert!(store.insert(k.clone(), entry("{\"v\":2}"), epoch));
        store.usage();
        assert_eq!(store.purge(Purge::One(order(C1, O1))), 1);
    }
}
