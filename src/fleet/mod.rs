//! Fleet mode (SPEC §12): replicas that share one Redis and one `fleet.name` behave as one
//! gateway.
//!
//! [`replica`] is this replica's membership, started with the listeners; [`link`] is its
//! bounded, self-healing connection to Redis and says whether the
//! replica is part of the fleet now; [`members`] keeps the count of live replicas by
//! heartbeats; [`shared`] is the shared tier (L2) behind the cache's tiers, its entries'
//! bytes in [`stored`]; [`bus`] carries
//! invalidations to every live replica and waits for their confirmations; [`budget`] is the
//! fleet's upstream budget and 429 cooldown. Off (`fleet.redis_url = ""`), nothing here runs.

pub mod replica;

pub mod shared;

pub mod stored;

pub mod bus;

pub mod budget;

pub mod members;

pub mod link;
