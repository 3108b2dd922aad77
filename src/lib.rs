//! partner-gateway: a caching reverse proxy for the Partner Center REST API.
//!
//! The modules, in the order a request meets them:
//!
//! - [`config`] — what the operator asked for, validated before any port is bound;
//! - [`server`] — the front listener: connections, head limits, keep-alive, drain;
//! - [`pipeline`] — one request's whole life, as one linear function;
//! - [`correlation`] — stage 1: `MS-CorrelationId` / `MS-RequestId`;
//! - [`route`] — stage 2: order-by-ID or forward;
//! - [`key`] — stage 3: the cache key and its credential partition;
//! - [`order`] — stage 4: answering an order from the cache (lookup, freshness, answer);
//! - [`conditional`] — `If-None-Match`, `ETag`, `Cache-Control` as pure functions;
//! - [`fill`] — one coalesced upstream fetch or revalidation per key;
//! - [`shield`] — the upstream budget: in-flight bound, token bucket, 429 cooldown;
//! - [`cacheability`] — whether an upstream answer may be stored, and why not;
//! - [`store`] — the byte-bounded moka cache and its purge index;
//! - [`forward`] — header hygiene for what crosses the gateway;
//! - [`upstream`] — the one pooled client, its TLS and timeouts;
//! - [`body`] — the body type streamed or held in memory;
//! - [`error`] — everything that can go wrong, and the one place it becomes a response;
//! - [`admin`] — probes and administration on their own port;
//! - [`metrics`] — Prometheus counters, gauges and histograms;
//! - [`telemetry`] — structured logs;
//! - [`cli`] — the command line the thin binary runs;
//! - [`simulate`] — an in-process Partner Center stand-in for the demo, tests and benchmarks;
//! - [`demo`] — the guided first run.

pub mod admin;
pub mod body;
pub mod cacheability;
pub mod cli;
pub mod conditional;
pub mod config;
pub mod correlation;
pub mod demo;
pub mod error;
pub mod fill;
pub mod forward;
pub mod key;
pub mod metrics;
pub mod order;
pub mod pipeline;
pub mod route;
pub mod server;
pub mod shield;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod upstream;
