//! What the code runs with: the validated configuration and the one error any step of loading
//! it reports.
//!
//! Two shapes on purpose: [`RawConfig`](super::raw::RawConfig) is what the files and the
//! environment say, exactly the keys of SPEC §2, read by serde; [`Config`] here is what the code
//! uses (parsed addresses, URIs, limits). Each section keeps its SPEC name, and printing it back
//! for `check-config` is serde too (the `serialize_with` helpers are in `mask.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use serde::{Deserialize, Serialize};

use crate::resource::Resources;

/// Why the configuration cannot be used. The message always names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A `--config` or `config/default.toml` file cannot be read or is not TOML.
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    /// A key that SPEC §2 does not define (a typo must not fall back to a default).
    #[error("unknown config key `{0}`")]
    UnknownKey(String),
    /// A value of the right type that is still unusable (bad address, too small, ...).
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    /// The layers could not be merged or read (the `config` crate's message names the key).
    #[error("{0}")]
    Load(String),
}

impl ConfigError {
    /// A value of `key` that cannot be used, and why.
    pub fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key,
            message: message.into(),
        }
    }
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `[server]`: the front listener.
    pub server: ServerConfig,
    /// `[admin]`: the admin listener.
    pub admin: AdminConfig,
    /// `[upstream]`: where and how requests are forwarded.
    pub upstream: UpstreamConfig,
    /// `[cache]`: the order cache.
    pub cache: CacheConfig,
    /// `[log]`: log format and level.
    pub log: LogConfig,
    /// `[fleet]`: several replicas as one gateway, on Redis (off by default).
    pub fleet: FleetConfig,
    /// `[webhooks]`: Partner Center's event notifications (off by default).
    pub webhooks: WebhooksConfig,
    /// `[audit]`: the audit-record follower (off by default).
    pub audit: AuditConfig,
}

/// `[audit]`: following Partner Center's audit records, which name every change made by the
/// partner's users and tools, the portal included (SPEC §15.3).
#[derive(Debug, Clone, Serialize)]
pub struct AuditConfig {
    /// How often to poll; zero: off.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The file holding the bearer token, read before every poll.
    #[serde(serialize_with = "super::mask::path_or_empty")]
    pub token_file: Option<PathBuf>,
    /// How far back each poll reaches before the newest record already seen.
    #[serde(with = "humantime_serde")]
    pub overlap: Duration,
}

impl AuditConfig {
    /// Whether the follower runs.
    pub fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }
}

/// `[webhooks]`: verified event notifications that invalidate, then reach the partner's own
/// handler (SPEC §15.2).
#[derive(Debug, Clone, Serialize)]
pub struct WebhooksConfig {
    /// Front-listener path that takes them; empty: off.
    pub path: String,
    /// The partner's handler each verified notification is passed on to; empty: none.
    pub relay_url: String,
    /// Bound on the relay's answer.
    #[serde(with = "humantime_serde")]
    pub relay_timeout: Duration,
    /// The certificate whose key alone may sign notifications, as written.
    #[serde(serialize_with = "super::mask::path_or_empty")]
    pub certificate_file: Option<PathBuf>,
    /// That certificate, read and checked at start (DER).
    #[serde(skip)]
    pub certificate: Option<rustls::pki_types::CertificateDer<'static>>,
    /// Hosts a certificate URL may name.
    pub certificate_hosts: Vec<String>,
    /// Extra roots for fetched certificates, as written.
    #[serde(serialize_with = "super::mask::path_or_empty")]
    pub ca_file: Option<PathBuf>,
    /// Those roots, read and checked at start (DER).
    #[serde(skip)]
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Organisation the signing certificate's issuer must name.
    pub certificate_issuer: String,
}

impl WebhooksConfig {
    /// Whether the front listener takes notifications.
    pub fn enabled(&self) -> bool {
        !self.path.is_empty()
    }
}

/// `[server]`: the front listener.
#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    /// Address the front listener binds.
    pub listen: SocketAddr,
    /// Time a client has to send a request head (also the keep-alive idle limit).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head accepted (at least 8192).
    pub max_header_bytes: usize,
    /// Drain time after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Open front connections at most; further ones wait in the listen backlog (SPEC §14).
    pub max_connections: usize,
    /// A request body that sends no byte for this long ends the request (SPEC §14).
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Larger request bodies get `413 PayloadTooLarge` (SPEC §14).
    pub max_body_bytes: u64,
}

/// `[admin]`: health, metrics and cache admin.
#[derive(Debug, Clone, Serialize)]
pub struct AdminConfig {
    /// Address the admin listener binds (never the front one).
    pub listen: SocketAddr,
    /// Bearer token the purge endpoints require; empty: purges only from loopback peers
    /// (SPEC §8). Printed masked.
    #[serde(serialize_with = "super::mask::masked_secret")]
    pub token: String,
}

/// `[upstream]`: where requests go and the shield in front of it.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamConfig {
    /// Scheme requests are sent with.
    #[serde(skip)]
    pub scheme: Scheme,
    /// Host and port requests are sent to (user info removed).
    #[serde(skip)]
    pub authority: Authority,
    /// Path prefix of `base_url`, without a trailing slash ("" for none).
    #[serde(skip)]
    pub path_prefix: String,
    /// `base_url` as written, for display (printed with its password masked).
    #[serde(serialize_with = "super::mask::masked_url")]
    pub base_url: String,
    /// Limit for establishing a connection to the upstream.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Limit for the upstream exchange up to the response head.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A forwarded response body that sends no byte for this long is cut off (SPEC §14).
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// Extra trusted roots file, as written (`None` for none).
    #[serde(serialize_with = "super::mask::path_or_empty")]
    pub ca_file: Option<PathBuf>,
    /// Extra trusted roots, already read and checked (DER).
    #[serde(skip)]
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Idle pooled connections are closed after this long.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// Most idle pooled connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// Concurrent upstream requests at most (at least 1).
    pub max_in_flight: usize,
    /// How long a request may wait for an in-flight slot.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Upstream request budget per second (0 = off).
    pub rate_limit_rps: u32,
    /// Token bucket size (0 = same as `rate_limit_rps`).
    pub rate_limit_burst: u32,
    /// Who shares a bucket and a cooldown.
    pub rate_limit_scope: Scope,
}

/// Who shares a rate-limit bucket and an upstream-429 cooldown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One bucket and one cooldown for all callers.
    Global,
    /// One bucket and one cooldown per `Authorization` value.
    Credential,
}

/// `[cache]`: the order cache.
#[derive(Debug, Clone, Serialize)]
pub struct CacheConfig {
    /// `false` forwards every request.
    pub enabled: bool,
    /// Bound on cached bytes (body + key + headers of every entry).
    pub max_bytes: u64,
    /// Bigger bodies are not cached, as written; see [`CacheConfig::entry_limit`].
    pub max_entry_bytes: usize,
    /// Fresh lifetime of an entry.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// After `ttl`: serve stale and refresh in the background.
    #[serde(with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// After `ttl`: serve stale when the upstream fails.
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// How long a 404 is remembered (zero = never).
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Who may see a cached entry.
    pub partition: Partition,
    /// The GET-by-ID resources answered from cache (SPEC §13).
    pub resources: Resources,
    /// Fresh lifetime of an unsettled body (SPEC §15.1); zero: such bodies are not stored.
    #[serde(with = "humantime_serde")]
    pub unsettled_ttl: Duration,
    /// Top-level `status` values, lower-cased, that make a body unsettled.
    pub unsettled_statuses: Vec<String>,
}

impl CacheConfig {
    /// The body size limit in force: the smaller of `max_entry_bytes` and `max_bytes` (SPEC §2).
    pub fn entry_limit(&self) -> usize {
        let max_bytes = usize::try_from(self.max_bytes).unwrap_or(usize::MAX);
        self.max_entry_bytes.min(max_bytes)
    }
}

/// Who may see a cached entry (SPEC §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Partition {
    /// Entries are private to one `Authorization` value.
    Credential,
    /// All callers share entries.
    Shared,
}

/// `[log]`: how and how much is logged.
#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// Default `EnvFilter` directive (`RUST_LOG` overrides it).
    pub level: String,
}

/// Line format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// For people.
    Pretty,
}

/// `[fleet]`: replicas sharing one Redis behave as one gateway (SPEC §12).
#[derive(Debug, Clone, Serialize)]
pub struct FleetConfig {
    /// As written (printed with passwords masked); empty: fleet mode off.
    #[serde(serialize_with = "super::mask::masked_urls")]
    pub redis_url: String,
    /// The URLs are Redis Cluster seed nodes.
    pub cluster: bool,
    /// Prefix of every key and channel; fleets with different names share nothing.
    pub name: String,
    /// Key of the credential hash, shared by the fleet (printed masked).
    #[serde(serialize_with = "super::mask::masked_secret")]
    pub partition_secret: String,
    /// Bound on each Redis operation on a request's path.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a write or purge waits for the other live replicas to confirm.
    #[serde(with = "humantime_serde")]
    pub invalidation_wait: Duration,
    /// The URLs, split and checked.
    #[serde(skip)]
    pub urls: Vec<String>,
}

impl FleetConfig {
    /// Whether fleet mode is on.
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }
}
