//! partner-gateway: a caching reverse proxy for the Partner Center REST API.
//!
//! The house is built in floors, bottom to top, and data flows one way: a file imports its own
//! folder and the floors below it, never one above, and no files import each other in a loop
//! (`tests/layering.rs` holds this list and enforces it). Read top to bottom, the floors are:
//!
//! 1. The vocabulary every stage speaks: [`outcome`] (the words stages report in), [`resource`]
//!    (the one table of cached resources and what a write changes), [`guid`] (the identifier
//!    every resource path carries).
//! 2. [`config`]: what the operator asked for, checked once at start-up.
//! 3. [`request`]: the pure readers of a request — correlation IDs, route, path rules,
//!    conditionals, the caller's credential.
//! 4. [`body`] (the one body type and its limits) and [`error`] (everything that can go wrong,
//!    and the one place it becomes an answer).
//! 5. [`observe`]: metrics and logs, which every floor above reports into.
//! 6. [`upstream`]: Partner Center as the gateway reaches it — one exchange (shield → send →
//!    cooldown), with its header rules.
//! 7. [`fleet`]: several replicas as one gateway on Redis — link, members, the invalidation bus,
//!    the shared budget; it hands received purges to whoever registered for them.
//! 8. [`cache`]: answering cached routes from memory (and the shared tier), one fill per key,
//!    one freshness policy.
//! 9. [`changes`]: the one path every invalidation takes (a write, an admin purge, the fleet's),
//!    carried out to the end in a task of its own.
//! 10. [`front`]: the front listener and the pipeline every client request runs through.
//! 11. [`admin`]: the admin port, which looks into what the front built.
//! 12. [`server`]: the running gateway — both listeners, the fleet and upkeep, the drain.
//! 13. [`demo`] (the walk-through and the Partner Center simulator) and [`cli`].

pub mod outcome;

pub mod resource;

pub mod guid;

pub mod config;

pub mod request;

pub mod body;

pub mod error;

pub mod observe;

pub mod upstream;

pub mod fleet;

pub mod cache;

pub mod changes;

pub mod front;

pub mod admin;

pub mod server;

#[cfg(feature = "demo")]
pub mod demo;

pub mod cli;
