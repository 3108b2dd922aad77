//! What the operator asked for, checked once at start-up.
//!
//! Two shapes on purpose: [`RawConfig`] (in `raw.rs`) is what the files and the environment say,
//! exactly the keys of SPEC §2, read by serde; [`Config`] (here) is what the code uses (parsed
//! addresses, URIs, limits). `validate.rs` is the one step between them that judges a value
//! serde cannot, and every error names the key, so an operator never has to guess which line
//! was wrong. `print.rs` turns a [`Config`] back into loadable TOML for `check-config`.

mod fleet;
mod print;
mod raw;
mod validate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use serde::{Deserialize, Serialize};

use crate::resource::Resources;

pub use fleet::{FleetConfig, RawFleet};
pub use raw::{RawAdmin, RawCache, RawConfig, RawLog, RawServer, RawUpstream};
pub use validate::mask_password;

/// The built-in defaults: the documented `config/default.toml`, compiled in, so the file an
/// operator reads and the values the binary uses cannot drift apart.
pub const DEFAULTS_TOML: &str = include_str!("../../config/default.toml");

/// Prefix of environment overrides: `PARTNER_GATEWAY__SECTION__KEY`.
pub const ENV_PREFIX: &str = "PARTNER_GATEWAY";

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
    #[serde(serialize_with = "print::masked_secret")]
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
    #[serde(serialize_with = "print::masked_url")]
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
    #[serde(serialize_with = "print::path_or_empty")]
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

/// Where the layers come from; tests fill it by hand, the binary with [`Sources::from_process`].
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `config/default.toml` relative to the working directory, used when it exists.
    pub default_file: Option<PathBuf>,
    /// `--config FILE`: must exist.
    pub file: Option<PathBuf>,
    /// Environment variables (only those starting with `PARTNER_GATEWAY__` are read).
    pub env: HashMap<String, String>,
}

impl Sources {
    /// The layers SPEC §2 names, read from this process's working directory and environment.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        Sources {
            default_file: Some(PathBuf::from("config/default.toml")),
            file,
            env: std::env::vars().collect(),
        }
    }
}

impl Config {
    /// Loads the layers and validates the result.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        Config::try_from(RawConfig::load(sources)?)
    }

    /// Loads only the built-in defaults (handy for tests and the demo).
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::load(&Sources::default())
    }
}

#[cfg(test)]
pub(crate) fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load(&Sources {
        env: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Sources::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::defaults().expect("defaults are valid");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.max_header_bytes, 65536);
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.server.max_connections, 10_000);
        assert_eq!(c.server.body_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.max_body_bytes, 10_485_760);
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9901");
        assert_eq!(c.admin.token, "");
        assert_eq!(c.upstream.scheme, Scheme::HTTPS);
        assert_eq!(c.upstream.authority, "api.partnercenter.microsoft.com");
        assert_eq!(c.upstream.path_prefix, "");
        assert_eq!(c.upstream.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.upstream.request_timeout, Duration::from_secs(30));
        assert_eq!(c.upstream.body_idle_timeout, Duration::from_secs(30));
        assert!(c.upstream.ca_file.is_none());
        assert_eq!(c.upstream.pool_idle_timeout, Duration::from_secs(90));
        assert_eq!(c.upstream.pool_max_idle_per_host, 64);
        assert_eq!(c.upstream.max_in_flight, 256);
        assert_eq!(c.upstream.queue_timeout, Duration::from_secs(1));
        assert_eq!(c.upstream.rate_limit_rps, 0);
        assert_eq!(c.upstream.rate_limit_burst, 0);
        assert_eq!(c.upstream.rate_limit_scope, Scope::Credential);
        assert!(c.cache.enabled);
        assert_eq!(c.cache.max_bytes, 268_435_456);
        assert_eq!(c.cache.max_entry_bytes, 1_048_576);
        assert_eq!(c.cache.entry_limit(), 1_048_576);
        assert_eq!(c.cache.ttl, Duration::from_secs(30));
        assert_eq!(c.cache.stale_while_revalidate, Duration::from_secs(30));
        assert_eq!(c.cache.stale_if_error, Duration::from_secs(300));
        assert_eq!(c.cache.negative_ttl, Duration::ZERO);
        assert_eq!(c.cache.partition, Partition::Credential);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "info");
    }

    #[test]
    fn max_bytes_below_max_entry_bytes_loads_and_limits_entries() {
        // SPEC §2: any combination is valid, the smaller of the two is the limit in force.
        let c = load_env(&[("PARTNER_GATEWAY__CACHE__MAX_BYTES", "8192")]).expect("valid");
        assert_eq!(c.cache.max_bytes, 8192);
        assert_eq!(c.cache.max_entry_bytes, 1_048_576, "kept as written");
        assert_eq!(c.cache.entry_limit(), 8192);

        let c = load_env(&[("PARTNER_GATEWAY__CACHE__MAX_ENTRY_BYTES", "4096")]).expect("valid");
        assert_eq!(c.cache.entry_limit(), 4096);
    }
}
