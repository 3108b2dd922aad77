//! What the client sends and gets: the listeners, the request pipeline, and the pure readers
//! of a request (correlation IDs, route, conditionals, credential).
//!
//! In the order a request meets them: [`server`] accepts and limits connections,
//! [`connection`] drives one connection and closes it when idle,
//! [`pipeline`] runs one request start to finish, [`correlation`] keeps or mints its IDs,
//! [`route`] decides cached route or forward (the path rules in [`target`]), [`credential`] fingerprints the caller once,
//! [`conditional`] reads `If-None-Match` and `Cache-Control`; [`guid`] is the identifier every
//! resource path carries.

pub mod server;

pub mod connection;

pub mod pipeline;

pub mod correlation;

pub mod route;

pub mod target;

pub mod credential;

pub mod conditional;

pub mod guid;
