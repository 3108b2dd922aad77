//! Changes to what Partner Center holds, and the one way each reaches the cache (SPEC §4.4).
//!
//! Above the cache and the fleet, below the listeners that learn of changes: [`invalidate`] is
//! the one path every invalidation takes — a write's, an admin purge's, one another replica
//! published, the replay after a fleet outage — carried out to the end in a task of its own.

pub mod invalidate;
