//! Partner Center as the gateway reaches it.
//!
//! [`exchange`] is the one path every upstream request takes (admit → send → cooldown →
//! read within the timeout); [`shield`] is its budget, in-flight bound and 429 cooldown;
//! [`forward`] the header rules for what crosses the gateway; [`client`] the pooled connection.

pub mod exchange;

pub mod shield;

pub mod forward;

pub mod client;
