//! Invalidation across the fleet (SPEC §12.3): a write or a purge on one replica reaches every
//! live replica's memory before the write is answered.
//!
//! The replica that handles it publishes the purge on the fleet's channel and waits, at most
//! `fleet.invalidation_wait`, for the other live replicas to confirm: each drops the entries
//! from its memory first, then appends its id to the message's acknowledgement list (an expiring
//! key). Replicas that did not confirm are named in a warning. The subscription is part of being
//! in the fleet: losing it takes the link down (and the replica drops its memory when it
//! rejoins); purges made while cut off are kept and replayed on rejoin, so its own writes reach
//! the others too.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use crate::fleet::link::{Link, Query};
use crate::fleet::members::Members;
use crate::guid::Guid;
use crate::observe::metrics::Metrics;
use crate::outcome::Direction;
use crate::resource::{ItemRef, Purge, Resource};

/// How long an acknowledgement list lives: far past any wait for it.
const ACK_TTL: Duration = Duration::from_secs(10);

/// What a replica does with a purge another replica published.
/// Told whether the shared tier must be purged too (a message from a replica that keyed the
/// shared tier differently, see [`decode`]); done when the purge is, before the confirmation.
type Handler = Box<dyn Fn(Purge, bool) -> BoxFuture<'static, ()> + Send + Sync>;

/// The fleet's invalidation channel, as this replica uses it.
pub struct Bus {
    link: Arc<Link>,
    members: Arc<Members>,
    name: String,
    wait: Duration,
    metrics: Arc<Metrics>,
    handler: OnceLock<Handler>,
    /// Purges made while cut off, replayed on rejoin.
    missed: Mutex<Vec<Purge>>,
    live: AtomicBool,
    /// Which of the subscription's candidate nodes the next try takes.
    turn: AtomicUsize,
}

impl Bus {
    /// The channel of the fleet `name`; confirmations awaited at most `wait`.
    pub fn new(
        link: Arc<Link>,
        members: Arc<Members>,
        name: &str,
        wait: Duration,
        metrics: Arc<Metrics>,
    ) -> Bus {
        Bus {
            link,
            members,
            name: name.to_owned(),
            wait,
            metrics,
            handler: OnceLock::new(),
            missed: Mutex::new(Vec::new()),
            live: AtomicBool::new(false),
            turn: AtomicUsize::new(0),
        }
    }

    /// Sets what to do with a purge another replica published (drop it from memory).
    pub fn on_purge(
        &self,
        handler: impl Fn(Purge, bool) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) {
        let _ = self.handler.set(Box::new(handler));
    }

    fn channel(&self) -> String {
        format!("{}:{{{}}}:invalidate", self.name, self.name)
    }

    fn ack_key(&self, message: &str) -> String {
        format!("{}:{{{}}}:ack:{message}", self.name, self.name)
    }

    /// Tells every live replica to drop `what` from memory and waits for them (at most
    /// `fleet.invalidation_wait`). Returns the replicas that confirmed, this one included.
    /// Cut off from Redis, the purge is kept for replay and only this replica counts.
    pub async fn broadcast(&self, what: Purge) -> usize {
        if !self.link.is_up() {
            self.missed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(what);
            return 1;
        }
        let message = uuid::Uuid::new_v4().to_string();
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.channel()).arg(format!(
            "{message} {} {}",
            self.members.id(),
            encode(what)
        ));
        if self.link.run::<i64>(Query::Cmd(&publish)).await.is_err() {
            self.missed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(what);
            return 1;
        }
        self.metrics.invalidation(Direction::Sent);
        let others = self.members.replicas().saturating_sub(1);
        if others == 0 {
            return 1;
        }
        let deadline = Instant::now() + self.wait;
        let mut list = redis::cmd("LRANGE");
        list.arg(self.ack_key(&message)).arg(0).arg(-1);
        loop {
            let confirmed = self.link.run::<Vec<String>>(Query::Cmd(&list)).await;
            let confirmed = confirmed.unwrap_or_default();
            if confirmed.len() >= others {
                return confirmed.len() + 1;
            }
            if Instant::now() >= deadline || !self.link.is_up() {
                tracing::warn!(
                    purge = ?what,
                    confirmed = ?confirmed,
                    expected = others,
                    "not every live replica confirmed the invalidation in time"
                );
                return confirmed.len() + 1;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The purges this replica made while cut off, once it is back in the fleet (waits up to
    /// 2 s for the rejoin to finish), for the caller to replay in L2 and on the bus.
    pub async fn missed_while_cut_off(&self) -> Vec<Purge> {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.link.is_up() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::mem::take(&mut *self.missed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The subscription, reconnected whenever it is lost; runs until the process ends.
    pub async fn listen(self: Arc<Self>) {
        loop {
            if let Err(e) = self.subscribe_and_serve().await {
                tracing::debug!(error = %e, "fleet invalidation subscription not available");
            }
            if self.live.swap(false, Ordering::AcqRel) {
                tracing::warn!("fleet invalidation subscription lost");
            }
            self.link.set_subscribed(false);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Subscribes on one node and serves its messages until the subscription ends. Each try
    /// takes the next node in turn ([`Link::subscription_urls`]): a node that is gone is left
    /// behind at once, and in a Cluster any live node carries every message.
    async fn subscribe_and_serve(&self) -> Result<(), redis::RedisError> {
        let urls = self.link.subscription_urls().await;
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let url = urls
            .get(turn % urls.len().max(1))
            .cloned()
            .unwrap_or_default();
        let client = redis::Client::open(url)?;
        let connecting = client.get_async_pubsub();
        let Ok(pubsub) = tokio::time::timeout(Duration::from_secs(1), connecting).await else {
            return Ok(());
        };
        let mut pubsub = pubsub?;
        pubsub.subscribe(self.channel()).await?;
        self.live.store(true, Ordering::Release);
        self.link.set_subscribed(true);
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            if let Ok(text) = message.get_payload::<String>() {
                self.receive(&text).await;
            }
        }
        Ok(())
    }

    /// Another replica's purge: drop it from memory, then confirm.
    async fn receive(&self, text: &str) {
        let mut parts = text.splitn(3, ' ');
        let (Some(message), Some(origin), Some(what)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let Some((what, legacy)) = decode(what) else {
            return;
        };
        if origin == self.members.id() {
            return;
        }
        if let Some(handler) = self.handler.get() {
            handler(what, legacy).await;
        }
        self.metrics.invalidation(Direction::Received);
        let mut confirm = redis::pipe();
        confirm
            .atomic()
            .rpush(self.ack_key(message), self.members.id())
            .ignore()
            .pexpire(self.ack_key(message), ACK_TTL.as_millis() as i64)
            .ignore();
        let _ = self.link.run::<()>(Query::Pipe(&confirm)).await;
    }
}

fn encode(what: Purge) -> String {
    match what {
        Purge::One(item) => format!("i:{}:{}:{}", item.resource.tag(), item.customer, item.id),
        Purge::EveryOf(resource, customer) => format!("e:{}:{customer}", resource.tag()),
        Purge::Customer(customer) => format!("c:{customer}"),
        Purge::All => "a".to_owned(),
    }
}

/// A purge message, and whether it came from a replica of the version before resources
/// (`o:{c}:{o}`), which dropped only its own format of shared-tier keys: during a rolling
/// upgrade the receiver drops this version's shared entries for it too.
fn decode(text: &str) -> Option<(Purge, bool)> {
    let mut legacy = text.split(':');
    if let [Some("o"), Some(c), Some(o), None] = [(); 4].map(|()| legacy.next()) {
        let order = ItemRef {
            resource: Resource::Orders,
            customer: Guid::parse(c)?,
            id: Guid::parse(o)?,
        };
        return Some((Purge::One(order), true));
    }
    current(text).map(|what| (what, false))
}

fn current(text: &str) -> Option<Purge> {
    let mut parts = text.split(':');
    let parts = [(); 5].map(|()| parts.next());
    match parts {
        [Some("a"), None, ..] => Some(Purge::All),
        [Some("c"), Some(c), None, ..] => Some(Purge::Customer(Guid::parse(c)?)),
        [Some("e"), Some(tag), Some(c), None, ..] => {
            Some(Purge::EveryOf(Resource::from_tag(tag)?, Guid::parse(c)?))
        }
        [Some("i"), Some(tag), Some(c), Some(id), None] => Some(Purge::One(ItemRef {
            resource: Resource::from_tag(tag)?,
            customer: Guid::parse(c)?,
            id: Guid::parse(id)?,
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purges_cross_the_wire_unchanged() {
        let c = Guid::parse("00000000-0000-0000-0000-0000000000c1").expect("c");
        let o = Guid::parse("00000000-0000-0000-0000-0000000000a1").expect("o");
        for what in [
            Purge::All,
            Purge::Customer(c),
            Purge::EveryOf(Resource::Subscriptions, c),
            Purge::One(ItemRef {
                resource: Resource::Orders,
                customer: c,
                id: o,
            }),
            Purge::One(ItemRef {
                resource: Resource::Customers,
                customer: c,
                id: c,
            }),
        ] {
            assert_eq!(decode(&encode(what)), Some((what, false)));
        }
        let legacy = format!("o:{c}:{o}");
        let order = ItemRef {
            resource: Resource::Orders,
            customer: c,
            id: o,
        };
        assert_eq!(decode(&legacy), Some((Purge::One(order), true)));
        for junk in [
            "",
            "x",
            "c:nope",
            "i:o:1:2",
            "a:b",
            "i:o:00000000-0000-0000-0000-0000000000c1",
            "e:x:00000000-0000-0000-0000-0000000000c1",
            "i:o:00000000-0000-0000-0000-0000000000c1:00000000-0000-0000-0000-0000000000a1:x",
        ] {
            assert_eq!(decode(junk), None, "{junk}");
        }
    }
}
