//! Running the gateway: the admin listener ([`admin`]: probes, stats, purges, metrics; who may
//! purge: [`admin_auth`]), the Prometheus families ([`metrics`]) and the structured logs ([`telemetry`]).

pub mod admin;

pub mod admin_auth;

pub mod metrics;

pub mod telemetry;
