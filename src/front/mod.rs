//! The front door: what a client's connection meets, above everything it uses.
//!
//! In the order a request meets them: [`listener`] accepts front connections (at most
//! `server.max_connections` open at once) and drains them on shutdown, [`connection`] drives one
//! connection and closes it when idle, [`pipeline`] runs one request start to finish — reading
//! it with the `request` floor, answering cached routes from the `cache`, forwarding the rest
//! through the `upstream`, and dropping what a write changed; [`record`] is what every request
//! leaves behind (metrics, its access line), however it ends.

pub mod listener;

pub mod connection;

pub mod pipeline;

pub mod record;
