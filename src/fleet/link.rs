//! The replica's connection to the fleet's Redis, and whether it is up (SPEC §12.5).
//!
//! Every Redis call on a request's path goes through [`Link::run`], which bounds it by
//! `fleet.timeout` and turns any failure into "Redis is down for this request": the caller
//! works alone. A lost connection, however short, counts as an outage: the link goes down at
//! once (`partner_gateway_fleet_up 0`) and comes back up only after a background check has
//! reached Redis again and the rejoin work (dropping the replica's L1, so no write made
//! elsewhere during the outage outlives it) is done.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, ScriptInvocation};

use crate::config::FleetConfig;
use crate::observe::metrics::Metrics;

/// The `host:port` of every node `CLUSTER NODES` lists as reachable (not failed, not in a
/// handshake, with an address).
fn live_nodes(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_id, address, flags) = (fields.next()?, fields.next()?, fields.next()?);
            let down = ["fail", "noaddr", "handshake"];
            if flags
                .split(',')
                .any(|f| down.contains(&f.trim_end_matches('?')))
            {
                return None;
            }
            // `ip:port@cport[,hostname]`
            let address = address.split(['@', ',']).next()?;
            (!address.starts_with(':')).then(|| address.to_owned())
        })
        .collect()
}

/// `seed` with its host and port replaced by `address` (scheme, user and password kept).
fn with_address(seed: &str, address: &str) -> String {
    let (scheme, rest) = seed.split_once("://").unwrap_or(("redis", seed));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let user = authority.rsplit_once('@').map(|(user, _)| user);
    match user {
        Some(user) => format!("{scheme}://{user}@{address}"),
        None => format!("{scheme}://{address}"),
    }
}

/// Whether `url` names the node at `address`.
fn same_address(url: &str, address: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host == address
}

/// Why a Redis call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The link is down; nothing was sent.
    #[error("fleet link is down")]
    Down,
    /// No answer within `fleet.timeout`.
    #[error("redis did not answer within the fleet timeout")]
    Timeout,
    /// Redis answered with an error, or the connection broke.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// One node or a Cluster; both heal themselves in the background.
#[derive(Clone)]
enum Connection {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

/// One command, or several sent together.
#[derive(Clone, Copy)]
pub enum Query<'a> {
    /// A single command.
    Cmd(&'a Cmd),
    /// Commands sent together (`MULTI`/`EXEC` when built atomic).
    Pipe(&'a Pipeline),
    /// A Lua script, called by its hash (loaded on first use).
    Script(&'a ScriptInvocation<'a>),
}

/// Work to do when the link comes back after an outage, before it counts as up.
type Rejoin = Box<dyn Fn() + Send + Sync>;

/// The fleet's Redis, as this replica reaches it.
pub struct Link {
    config: FleetConfig,
    connection: OnceLock<Connection>,
    up: AtomicBool,
    /// Whether the invalidation subscription is live: the link is up only with it.
    subscribed: AtomicBool,
    /// Whether the replica has been part of the fleet before (a first join is no rejoin).
    joined: AtomicBool,
    metrics: Arc<Metrics>,
    rejoin: Mutex<Vec<Rejoin>>,
}

impl Link {
    /// A link that is down until [`Link::watch`] reaches Redis: the replica starts (and
    /// serves) whether Redis answers or not.
    pub fn new(config: &FleetConfig, metrics: Arc<Metrics>) -> Link {
        metrics.fleet_up(false);
        Link {
            config: config.clone(),
            connection: OnceLock::new(),
            up: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            joined: AtomicBool::new(false),
            metrics,
            rejoin: Mutex::new(Vec::new()),
        }
    }

    /// Connects to the configured Redis (one node, or Cluster seeds).
    async fn connect(&self) -> Result<Connection, LinkError> {
        let config = &self.config;
        let limit = config.timeout.max(Duration::from_millis(500));
        if config.cluster {
            let client = redis::cluster::ClusterClient::new(config.urls.clone())?;
            let connecting = client.get_async_connection();
            let connection = tokio::time::timeout(limit, connecting)
                .await
                .map_err(|_| LinkError::Timeout)??;
            Ok(Connection::Cluster(connection))
        } else {
            let url = config.urls.first().cloned().unwrap_or_default();
            let client = redis::Client::open(url)?;
            let settings = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(limit))
                .set_response_timeout(Some(limit))
                .set_max_delay(Duration::from_millis(500));
            let connecting = client.get_connection_manager_with_config(settings);
            let connection = tokio::time::timeout(limit * 2, connecting)
                .await
                .map_err(|_| LinkError::Timeout)??;
            Ok(Connection::Node(connection))
        }
    }

    /// Where the invalidation subscription may connect: every configured URL, and in Cluster
    /// mode every node the cluster names now (a message published on any node reaches
    /// subscribers on all of them), so that no one node is waited for (SPEC §12.5).
    pub async fn subscription_urls(&self) -> Vec<String> {
        let mut urls = self.config.urls.clone();
        if !self.config.cluster {
            return urls;
        }
        let Some(seed) = urls.first().cloned() else {
            return urls;
        };
        let mut nodes = redis::cmd("CLUSTER");
        nodes.arg("NODES");
        // Asked while the link is down too (that is when it matters), bounded all the same.
        let listed = self
            .send::<String>(Query::Cmd(&nodes), self.config.timeout)
            .await;
        for address in listed.map(|text| live_nodes(&text)).unwrap_or_default() {
            let url = with_address(&seed, &address);
            if !urls.iter().any(|known| same_address(known, &address)) {
                urls.push(url);
            }
        }
        urls
    }

    /// The invalidation subscription is live (`true`) or lost (`false`: the link goes down
    /// at once; it comes back only with a live subscription).
    pub fn set_subscribed(&self, live: bool) {
        self.subscribed.store(live, Ordering::Release);
        if !live {
            self.went_down(&LinkError::Down);
        }
    }

    /// Whether the replica is part of the fleet now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Registers work to do after every outage, before the link counts as up again.
    pub fn on_rejoin(&self, work: impl Fn() + Send + Sync + 'static) {
        self.rejoin
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(work));
    }

    /// Runs one command within `fleet.timeout`. While the link is down nothing is sent; a
    /// failure takes it down.
    pub async fn run<T: FromRedisValue>(&self, query: Query<'_>) -> Result<T, LinkError> {
        if !self.is_up() {
            return Err(LinkError::Down);
        }
        self.send(query, self.config.timeout)
            .await
            .inspect_err(|e| {
                if !matches!(e, LinkError::Down) {
                    self.went_down(e);
                }
            })
    }

    /// Connects, then checks Redis every `every` and brings the link back after an outage.
    /// Runs until the process ends.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.connection.get().is_none() {
                match self.connect().await {
                    Ok(connection) => {
                        let _ = self.connection.set(connection);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "fleet redis not reachable yet");
                        continue;
                    }
                }
            }
            let limit = every.max(self.config.timeout);
            let ping = self
                .send::<String>(Query::Cmd(&redis::cmd("PING")), limit)
                .await;
            match (ping, self.is_up()) {
                (Ok(_), false) if self.subscribed.load(Ordering::Acquire) => self.came_back(),
                (Err(e), true) => self.went_down(&e),
                _ => {}
            }
        }
    }

    async fn send<T: FromRedisValue>(
        &self,
        query: Query<'_>,
        limit: Duration,
    ) -> Result<T, LinkError> {
        let Some(connection) = self.connection.get() else {
            return Err(LinkError::Down);
        };
        let mut connection = connection.clone();
        let sent = async move {
            match (&mut connection, query) {
                (Connection::Node(c), Query::Cmd(cmd)) => cmd.query_async(c).await,
                (Connection::Node(c), Query::Pipe(pipe)) => pipe.query_async(c).await,
                (Connection::Cluster(c), Query::Cmd(cmd)) => cmd.query_async(c).await,
                (Connection::Cluster(c), Query::Pipe(pipe)) => pipe.query_async(c).await,
                (Connection::Node(c), Query::Script(script)) => script.invoke_async(c).await,
                (Connection::Cluster(c), Query::Script(script)) => script.invoke_async(c).await,
            }
        };
        match tokio::time::timeout(limit, sent).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(LinkError::Timeout),
        }
    }

    fn went_down(&self, error: &LinkError) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.metrics.fleet_up(false);
            tracing::warn!(error = %error, "fleet link down; working alone");
        }
    }

    fn came_back(&self) {
        for work in self
            .rejoin
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            work();
        }
        self.up.store(true, Ordering::Release);
        self.metrics.fleet_up(true);
        if self.joined.swap(true, Ordering::AcqRel) {
            tracing::info!("rejoined the fleet after an outage; memory tier dropped");
        } else {
            tracing::info!("joined the fleet");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_become_subscription_urls_with_the_seeds_credentials() {
        let listed = "\
07c3 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
67ed 127.0.0.1:7001@17001,node-b master - 0 1 2 connected 5461-10922
292f 127.0.0.1:7002@17002 master,fail - 0 1 3 disconnected
e7d1 :0@0 slave,noaddr 07c3 0 1 1 disconnected
6ec2 127.0.0.1:7004@17004 slave 07c3 0 1 1 connected
";
        assert_eq!(
            live_nodes(listed),
            ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7004"]
        );
        assert_eq!(
            with_address("rediss://:secret@10.0.0.1:6379/0", "10.0.0.2:6380"),
            "rediss://:secret@10.0.0.2:6380"
        );
        assert_eq!(with_address("redis://h:1", "n:2"), "redis://n:2");
        assert!(same_address(
            "redis://:p@127.0.0.1:7000/0",
            "127.0.0.1:7000"
        ));
        assert!(!same_address("redis://127.0.0.1:7000", "127.0.0.1:7001"));
    }
}
