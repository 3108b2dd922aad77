//! The one invalidation path (SPEC §4.4, §12.3): memory, shared tier, fleet broadcast and
//! confirmations, in that order, for every cause of a change.
//!
//! Each invalidation runs in a task of its own, so that nothing the caller does — a client
//! hanging up during a write, an admin connection closed mid-purge — can cut it short: once it
//! has started, it drops what it names in every tier and on every live replica that confirms.
//! The causes differ only in which steps they need ([`Cause`]); the steps, their order and how
//! they are counted are written here once.

use std::sync::Arc;

use crate::cache::tier::Tiers;
use crate::fleet::bus::Bus;
use crate::fleet::replica::Replica;
use crate::resource::Purge;

/// Why the cache is invalidated, which decides the steps taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A write through this replica was answered 2xx, or its outcome is unknown: memory,
    /// shared tier, then every live replica, confirmed.
    Write,
    /// An admin purge on this replica: the same steps as a write.
    Admin,
    /// A verified event notification from Partner Center (SPEC §15.2): the same steps.
    Webhook,
    /// An audit record of a change made elsewhere (SPEC §15.3): the same steps.
    Audit,
    /// Another replica published it: memory, and the shared tier only when the sender keyed it
    /// differently (a rolling upgrade); the bus confirms once this is done.
    Received {
        /// The sender could not drop this version's shared entries itself.
        shared_too: bool,
    },
    /// This replica made it while cut off from the fleet and rejoined since (its memory was
    /// dropped whole on the rejoin): shared tier and every live replica.
    Replay,
}

impl Cause {
    /// The word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Write => "write",
            Cause::Admin => "admin",
            Cause::Webhook => "webhook",
            Cause::Audit => "audit",
            Cause::Received { .. } => "fleet",
            Cause::Replay => "replay",
        }
    }

    fn memory(self) -> bool {
        !matches!(self, Cause::Replay)
    }

    fn shared(self) -> bool {
        !matches!(self, Cause::Received { shared_too: false })
    }

    fn broadcast(self) -> bool {
        !matches!(self, Cause::Received { .. })
    }
}

/// What an invalidation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Invalidated {
    /// Entries dropped in this replica's memory and in the shared tier.
    pub purged: usize,
    /// Replicas that confirmed, this one included (fleet mode, causes that broadcast).
    pub replicas: Option<usize>,
}

/// Carries invalidations out; one per process, cheap to clone.
#[derive(Clone)]
pub struct Invalidator {
    tiers: Arc<Tiers>,
    bus: Option<Arc<Bus>>,
}

impl Invalidator {
    /// Invalidates `tiers`, and in fleet mode every live replica through `bus`.
    pub fn new(tiers: Arc<Tiers>, bus: Option<Arc<Bus>>) -> Invalidator {
        Invalidator { tiers, bus }
    }

    /// Drops everything `purges` name, for `cause`, in a task of its own; the returned future
    /// only waits for it (dropping it does not stop the task). All purges run at once.
    pub fn run(
        &self,
        purges: Vec<Purge>,
        cause: Cause,
    ) -> impl std::future::Future<Output = Invalidated> + Send + 'static {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let each = purges.iter().map(|&what| this.carry_out(what, cause));
            let done = futures_util::future::join_all(each).await;
            done.into_iter()
                .fold(Invalidated::default(), |sum, one| Invalidated {
                    purged: sum.purged + one.purged,
                    replicas: match (sum.replicas, one.replicas) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                })
        });
        async move {
            task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "invalidation task failed");
                Invalidated::default()
            })
        }
    }

    /// One purge, every step its cause needs.
    async fn carry_out(&self, what: Purge, cause: Cause) -> Invalidated {
        let mut purged = 0;
        if cause.memory() {
            purged += self.purge_memory(what).await;
        }
        if cause.shared() {
            purged += self.tiers.purge_shared(what).await;
        }
        let replicas = match &self.bus {
            Some(bus) if cause.broadcast() => Some(bus.broadcast(what).await),
            _ => None,
        };
        tracing::debug!(
            purged,
            replicas,
            cause = cause.as_str(),
            purge = %what,
            "invalidated"
        );
        Invalidated { purged, replicas }
    }

    /// Memory first. A purge of one item is a few removals; a whole customer or the whole
    /// cache may be 100,000s, which run on the blocking pool instead of a request worker.
    async fn purge_memory(&self, what: Purge) -> usize {
        match what {
            Purge::One(_) | Purge::EveryOf(..) => self.tiers.purge_memory(what),
            Purge::Customer(_) | Purge::All => {
                let tiers = self.tiers.clone();
                let purged = tokio::task::spawn_blocking(move || tiers.purge_memory(what)).await;
                purged.unwrap_or_else(|e| {
                    tracing::error!(error = %e, purge = %what, "memory purge failed");
                    0
                })
            }
        }
    }

    /// Joins the fleet's two other sources of invalidations to this path: purges other replicas
    /// publish, and the replay of this replica's own after an outage (SPEC §12.5: on a rejoin
    /// nothing written elsewhere meanwhile may outlive the outage, so memory is dropped whole,
    /// and what this replica wrote meanwhile reaches the shared tier and the others).
    pub fn join_fleet(&self, replica: &Replica) {
        let Some(bus) = self.bus.clone() else {
            return;
        };
        let received = self.clone();
        bus.on_purge(move |what, shared_too| {
            Box::pin(futures_util::FutureExt::map(
                received.run(vec![what], Cause::Received { shared_too }),
                |_| (),
            ))
        });
        let replay = self.clone();
        replica.on_rejoin(move || {
            replay.tiers.purge_memory(Purge::All);
            let (replay, bus) = (replay.clone(), bus.clone());
            tokio::spawn(async move {
                let missed = bus.missed_while_cut_off().await;
                replay.run(missed, Cause::Replay).await;
            });
        });
    }
}
