//! The configuration as written, and the layers it is merged from (SPEC §2).
//!
//! This file exists so that reading is serde's job alone: the `config` crate merges built-in
//! defaults → `./config/default.toml` → `--config FILE` → `PARTNER_GATEWAY__SECTION__KEY`, then
//! serde turns the result into [`RawConfig`] — durations with `humantime_serde`, enums by their
//! serde names (the one string↔enum table), numbers and booleans from env strings by the
//! `config` crate. A value serde cannot read fails here with the `config` crate's message, which
//! ends in "for key `section.key`". Unknown keys are refused here, once (`reject_unknown_keys`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::de::{Deserializer, IntoDeserializer};
use serde::{Deserialize, Serialize};

use super::{ConfigError, LogFormat, Partition, Scope, Sources, DEFAULTS_TOML, ENV_PREFIX};
use crate::resource::Resource;

/// The configuration as written: every key of SPEC §2, nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawConfig {
    /// `[server]`.
    pub server: RawServer,
    /// `[admin]`.
    pub admin: RawAdmin,
    /// `[upstream]`.
    pub upstream: RawUpstream,
    /// `[cache]`.
    pub cache: RawCache,
    /// `[log]`.
    pub log: RawLog,
    /// `[fleet]`.
    pub fleet: super::fleet::RawFleet,
}

/// `[server]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawServer {
    pub listen: String,
    #[serde(with = "bounded")]
    pub header_read_timeout: Duration,
    pub max_header_bytes: u64,
    #[serde(with = "bounded")]
    pub shutdown_grace: Duration,
    pub max_connections: u64,
    #[serde(with = "bounded")]
    pub body_read_timeout: Duration,
    pub max_body_bytes: u64,
}

/// `[admin]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawAdmin {
    pub listen: String,
    pub token: String,
}

/// `[upstream]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawUpstream {
    pub base_url: String,
    #[serde(with = "bounded")]
    pub connect_timeout: Duration,
    #[serde(with = "bounded")]
    pub request_timeout: Duration,
    #[serde(with = "bounded")]
    pub body_idle_timeout: Duration,
    #[serde(default)]
    pub ca_file: String,
    #[serde(with = "bounded")]
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: u64,
    pub max_in_flight: u64,
    #[serde(with = "bounded")]
    pub queue_timeout: Duration,
    pub rate_limit_rps: u64,
    pub rate_limit_burst: u64,
    #[serde(deserialize_with = "by_name")]
    pub rate_limit_scope: Scope,
}

/// `[cache]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawCache {
    pub enabled: bool,
    pub max_bytes: u64,
    pub max_entry_bytes: u64,
    #[serde(with = "bounded")]
    pub ttl: Duration,
    #[serde(with = "bounded")]
    pub stale_while_revalidate: Duration,
    #[serde(with = "bounded")]
    pub stale_if_error: Duration,
    #[serde(with = "bounded")]
    pub negative_ttl: Duration,
    #[serde(deserialize_with = "by_name")]
    pub partition: Partition,
    #[serde(deserialize_with = "names")]
    pub resources: Vec<Resource>,
}

/// `[log]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawLog {
    #[serde(deserialize_with = "by_name")]
    pub format: LogFormat,
    pub level: String,
}

/// Reads a unit enum from its name via serde's own variant table. Going through a plain string
/// gives serde's "unknown variant `x`, expected `a` or `b`" instead of the `config` crate's
/// "enum X does not have variant constructor x", and refuses a table where a name belongs.
fn by_name<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let name = String::deserialize(deserializer)?;
    T::deserialize(name.as_str().into_deserializer())
        .map_err(|e: serde::de::value::Error| serde::de::Error::custom(e))
}

/// A list of unit enums by name, each read as [`by_name`] reads one: a TOML array, or one
/// comma-separated string (the environment form, `PARTNER_GATEWAY__CACHE__RESOURCES=orders,
/// subscriptions`; the `config` crate's own list parsing would also turn other strings into
/// numbers).
fn names<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        List(Vec<String>),
        Text(String),
    }
    let names: Vec<String> = match Written::deserialize(deserializer)? {
        Written::List(names) => names,
        Written::Text(text) => text
            .split(',')
            .filter(|name| !name.trim().is_empty())
            .map(str::to_owned)
            .collect(),
    };
    names
        .iter()
        .map(|name| {
            T::deserialize(name.trim().into_deserializer())
                .map_err(|e: serde::de::value::Error| serde::de::Error::custom(e))
        })
        .collect()
}

/// Durations as humantime strings, at most [`bounded::MAX`] (SPEC §2): one bound for every
/// duration key, so no value can overflow a timer or a cache's expiry later.
pub(super) mod bounded {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// The longest duration any key accepts: 365 days.
    pub const MAX: Duration = Duration::from_secs(365 * 24 * 60 * 60);

    /// Reads a humantime duration and refuses one longer than [`MAX`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        let value = humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!("{text:?} is not a duration like \"30s\" ({e})"))
        })?;
        if value > MAX {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is longer than the most any duration may be, 365 days"
            )));
        }
        Ok(value)
    }

    /// Writes a duration the way humantime reads it back.
    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        humantime_serde::serialize(value, s)
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
        let prefix = format!("{ENV_PREFIX}__");
        let env: HashMap<String, String> = sources
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Values stay strings: the `config` crate converts them when serde asks for a number
        // or a boolean, so "8192" and "false" work, and a string key never turns into a number.
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
/// The only place unknown keys are refused; it names the full `section.key`, which serde's
/// `deny_unknown_fields` cannot.
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

#[cfg(test)]
mod tests {
    use super::super::load_env;
    use super::*;
    use http::uri::Scheme;

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
    fn every_kind_of_value_reads_from_an_environment_string() {
        let c = load_env(&[
            ("PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_SCOPE", "credential"),
            ("PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_RPS", "50"),
            ("PARTNER_GATEWAY__UPSTREAM__QUEUE_TIMEOUT", "1m 30s"),
            ("PARTNER_GATEWAY__CACHE__PARTITION", "shared"),
            ("PARTNER_GATEWAY__CACHE__MAX_BYTES", "1000000"),
            ("PARTNER_GATEWAY__CACHE__NEGATIVE_TTL", "1.5s"),
            ("PARTNER_GATEWAY__LOG__FORMAT", "pretty"),
            ("PARTNER_GATEWAY__LOG__LEVEL", "debug"),
        ])
        .expect("valid");
        assert_eq!(c.upstream.rate_limit_scope, Scope::Credential);
        assert_eq!(c.upstream.rate_limit_rps, 50);
        assert_eq!(c.upstream.queue_timeout, Duration::from_secs(90));
        assert_eq!(c.cache.partition, Partition::Shared);
        assert_eq!(c.cache.max_bytes, 1_000_000);
        assert_eq!(c.cache.negative_ttl, Duration::from_millis(1500));
        assert_eq!(c.log.format, LogFormat::Pretty);
        assert_eq!(c.log.level, "debug");
    }

    #[test]
    fn unreadable_values_name_the_key() {
        for (var, value, key, says) in [
            ("CACHE__TTL", "soon", "cache.ttl", "is not a duration"),
            (
                "CACHE__TTL",
                "5000years",
                "cache.ttl",
                "longer than the most any duration may be, 365 days",
            ),
            (
                "SERVER__BODY_READ_TIMEOUT",
                "366days",
                "server.body_read_timeout",
                "365 days",
            ),
            (
                "SERVER__MAX_HEADER_BYTES",
                "lots",
                "server.max_header_bytes",
                "expected an integer",
            ),
            (
                "CACHE__PARTITION",
                "tenant",
                "cache.partition",
                "expected `credential` or `shared`",
            ),
            (
                "LOG__FORMAT",
                "xml",
                "log.format",
                "expected `json` or `pretty`",
            ),
            ("CACHE__ENABLED", "maybe", "cache.enabled", "bool"),
        ] {
            let var = format!("{ENV_PREFIX}__{var}");
            let err = load_env(&[(&var, value)]).expect_err(&var).to_string();
            assert!(err.contains(&format!("`{key}`")), "{var}={value}: {err}");
            assert!(err.contains(says), "{var}={value}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_named_in_full() {
        for (var, named) in [
            (
                "PARTNER_GATEWAY__SERVER__BOGUS",
                "unknown config key `server.bogus`",
            ),
            ("PARTNER_GATEWAY__NOPE__X", "unknown config key `nope`"),
            ("PARTNER_GATEWAY__NOPE", "unknown config key `nope`"),
            (
                "PARTNER_GATEWAY__SERVER",
                "config key `server` must be a table",
            ),
        ] {
            let err = load_env(&[(var, "1")]).expect_err(var).to_string();
            assert_eq!(err, named, "{var}");
        }
    }

    #[test]
    fn a_file_layer_overrides_the_defaults_and_is_checked() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("pg-raw-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, "[cache]\nttl = \"45s\"\nbogus = 1\n").expect("write");
        let sources = Sources {
            file: Some(path.clone()),
            ..Sources::default()
        };
        let err = RawConfig::load(&sources).expect_err("unknown key");
        assert_eq!(err.to_string(), "unknown config key `cache.bogus`");

        std::fs::write(&path, "[cache]\nttl = \"45s\"\n").expect("write");
        let raw = RawConfig::load(&sources).expect("valid");
        assert_eq!(raw.cache.ttl, Duration::from_secs(45));

        std::fs::write(&path, "[cache\n").expect("write");
        let err = RawConfig::load(&sources).expect_err("not TOML").to_string();
        assert!(err.starts_with("config file "), "{err}");
        let _ = std::fs::remove_file(path);
    }
}
