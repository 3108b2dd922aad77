//! The shared tier (L2, SPEC §12.1): the fleet's entries in Redis, so that what one replica
//! fetched every replica can answer.
//!
//! An entry holds what L1 holds — body bytes, content type, etag, status and its stored time
//! (wall clock, so `Age` and freshness agree on every replica) — under a key made of the item
//! (resource and id), the locale and the partition (the keyed credential hash, never a
//! credential). It expires when the same entry would leave L1. Each customer's keys share one
//! Cluster slot (hash tag `{name:customer}`), with an index per item and per customer, so a
//! purge of an item, of a customer's subscriptions or of a customer is one script in one slot;
//! a fleet-wide set of customers serves "purge all".
//! Every call is bounded by `fleet.timeout` through the [`Link`]; a failure is a miss.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::key::CacheKey;
use crate::cache::policy::Policy;
use crate::cache::store::Entry;
use crate::cache::stored::{decode, encode};
use crate::fleet::link::{Link, Query};
use crate::observe::metrics::Metrics;
use crate::outcome::L2Lookup;
use crate::resource::Purge;

/// Stores an entry and records it in its item's and customer's indexes, all with expiries —
/// unless the customer's generation (KEYS[4]) is no longer the one the fill read before it asked
/// the upstream (ARGV[3]): an invalidation came since, and the older body must not return.
const PUT: &str = r"
if (tonumber(redis.call('GET', KEYS[4])) or 0) ~= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 2, 3 do
  redis.call('SADD', KEYS[i], i == 2 and KEYS[1] or KEYS[2])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return 1
";

/// Advances the customer's generation (KEYS[2], kept ARGV[2] ms), so that no fill that read it
/// before stores afterwards; then drops the entries of the items whose indexes are given
/// (KEYS[3..]) and unlinks them from the customer's index (KEYS[1]); with none given, every
/// item of the customer whose index name starts with ARGV[1] (empty: all of them).
const PURGE: &str = r"
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local items = {}
for i = 3, #KEYS do items[#items + 1] = KEYS[i] end
if #items == 0 then
  for _, item in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if string.sub(item, 1, #ARGV[1]) == ARGV[1] then items[#items + 1] = item end
  end
end
local dropped = 0
for _, item in ipairs(items) do
  for _, entry in ipairs(redis.call('SMEMBERS', item)) do
    dropped = dropped + redis.call('DEL', entry)
  end
  redis.call('DEL', item)
  redis.call('SREM', KEYS[1], item)
end
if #KEYS == 2 and ARGV[1] == '' then redis.call('DEL', KEYS[1]) end
return dropped
";

/// Takes a fill's lease (KEYS[1]) if it is free, and reads the customer's generation (KEYS[2])
/// in the same step: the generation the fill's answer will be stored under.
const TAKE: &str = r"
local taken = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return {taken and 1 or 0, tonumber(redis.call('GET', KEYS[2])) or 0}
";

/// Deletes a lease only if it is still the caller's (its token), so a lease that expired and
/// was taken by another replica is never released by the first.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Extends a lease only if it is still the caller's (its token).
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// Whether this replica may fill a key for the fleet (SPEC §12.2).
#[derive(Debug)]
pub enum Lease {
    /// Taken: this replica asks the upstream, then releases it with this token; what it
    /// stores is stored under this customer generation.
    Held(String, u64),
    /// Another replica is filling the key: wait for what it stores.
    Busy,
    /// Redis did not answer: fill alone.
    Unavailable,
}

/// The fleet's shared tier.
pub struct SharedTier {
    link: Arc<Link>,
    name: String,
    policy: Policy,
    metrics: Arc<Metrics>,
    put: redis::Script,
    take: redis::Script,
    purge: redis::Script,
    release: redis::Script,
    renew: redis::Script,
}

impl SharedTier {
    /// The shared tier of the fleet `name`, keeping entries as long as `policy` can use them.
    pub fn new(link: Arc<Link>, name: &str, policy: Policy, metrics: Arc<Metrics>) -> SharedTier {
        SharedTier {
            link,
            name: name.to_owned(),
            policy,
            metrics,
            put: redis::Script::new(PUT),
            take: redis::Script::new(TAKE),
            purge: redis::Script::new(PURGE),
            release: redis::Script::new(RELEASE),
            renew: redis::Script::new(RENEW),
        }
    }

    /// The entry for `key`, if the fleet holds one (counted as an L2 lookup); a Redis failure
    /// counts as a miss.
    pub async fn get(&self, key: &CacheKey) -> Option<Entry> {
        let (result, entry) = self.fetch(key).await;
        self.metrics.l2_lookup(result);
        entry
    }

    /// [`SharedTier::get`] without counting it (a waiter polling for a fill).
    pub async fn fetch(&self, key: &CacheKey) -> (L2Lookup, Option<Entry>) {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.entry_key(key));
        match self.link.run::<Option<Vec<u8>>>(Query::Cmd(&cmd)).await {
            Ok(Some(bytes)) => match decode(&bytes) {
                Some(entry) => (L2Lookup::Hit, Some(entry)),
                None => (L2Lookup::Miss, None),
            },
            Ok(None) => (L2Lookup::Miss, None),
            Err(e) => {
                tracing::debug!(error = %e, "shared tier lookup failed");
                (L2Lookup::Error, None)
            }
        }
    }

    /// The customer generation of `key`: read before a fill asks the upstream (when it holds
    /// no lease, which reads it too), compared when it stores. `None` when Redis did not say.
    pub async fn generation(&self, key: &CacheKey) -> Option<u64> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.generation_key(&key.item.customer.to_string()));
        let read = self.link.run::<Option<u64>>(Query::Cmd(&cmd)).await;
        read.ok().map(Option::unwrap_or_default)
    }

    /// Stores `entry` for as long as L1 would keep it from now — if the customer's generation
    /// is still `generation` (SPEC §12.3: no fill sent upstream before an invalidation stores
    /// after it). Returns whether it was stored.
    pub async fn put(&self, key: &CacheKey, entry: &Entry, generation: u64) -> bool {
        let age = entry.age(Instant::now());
        let left = self.policy.retention(entry.kind()).saturating_sub(age);
        if left < Duration::from_millis(1) {
            return false;
        }
        let customer = key.item.customer.to_string();
        let mut invocation = self.put.prepare_invoke();
        invocation
            .key(self.entry_key(key))
            .key(self.item_key(key))
            .key(self.customer_key(&customer))
            .key(self.generation_key(&customer))
            .arg(encode(entry, age).as_ref())
            .arg(left.as_millis() as u64)
            .arg(generation);
        match self.link.run::<i64>(Query::Script(&invocation)).await {
            Ok(1) => {}
            Ok(_) => return false,
            Err(e) => {
                tracing::debug!(error = %e, "shared tier store failed");
                return false;
            }
        }
        // The fleet's list of customers (for "purge all"): one atomic round trip with its
        // expiry, off the answer's path.
        let mut known = redis::pipe();
        known
            .atomic()
            .sadd(self.customers_key(), key.item.customer.to_string())
            .ignore()
            .pexpire(
                self.customers_key(),
                self.policy.longest_retention().as_millis() as i64,
            )
            .ignore();
        let link = self.link.clone();
        tokio::spawn(async move {
            let _ = link.run::<()>(Query::Pipe(&known)).await;
        });
        true
    }

    /// Takes the fleet's lease on filling `key` (for one credential, `scope`, in `shared` mode)
    /// for `ttl`: a replica that dies while filling blocks the key no longer than that.
    pub async fn take_lease(&self, key: &CacheKey, scope: &str, ttl: Duration) -> Lease {
        let token = uuid::Uuid::new_v4().to_string();
        let mut invocation = self.take.prepare_invoke();
        invocation
            .key(self.lease_key(key, scope))
            .key(self.generation_key(&key.item.customer.to_string()))
            .arg(&token)
            .arg(ttl.as_millis() as u64);
        match self
            .link
            .run::<(i64, u64)>(Query::Script(&invocation))
            .await
        {
            Ok((1, generation)) => Lease::Held(token, generation),
            Ok(_) => Lease::Busy,
            Err(_) => Lease::Unavailable,
        }
    }

    /// Whether another replica still holds the lease on `key`; `None` when Redis did not say.
    pub async fn lease_held(&self, key: &CacheKey, scope: &str) -> Option<bool> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.lease_key(key, scope));
        self.link
            .run::<i64>(Query::Cmd(&cmd))
            .await
            .ok()
            .map(|n| n > 0)
    }

    /// Keeps `token`'s lease on `key` alive while a fill runs: every third of `hold` it is
    /// extended to `hold` again, until `bound` from now (the fill's own limit) or until a
    /// renewal fails — then the lease lapses within `hold`, and the waiting replicas ask the
    /// upstream themselves. Run beside the fill, dropped when it ends.
    pub fn keep_lease(
        &self,
        key: &CacheKey,
        scope: &str,
        token: &str,
        hold: Duration,
        bound: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (link, renew) = (self.link.clone(), self.renew.clone());
        let (lease, token) = (self.lease_key(key, scope), token.to_owned());
        async move {
            let until = Instant::now() + bound;
            loop {
                tokio::time::sleep(hold / 3).await;
                if Instant::now() + hold > until {
                    return;
                }
                let mut invocation = renew.prepare_invoke();
                invocation
                    .key(&lease)
                    .arg(&token)
                    .arg(hold.as_millis() as u64);
                if !matches!(link.run::<i64>(Query::Script(&invocation)).await, Ok(1)) {
                    return;
                }
            }
        }
    }

    /// Gives the lease back (only if it is still this token's).
    pub async fn release_lease(&self, key: &CacheKey, scope: &str, token: &str) {
        let mut invocation = self.release.prepare_invoke();
        invocation.key(self.lease_key(key, scope)).arg(token);
        let _ = self.link.run::<i64>(Query::Script(&invocation)).await;
    }

    fn lease_key(&self, key: &CacheKey, scope: &str) -> String {
        let entry = self.entry_key(key);
        let rest = entry.split_once(":e:").map_or("", |(_, rest)| rest);
        format!(
            "{}:l:{rest}:{scope}",
            self.prefix(&key.item.customer.to_string())
        )
    }

    /// Drops one key's entry (a revalidation was refused).
    pub async fn remove(&self, key: &CacheKey) {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.entry_key(key));
        let _ = self.link.run::<i64>(Query::Cmd(&cmd)).await;
    }

    /// Drops what `what` names; returns how many entries the fleet held.
    pub async fn purge(&self, what: Purge) -> usize {
        // Per customer: one item's index, or a prefix of the index names to drop (`""`: all).
        let customers: Vec<(String, Result<String, String>)> = match what {
            Purge::One(item) => {
                let customer = item.customer.to_string();
                let index = self.index_key(&customer, item.resource.tag(), &item.id.to_string());
                vec![(customer, Ok(index))]
            }
            Purge::EveryOf(resource, customer) => {
                let customer = customer.to_string();
                let every = self.index_key(&customer, resource.tag(), "");
                vec![(customer, Err(every))]
            }
            Purge::Customer(customer) => vec![(customer.to_string(), Err(String::new()))],
            Purge::All => {
                let mut cmd = redis::cmd("SMEMBERS");
                cmd.arg(self.customers_key());
                let all = self.link.run::<Vec<String>>(Query::Cmd(&cmd)).await;
                all.unwrap_or_default()
                    .into_iter()
                    .map(|c| (c, Err(String::new())))
                    .collect()
            }
        };
        let mut dropped = 0;
        for (customer, items) in customers {
            let mut invocation = self.purge.prepare_invoke();
            invocation
                .key(self.customer_key(&customer))
                .key(self.generation_key(&customer));
            match items {
                Ok(index) => invocation.key(index).arg(""),
                Err(prefix) => invocation.arg(prefix),
            };
            invocation.arg(self.generation_ttl().as_millis() as u64);
            match self.link.run::<i64>(Query::Script(&invocation)).await {
                Ok(n) => dropped += usize::try_from(n).unwrap_or(0),
                Err(e) => tracing::warn!(error = %e, "shared tier purge failed"),
            }
        }
        dropped
    }

    /// `{name}:{{name:customer}}`: the fleet, then the customer's Cluster slot.
    fn prefix(&self, customer: &str) -> String {
        format!("{}:{{{}:{customer}}}", self.name, self.name)
    }

    fn entry_key(&self, key: &CacheKey) -> String {
        let locale = key
            .locale
            .as_ref()
            .and_then(|l| l.to_str().ok())
            .unwrap_or("-");
        format!(
            "{}:e:{}:{}:{}:{locale}",
            self.prefix(&key.item.customer.to_string()),
            key.item.resource.tag(),
            key.item.id,
            key.partition.label(),
        )
    }

    /// The index of one item's entries (every partition and locale).
    fn item_key(&self, key: &CacheKey) -> String {
        let customer = key.item.customer.to_string();
        let id = key.item.id.to_string();
        self.index_key(&customer, key.item.resource.tag(), &id)
    }

    /// `{prefix}:i:{tag}:{id}`; with an empty id, the start every such index of the resource
    /// shares.
    fn index_key(&self, customer: &str, tag: &str, id: &str) -> String {
        format!("{}:i:{tag}:{id}", self.prefix(customer))
    }

    fn customer_key(&self, customer: &str) -> String {
        format!("{}:c", self.prefix(customer))
    }

    /// How long a customer's generation is kept after its last purge: past any entry's life and
    /// any fill's, so that no fill sees it start again from zero.
    fn generation_ttl(&self) -> Duration {
        let hour = Duration::from_secs(3600);
        self.policy.longest_retention().max(hour) + hour
    }

    /// The customer's generation: advanced by every purge of its entries.
    fn generation_key(&self, customer: &str) -> String {
        format!("{}:g", self.prefix(customer))
    }

    fn customers_key(&self) -> String {
        format!("{}:{{{}}}:customers", self.name, self.name)
    }
}
