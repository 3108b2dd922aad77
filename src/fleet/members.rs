//! Who is in the fleet: every replica announces itself in Redis every second and counts the
//! others (SPEC §12.3).
//!
//! One sorted set per fleet, scored by each replica's last heartbeat (Redis server time, so
//! replicas' clocks need not agree): a started replica is counted by every replica within 2 s
//! (one heartbeat each), a stopped one leaves the count within 10 s (its score ages out after
//! [`WINDOW`], or at once when it leaves cleanly). The set expires if the whole fleet stops.
//! While the link is down the last count stands, so the replica's share of a fleet budget does
//! not jump.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::fleet::link::{Link, Query};
use crate::observe::metrics::Metrics;

/// A heartbeat older than this no longer counts.
pub const WINDOW: Duration = Duration::from_secs(5);

/// How often a replica announces itself.
pub const BEAT: Duration = Duration::from_secs(1);

/// One heartbeat, atomically: record this replica at Redis's time, forget replicas silent for
/// longer than the window, keep the set from living forever, count.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return redis.call('ZCARD', KEYS[1])
";

/// This replica's view of the fleet.
pub struct Members {
    link: Arc<Link>,
    script: redis::Script,
    key: String,
    id: String,
    seen: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl Members {
    /// Membership in the fleet `name`, as a replica with a fresh id.
    pub fn new(link: Arc<Link>, name: &str, metrics: Arc<Metrics>) -> Members {
        Members {
            link,
            script: redis::Script::new(HEARTBEAT),
            key: format!("{name}:{{{name}}}:replicas"),
            id: uuid::Uuid::new_v4().to_string(),
            seen: AtomicUsize::new(1),
            metrics,
        }
    }

    /// This replica's id in the fleet.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Live replicas last seen, this one included (at least 1).
    pub fn replicas(&self) -> usize {
        self.seen.load(Ordering::Relaxed).max(1)
    }

    /// Announces this replica and counts the fleet, every [`BEAT`], until the process ends.
    pub async fn beat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(BEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(count) = self.announce().await {
                self.seen.store(count, Ordering::Relaxed);
                self.metrics.fleet_replicas(count);
            }
        }
    }

    /// One heartbeat: the score is Redis's own clock, in milliseconds.
    async fn announce(&self) -> Option<usize> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&self.key)
            .arg(&self.id)
            .arg(WINDOW.as_millis() as u64);
        match self.link.run::<usize>(Query::Script(&invocation)).await {
            Ok(count) => Some(count),
            Err(e) => {
                tracing::debug!(error = %e, "fleet heartbeat not sent");
                None
            }
        }
    }

    /// Leaves the fleet at once (on shutdown), so the others stop counting this replica.
    pub async fn leave(&self) {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(&self.key).arg(&self.id);
        let _ = self.link.run::<i64>(Query::Cmd(&cmd)).await;
    }
}
