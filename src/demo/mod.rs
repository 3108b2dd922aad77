//! The guided first run ([`walkthrough`]) and the Partner Center stand-in it runs against
//! ([`simulator`]), also used by tests and benchmarks. Built with the cargo feature `demo`
//! (on by default); a build without it is the gateway alone.

pub mod walkthrough;

pub mod subscriptions;

pub mod console;

pub mod simulator;

pub mod store;

pub mod accounts;

pub mod catalog;

pub mod audit;

pub mod notify;

pub mod counters;

pub mod elsewhere;

pub mod setup;
