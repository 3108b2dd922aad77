//! What the memory tier holds, by item and by customer: the map a purge reads so that "every
//! entry of this item" (all partitions and locales), "every subscription of this customer" or
//! "everything of this customer" is dropped without scanning the cache (SPEC §4.4, §13).
//!
//! Each item maps to its variants (partition + locale) with the id of the entry stored for
//! each, and each customer to its items. Recording the id means a late eviction notice for an
//! entry that was since replaced cannot remove the newer entry's record. About 250 bytes per
//! entry; the store keeps it behind a mutex.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, HashSet};

use http::header::HeaderValue;

use crate::cache::key::{CacheKey, PartitionId};
use crate::guid::Guid;
use crate::resource::{ItemRef, Purge, Resource};

/// What tells apart the entries of one item.
type Variant = (Option<HeaderValue>, PartitionId);

/// foldhash: seeded per process (so callers cannot aim for collisions) and much cheaper than
/// SipHash on the 72-byte order keys, for the index and the cache alike.
pub type Hasher = foldhash::fast::RandomState;

/// Which keys the cache holds for each item and each customer: what a purge must drop.
#[derive(Default)]
pub struct Index {
    items: HashMap<ItemRef, Vec<(Variant, u64)>, Hasher>,
    customers: HashMap<Guid, HashSet<(Resource, Guid), Hasher>, Hasher>,
    /// Entries recorded per resource, kept as they come and go: a scrape reads it, never
    /// walks the index.
    counts: [u64; Resource::ALL.len()],
}

impl Index {
    pub fn record(&mut self, key: &CacheKey, id: u64) {
        let variant = (key.locale.clone(), key.partition);
        match self.items.entry(key.item) {
            // Most items have one variant: an exact-size vector (a first push would reserve 4).
            MapEntry::Vacant(slot) => {
                slot.insert(vec![(variant, id)]);
                self.counts[key.item.resource.index()] += 1;
            }
            MapEntry::Occupied(mut slot) => {
                let variants = slot.get_mut();
                match variants.iter_mut().find(|(v, _)| *v == variant) {
                    Some(found) => found.1 = id,
                    None => {
                        variants.push((variant, id));
                        self.counts[key.item.resource.index()] += 1;
                    }
                }
            }
        }
        self.customers
            .entry(key.item.customer)
            .or_default()
            .insert((key.item.resource, key.item.id));
    }

    /// Forgets a key if the recorded entry is `id`.
    pub fn forget(&mut self, key: &CacheKey, id: u64) {
        let Some(variants) = self.items.get_mut(&key.item) else {
            return;
        };
        let before = variants.len();
        variants.retain(|((locale, partition), recorded)| {
            !(*recorded == id && *locale == key.locale && *partition == key.partition)
        });
        let count = &mut self.counts[key.item.resource.index()];
        *count = count.saturating_sub((before - variants.len()) as u64);
        if variants.is_empty() {
            self.items.remove(&key.item);
            self.forget_item_of_customer(key.item);
        }
    }

    fn forget_item_of_customer(&mut self, item: ItemRef) {
        if let Some(items) = self.customers.get_mut(&item.customer) {
            items.remove(&(item.resource, item.id));
            if items.is_empty() {
                self.customers.remove(&item.customer);
            }
        }
    }

    /// The items a purge names.
    pub fn named(&self, what: Purge) -> Vec<ItemRef> {
        let of_customer = |customer: Guid, only: Option<Resource>| -> Vec<ItemRef> {
            let Some(items) = self.customers.get(&customer) else {
                return Vec::new();
            };
            items
                .iter()
                .filter(|(resource, _)| only.is_none_or(|r| r == *resource))
                .map(|&(resource, id)| ItemRef {
                    resource,
                    customer,
                    id,
                })
                .collect()
        };
        match what {
            Purge::One(item) => vec![item],
            Purge::EveryOf(resource, customer) => of_customer(customer, Some(resource)),
            Purge::Customer(customer) => of_customer(customer, None),
            Purge::All => self.items.keys().copied().collect(),
        }
    }

    /// Removes an item's record and returns its keys.
    pub fn take_item(&mut self, item: ItemRef) -> Vec<CacheKey> {
        let variants = self.items.remove(&item).unwrap_or_default();
        let count = &mut self.counts[item.resource.index()];
        *count = count.saturating_sub(variants.len() as u64);
        let keys = variants
            .into_iter()
            .map(|((locale, partition), _)| CacheKey {
                item,
                locale,
                partition,
            })
            .collect();
        self.forget_item_of_customer(item);
        keys
    }

    /// Entries held per resource (in [`Resource::ALL`] order): counters, not a walk.
    pub fn per_resource(&self) -> [u64; Resource::ALL.len()] {
        self.counts
    }
}
