//! The admin port (SPEC §8): probes, stats, purges and metrics, on a listener of its own, above
//! the front it looks into.
//!
//! [`listener`] accepts admin connections and answers each endpoint; [`auth`] says who may
//! purge (the bearer `admin.token`, or loopback only without one).

pub mod listener;

pub mod auth;
