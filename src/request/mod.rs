//! The pure readers of a request: what the client said, read once, with no state of the
//! gateway's. Everything above reads a request through these.
//!
//! [`correlation`] keeps or mints its IDs, [`route`] decides cached route or forward (the path
//! rules of a resource in [`target`]), [`credential`] fingerprints the caller once,
//! [`conditional`] reads `If-None-Match` and `Cache-Control`, [`coding`] `Accept-Encoding`.

pub mod correlation;

pub mod route;

pub mod target;

pub mod credential;

pub mod conditional;

pub mod coding;
