//! What the operator asked for, checked once at start-up.
//!
//! Two shapes on purpose: [`RawConfig`] is what the files and the environment say (strings,
//! exactly the keys of SPEC §2), [`Config`] is what the code uses (parsed addresses, durations,
//! URIs, enums). The step between them is the only place a value is judged, and every error it
//! returns names the key, so an operator never has to guess which line was wrong.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;
use serde::{Deserialize, Serialize};

/// The built-in defaults: the documented `config/default.toml`, compiled in, so the file an
/// operator reads and the values the binary uses cannot drift apart.
pub const DEFAULTS_TOML: &str = include_str!("../config/default.toml");

/// Prefix of environment overrides: `PARTNER_GATEWAY__SECTION__KEY`.
pub const ENV_PREFIX: &str = "PARTNER_GATEWAY";

/// Why the configuration cannot be used. The message always names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("unknown config key `{0}`")]
    UnknownKey(String),
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("{0}")]
    Load(String),
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The configuration as written: every key of SPEC §2, nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    pub admin: RawAdmin,
    pub upstream: RawUpstream,
    pub cache: RawCache,
    pub log: RawLog,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: String,
    pub header_read_timeout: String,
    pub max_header_bytes: u64,
    pub shutdown_grace: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub base_url: String,
    pub connect_timeout: String,
    pub request_timeout: String,
    #[serde(default)]
    pub ca_file: String,
    pub pool_idle_timeout: String,
    pub pool_max_idle_per_host: u64,
    pub max_in_flight: u64,
    pub queue_timeout: String,
    pub rate_limit_rps: u64,
    pub rate_limit_burst: u64,
    pub rate_limit_scope: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub enabled: bool,
    pub max_bytes: u64,
    pub max_entry_bytes: u64,
    pub ttl: String,
    pub stale_while_revalidate: String,
    pub stale_if_error: String,
    pub negative_ttl: String,
    pub partition: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: String,
    pub level: String,
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Scheme and authority requests are sent to (user info removed).
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix of `base_url`, without a trailing slash ("" for none).
    pub path_prefix: String,
    /// `base_url` as written, for display (password masked by [`Config::to_raw`]).
    pub base_url: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Extra trusted roots, already read and checked (DER).
    pub ca_file: Option<PathBuf>,
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub max_in_flight: usize,
    pub queue_timeout: Duration,
    pub rate_limit_rps: u32,
    pub rate_limit_burst: u32,
    pub rate_limit_scope: Scope,
}

/// Who shares a rate-limit bucket and an upstream-429 cooldown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Credential,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub enabled: bool,
    pub max_bytes: u64,
    pub max_entry_bytes: usize,
    pub ttl: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub negative_ttl: Duration,
    pub partition: Partition,
}

/// Who may see a cached entry (SPEC §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// Entries are private to one `Authorization` value.
    Credential,
    /// All callers share entries.
    Shared,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
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

    /// The effective configuration as loadable TOML, any password in `base_url` masked.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(&self.to_raw()).map_err(|e| ConfigError::Load(e.to_string()))
    }

    /// Back to the written shape, normalised (durations in humantime form).
    pub fn to_raw(&self) -> RawConfig {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let u = &self.upstream;
        let c = &self.cache;
        RawConfig {
            server: RawServer {
                listen: self.server.listen.to_string(),
                header_read_timeout: d(self.server.header_read_timeout),
                max_header_bytes: self.server.max_header_bytes as u64,
                shutdown_grace: d(self.server.shutdown_grace),
            },
            admin: RawAdmin {
                listen: self.admin.listen.to_string(),
            },
            upstream: RawUpstream {
                base_url: mask_password(&u.base_url),
                connect_timeout: d(u.connect_timeout),
                request_timeout: d(u.request_timeout),
                ca_file: u
                    .ca_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                pool_idle_timeout: d(u.pool_idle_timeout),
                pool_max_idle_per_host: u.pool_max_idle_per_host as u64,
                max_in_flight: u.max_in_flight as u64,
                queue_timeout: d(u.queue_timeout),
                rate_limit_rps: u64::from(u.rate_limit_rps),
                rate_limit_burst: u64::from(u.rate_limit_burst),
                rate_limit_scope: match u.rate_limit_scope {
                    Scope::Global => "global",
                    Scope::Credential => "credential",
                }
                .to_owned(),
            },
            cache: RawCache {
                enabled: c.enabled,
                max_bytes: c.max_bytes,
                max_entry_bytes: c.max_entry_bytes as u64,
                ttl: d(c.ttl),
                stale_while_revalidate: d(c.stale_while_revalidate),
                stale_if_error: d(c.stale_if_error),
                negative_ttl: d(c.negative_ttl),
                partition: match c.partition {
                    Partition::Credential => "credential",
                    Partition::Shared => "shared",
                }
                .to_owned(),
            },
            log: RawLog {
                format: match self.log.format {
                    LogFormat::Json => "json",
                    LogFormat::Pretty => "pretty",
                }
                .to_owned(),
                level: self.log.level.clone(),
            },
        }
    }
}

impl RawConfig {
    /// Merges the layers of SPEC §2 and rejects keys that are not in the defaults.
    pub fn load(sources: &Sources) -> Result<RawConfig, ConfigError> {
        use config::{Environment, File, FileFormat};

        let mut builder =
            config::Config::builder().add_source(File::from_str(DEFAULTS_TOML, FileFormat::Toml));
        if let Some(path) = sources.default_file.as_deref().filter(|p| p.is_file()) {
            check_readable(path)?;
            builder = builder.add_source(File::from(path).format(FileFormat::Toml));
        }
        if let Some(path) = sources.file.as_deref() {
            check_readable(path)?;
            builder = builder.add_source(File::from(path).format(FileFormat::Toml));
        }
        let env: HashMap<String, String> = sources
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .source(Some(env)),
        );
        let merged = builder
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        reject_unknown_keys(&merged)?;
        merged
            .try_deserialize::<RawConfig>()
            .map_err(|e| ConfigError::Load(e.to_string()))
    }
}

fn check_readable(path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    // Parse here too so a syntax error is reported against this file, with its line.
    text.parse::<toml::Table>()
        .map(|_| ())
        .map_err(|e| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// Every key must be one the defaults define: a typo must not silently fall back to a default.
fn reject_unknown_keys(merged: &config::Config) -> Result<(), ConfigError> {
    let known: toml::Table = DEFAULTS_TOML
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Load(e.to_string()))?;
    let given: HashMap<String, config::Value> = merged
        .clone()
        .try_deserialize()
        .map_err(|e| ConfigError::Load(e.to_string()))?;
    let mut unknown = Vec::new();
    for (section, value) in given {
        let Some(known_section) = known.get(&section).and_then(|v| v.as_table()) else {
            unknown.push(section);
            continue;
        };
        match value.into_table() {
            Ok(table) => unknown.extend(
                table
                    .into_keys()
                    .filter(|k| !known_section.contains_key(k))
                    .map(|k| format!("{section}.{k}")),
            ),
            Err(_) => {
                return Err(ConfigError::Load(format!(
                    "config key `{section}` must be a table"
                )))
            }
        }
    }
    unknown.sort();
    match unknown.into_iter().next() {
        Some(key) => Err(ConfigError::UnknownKey(key)),
        None => Ok(()),
    }
}

fn duration(key: &'static str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        invalid(
            key,
            format!("{value:?} is not a duration like \"30s\" ({e})"),
        )
    })
}

fn positive_duration(key: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let d = duration(key, value)?;
    if d.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(d)
}

fn socket_addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            format!("{value:?} is not an IP:port address like \"127.0.0.1:8080\""),
        )
    })
}

fn one_of<T: Copy>(
    key: &'static str,
    value: &str,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    choices
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<_> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            invalid(
                key,
                format!("{value:?} is not one of {}", names.join(" or ")),
            )
        })
}

fn to_usize(key: &'static str, value: u64, min: u64) -> Result<usize, ConfigError> {
    if value < min {
        return Err(invalid(key, format!("must be at least {min}, got {value}")));
    }
    usize::try_from(value).map_err(|_| invalid(key, "is too large"))
}

fn to_u32(key: &'static str, value: u64) -> Result<u32, ConfigError> {
    u32::try_from(value).map_err(|_| invalid(key, "is too large"))
}

/// Replaces the password of `scheme://user:password@host` with `***`.
pub fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    match authority[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &url[scheme_end + 3 + at..]
        ),
        None => url.to_owned(),
    }
}

struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    path_prefix: String,
}

fn base_url(value: &str) -> Result<BaseUrl, ConfigError> {
    const KEY: &str = "upstream.base_url";
    let uri: Uri = value.parse().map_err(|e| {
        invalid(
            KEY,
            format!("{:?} is not a URL ({e})", mask_password(value)),
        )
    })?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return Err(invalid(KEY, "must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| invalid(KEY, "must name a host"))?;
    if authority.host().is_empty() {
        return Err(invalid(KEY, "must name a host"));
    }
    if uri.query().is_some() || value.contains('#') {
        return Err(invalid(KEY, "must not carry a query or fragment"));
    }
    // User info is for display only; requests carry the client's own Authorization.
    let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    let authority: Authority = host_port
        .parse()
        .map_err(|e| invalid(KEY, format!("bad host ({e})")))?;
    Ok(BaseUrl {
        scheme,
        authority,
        path_prefix: uri.path().trim_end_matches('/').to_owned(),
    })
}

fn read_roots(
    value: &str,
) -> Result<
    (
        Option<PathBuf>,
        Vec<rustls::pki_types::CertificateDer<'static>>,
    ),
    ConfigError,
> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    const KEY: &str = "upstream.ca_file";
    if value.is_empty() {
        return Ok((None, Vec::new()));
    }
    let path = PathBuf::from(value);
    let pem = std::fs::read(&path).map_err(|e| invalid(KEY, format!("{value:?}: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(KEY, format!("{value:?}: not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(invalid(KEY, format!("{value:?} holds no PEM certificate")));
    }
    Ok((Some(path), certs))
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let server = ServerConfig {
            listen: socket_addr("server.listen", &raw.server.listen)?,
            header_read_timeout: positive_duration(
                "server.header_read_timeout",
                &raw.server.header_read_timeout,
            )?,
            max_header_bytes: to_usize(
                "server.max_header_bytes",
                raw.server.max_header_bytes,
                8192,
            )?,
            shutdown_grace: duration("server.shutdown_grace", &raw.server.shutdown_grace)?,
        };
        let admin = AdminConfig {
            listen: socket_addr("admin.listen", &raw.admin.listen)?,
        };
        if admin.listen == server.listen && server.listen.port() != 0 {
            return Err(invalid(
                "admin.listen",
                "must differ from server.listen (admin is never on the front port)",
            ));
        }

        let u = &raw.upstream;
        let base = base_url(&u.base_url)?;
        let (ca_file, extra_roots) = read_roots(&u.ca_file)?;
        let upstream = UpstreamConfig {
            scheme: base.scheme,
            authority: base.authority,
            path_prefix: base.path_prefix,
            base_url: u.base_url.clone(),
            connect_timeout: positive_duration("upstream.connect_timeout", &u.connect_timeout)?,
            request_timeout: positive_duration("upstream.request_timeout", &u.request_timeout)?,
            ca_file,
            extra_roots,
            pool_idle_timeout: duration("upstream.pool_idle_timeout", &u.pool_idle_timeout)?,
            pool_max_idle_per_host: to_usize(
                "upstream.pool_max_idle_per_host",
                u.pool_max_idle_per_host,
                0,
            )?,
            max_in_flight: to_usize("upstream.max_in_flight", u.max_in_flight, 1)?,
            queue_timeout: duration("upstream.queue_timeout", &u.queue_timeout)?,
            rate_limit_rps: to_u32("upstream.rate_limit_rps", u.rate_limit_rps)?,
            rate_limit_burst: to_u32("upstream.rate_limit_burst", u.rate_limit_burst)?,
            rate_limit_scope: one_of(
                "upstream.rate_limit_scope",
                &u.rate_limit_scope,
                &[("global", Scope::Global), ("credential", Scope::Credential)],
            )?,
        };

        let c = &raw.cache;
        if c.max_bytes == 0 {
            return Err(invalid("cache.max_bytes", "must be greater than zero"));
        }
        let cache = CacheConfig {
            enabled: c.enabled,
            max_bytes: c.max_bytes,
            max_entry_bytes: to_usize("cache.max_entry_bytes", c.max_entry_bytes, 1)?,
            ttl: duration("cache.ttl", &c.ttl)?,
            stale_while_revalidate: duration(
                "cache.stale_while_revalidate",
                &c.stale_while_revalidate,
            )?,
            stale_if_error: duration("cache.stale_if_error", &c.stale_if_error)?,
            negative_ttl: duration("cache.negative_ttl", &c.negative_ttl)?,
            partition: one_of(
                "cache.partition",
                &c.partition,
                &[
                    ("credential", Partition::Credential),
                    ("shared", Partition::Shared),
                ],
            )?,
        };
        if cache.max_entry_bytes as u64 > cache.max_bytes {
            return Err(invalid(
                "cache.max_entry_bytes",
                "must not exceed cache.max_bytes",
            ));
        }

        let log = LogConfig {
            format: one_of(
                "log.format",
                &raw.log.format,
                &[("json", LogFormat::Json), ("pretty", LogFormat::Pretty)],
            )?,
            level: {
                let level = raw.log.level.trim().to_owned();
                tracing_subscriber::EnvFilter::builder()
                    .parse(&level)
                    .map_err(|e| invalid("log.level", format!("{level:?}: {e}")))?;
                level
            },
        };

        Ok(Config {
            server,
            admin,
            upstream,
            cache,
            log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Sources {
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Sources::default()
        })
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::defaults().expect("defaults are valid");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.max_header_bytes, 65536);
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9901");
        assert_eq!(c.upstream.scheme, Scheme::HTTPS);
        assert_eq!(c.upstream.authority, "api.partnercenter.microsoft.com");
        assert_eq!(c.upstream.path_prefix, "");
        assert_eq!(c.upstream.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.upstream.request_timeout, Duration::from_secs(30));
        assert!(c.upstream.ca_file.is_none());
        assert_eq!(c.upstream.pool_idle_timeout, Duration::from_secs(90));
        assert_eq!(c.upstream.pool_max_idle_per_host, 64);
        assert_eq!(c.upstream.max_in_flight, 256);
        assert_eq!(c.upstream.queue_timeout, Duration::from_secs(1));
        assert_eq!(c.upstream.rate_limit_rps, 0);
        assert_eq!(c.upstream.rate_limit_burst, 0);
        assert_eq!(c.upstream.rate_limit_scope, Scope::Global);
        assert!(c.cache.enabled);
        assert_eq!(c.cache.max_bytes, 268_435_456);
        assert_eq!(c.cache.max_entry_bytes, 1_048_576);
        assert_eq!(c.cache.ttl, Duration::from_secs(30));
        assert_eq!(c.cache.stale_while_revalidate, Duration::from_secs(30));
        assert_eq!(c.cache.stale_if_error, Duration::from_secs(300));
        assert_eq!(c.cache.negative_ttl, Duration::ZERO);
        assert_eq!(c.cache.partition, Partition::Credential);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "info");
    }

    #[test]
    fn environment_overrides_and_parses() {
        let c = load_env(&[
            (
                "PARTNER_GATEWAY__UPSTREAM__BASE_URL",
                "http://127.0.0.1:9/pc/",
            ),
            ("PARTNER_GATEWAY__CACHE__TTL", "250ms"),
            ("PARTNER_GATEWAY__CACHE__ENABLED", "false"),
            ("PARTNER_GATEWAY__SERVER__MAX_HEADER_BYTES", "9000"),
            ("UNRELATED", "x"),
        ])
        .expect("valid");
        assert_eq!(c.upstream.scheme, Scheme::HTTP);
        assert_eq!(c.upstream.path_prefix, "/pc");
        assert_eq!(c.cache.ttl, Duration::from_millis(250));
        assert!(!c.cache.enabled);
        assert_eq!(c.server.max_header_bytes, 9000);
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("PARTNER_GATEWAY__SERVER__BOGUS", "1", "server.bogus"),
            ("PARTNER_GATEWAY__NOPE__X", "1", "nope"),
            ("PARTNER_GATEWAY__CACHE__TTL", "soon", "cache.ttl"),
            (
                "PARTNER_GATEWAY__UPSTREAM__BASE_URL",
                "ftp://x",
                "upstream.base_url",
            ),
            (
                "PARTNER_GATEWAY__UPSTREAM__BASE_URL",
                "not a url",
                "upstream.base_url",
            ),
            (
                "PARTNER_GATEWAY__SERVER__LISTEN",
                "localhost",
                "server.listen",
            ),
            ("PARTNER_GATEWAY__ADMIN__LISTEN", "1.2.3:4", "admin.listen"),
            (
                "PARTNER_GATEWAY__CACHE__PARTITION",
                "tenant",
                "cache.partition",
            ),
            (
                "PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_SCOPE",
                "x",
                "upstream.rate_limit_scope",
            ),
            (
                "PARTNER_GATEWAY__SERVER__MAX_HEADER_BYTES",
                "8191",
                "server.max_header_bytes",
            ),
            (
                "PARTNER_GATEWAY__SERVER__MAX_HEADER_BYTES",
                "lots",
                "server.max_header_bytes",
            ),
            (
                "PARTNER_GATEWAY__UPSTREAM__CA_FILE",
                "/nonexistent.pem",
                "upstream.ca_file",
            ),
            (
                "PARTNER_GATEWAY__UPSTREAM__MAX_IN_FLIGHT",
                "0",
                "upstream.max_in_flight",
            ),
            ("PARTNER_GATEWAY__LOG__FORMAT", "xml", "log.format"),
            ("PARTNER_GATEWAY__LOG__LEVEL", "[[[", "log.level"),
            ("PARTNER_GATEWAY__CACHE__MAX_BYTES", "0", "cache.max_bytes"),
        ];
        for (key, value, named) in cases {
            let err = load_env(&[(key, value)]).expect_err(key).to_string();
            assert!(
                err.contains(named),
                "{key}={value}: {err:?} should name {named}"
            );
        }
    }

    #[test]
    fn admin_must_not_share_the_front_port() {
        let err = load_env(&[
            ("PARTNER_GATEWAY__SERVER__LISTEN", "127.0.0.1:7000"),
            ("PARTNER_GATEWAY__ADMIN__LISTEN", "127.0.0.1:7000"),
        ])
        .expect_err("same port");
        assert!(err.to_string().contains("admin.listen"));
    }

    #[test]
    fn user_info_is_kept_out_of_requests_and_masked() {
        let c = load_env(&[(
            "PARTNER_GATEWAY__UPSTREAM__BASE_URL",
            "https://svc:s3cret@example.test/x",
        )])
        .expect("valid");
        assert_eq!(c.upstream.authority, "example.test");
        let toml = c.to_toml().expect("toml");
        assert!(!toml.contains("s3cret"), "{toml}");
        assert!(toml.contains("https://svc:***@example.test/x"), "{toml}");
    }

    #[test]
    fn effective_toml_loads_back() {
        let c = load_env(&[("PARTNER_GATEWAY__CACHE__TTL", "1m 30s")]).expect("valid");
        let text = c.to_toml().expect("toml");
        let raw: RawConfig = toml::from_str(&text).expect("loadable");
        let back = Config::try_from(raw).expect("valid");
        assert_eq!(back.cache.ttl, Duration::from_secs(90));
    }

    #[test]
    fn mask_password_cases() {
        assert_eq!(mask_password("https://a:b@h/p"), "https://a:***@h/p");
        assert_eq!(mask_password("https://a@h/p"), "https://a@h/p");
        assert_eq!(mask_password("https://h/p@x"), "https://h/p@x");
        assert_eq!(mask_password("nonsense"), "nonsense");
    }
}
