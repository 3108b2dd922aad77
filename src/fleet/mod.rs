//! Fleet mode (SPEC §12): replicas that share one Redis and one `fleet.name` behave as one
//! gateway. This floor is the fleet's plumbing, below the cache: it never imports the cache,
//! which registers what to do with a purge another replica published.
//!
//! [`replica`] is this replica's membership, started with the listeners; [`link`] is its
//! bounded, self-healing connection to Redis and says whether the replica is part of the fleet
//! now; [`members`] keeps the count of live replicas by heartbeats; [`bus`] carries
//! invalidations to every live replica and waits for their confirmations; [`budget`] is the
//! fleet's upstream budget and 429 cooldown. The shared tier (L2) that uses the link lives with
//! the cache (`cache::shared`). Off (`fleet.redis_url = ""`), nothing here runs.

pub mod replica;

pub mod bus;

pub mod budget;

pub mod members;

pub mod link;
