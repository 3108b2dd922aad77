//! This replica as a member of its fleet: the link to Redis and the heartbeats, started with
//! the listeners and stopped with them.
//!
//! What fleet mode does today: replicas find each other (the live count, `fleet_up`, the
//! `fleet` field of `/cache/stats`), share a tier of entries in Redis (L2), lose Redis without
//! failing a request and drop their memory tier when they rejoin; credential hashes agree
//! across replicas (`fleet.partition_secret`). Fleet-wide fills, invalidation of other
//! replicas' memory and the fleet budget build on this (SPEC §12.2–12.4).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::FleetConfig;
use crate::fleet::link::Link;
use crate::fleet::members::Members;
use crate::observe::metrics::Metrics;

/// How often the link checks Redis: a replica rejoins within this (plus the rejoin work) of
/// Redis answering again.
const CHECK: Duration = Duration::from_millis(250);

/// This replica's membership of its fleet.
pub struct Replica {
    link: Arc<Link>,
    members: Arc<Members>,
}

/// The background work of a running replica; [`Running::stop`] ends it.
pub struct Running {
    tasks: Vec<JoinHandle<()>>,
    members: Arc<Members>,
}

impl Replica {
    /// A replica of the fleet `config` names; nothing runs until [`Replica::start`].
    pub fn new(config: &FleetConfig, metrics: Arc<Metrics>) -> Replica {
        let link = Arc::new(Link::new(config, metrics.clone()));
        let members = Arc::new(Members::new(link.clone(), &config.name, metrics));
        Replica { link, members }
    }

    /// Registers work to do after every outage, before the replica counts as rejoined.
    pub fn on_rejoin(&self, work: impl Fn() + Send + Sync + 'static) {
        self.link.on_rejoin(work);
    }

    /// The fleet's membership, for the parts that use it (the invalidation bus).
    pub fn members(&self) -> Arc<Members> {
        self.members.clone()
    }

    /// The link to the fleet's Redis, for the parts that use it (the shared tier).
    pub fn link(&self) -> Arc<Link> {
        self.link.clone()
    }

    /// Whether the replica is part of the fleet now.
    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// Live replicas last seen, this one included.
    pub fn replicas(&self) -> usize {
        self.members.replicas()
    }

    /// Connects (in the background: the replica serves meanwhile) and starts the heartbeats.
    pub fn start(&self) -> Running {
        let watch = tokio::spawn(self.link.clone().watch(CHECK));
        let beat = tokio::spawn(self.members.clone().beat());
        Running {
            tasks: vec![watch, beat],
            members: self.members.clone(),
        }
    }
}

impl Running {
    /// Runs `task` with the replica and stops it with it.
    pub fn also(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Leaves the fleet (bounded by `fleet.timeout`) and stops the background work.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.members.leave().await;
    }
}
