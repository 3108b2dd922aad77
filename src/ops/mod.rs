//! Running the gateway: the admin listener ([`admin`]: probes, stats, purges, metrics),
//! the Prometheus families ([`metrics`]) and the structured logs ([`telemetry`]).

pub mod admin;

pub mod metrics;

pub mod telemetry;
