//! partner-gateway: a caching reverse proxy for the Partner Center REST API.
//!
//! A request's path, top to bottom. The [`front`] accepts a connection and runs each request
//! through one linear pipeline: correlation IDs, route, the caller's credential fingerprint.
//! Which GET-by-ID paths are cached, and what a write changes, is one table in [`resource`].
//! A cached route asks the [`cache`]: its policy says what an entry's age allows, a hit is
//! answered from memory on the spot, and a miss or revalidation joins the one fill for its key.
//! Fills, revalidations and every forwarded request reach Partner Center through the
//! [`upstream`]'s one exchange (shield → send → cooldown), with its header rules. A successful
//! write drops the entries it changed. [`ops`] watches it all (admin port, metrics, logs);
//! [`outcome`] holds the words every stage reports in, [`error`] the answers the gateway makes
//! itself. In fleet mode, [`fleet`] joins the replica to the others through Redis. Data flows
//! one way: a module imports only modules below it (the order is `tests/layering.rs`'s).

pub mod config;

pub mod front;

pub mod cache;

pub mod fleet;

pub mod upstream;

pub mod ops;

pub mod error;

pub mod outcome;

pub mod body;

pub mod resource;

#[cfg(feature = "demo")]
pub mod demo;

pub mod cli;
