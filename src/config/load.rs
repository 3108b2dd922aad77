//! Reading the configuration: the layers of SPEC §2 merged, then checked — the top of the
//! folder, and what the rest of the gateway calls.
//!
//! The `config` crate merges built-in defaults → `./config/default.toml` → `--config FILE` →
//! `PARTNER_GATEWAY__SECTION__KEY`, then serde turns the result into [`RawConfig`]. A value serde
//! cannot read fails here with the `config` crate's message, which ends in "for key
//! `section.key`". Unknown keys are refused here, once (`reject_unknown_keys`). `validate.rs`
//! then makes the [`Config`] the code runs with.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::raw::RawConfig;
use super::settings::{Config, ConfigError};

/// The built-in defaults: the documented `config/default.toml`, compiled in, so the file an
/// operator reads and the values the binary uses cannot drift apart.
pub const DEFAULTS_TOML: &str = include_str!("../../config/default.toml");

/// Prefix of environment overrides: `PARTNER_GATEWAY__SECTION__KEY`.
pub const ENV_PREFIX: &str = "PARTNER_GATEWAY";

/// Where the layers come from; tests fill it by hand, the binary with [`Sources::from_process`].
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Settings of a command's own (TOML), layered over the defaults (built in and
    /// `config/default.toml`) and under `--config` and the environment: the demo's gateway (its
    /// ports, resources) and nothing else.
    pub preset: Option<String>,
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
            preset: None,
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
        // Over the defaults (the working directory's config/default.toml is defaults too),
        // under the operator's --config file and environment.
        if let Some(preset) = sources.preset.as_deref() {
            builder = builder.add_source(File::from_str(preset, FileFormat::Toml));
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
    use crate::config::{LogFormat, Partition, Scope};
    use http::uri::Scheme;
    use std::time::Duration;

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

    /// SPEC §2, §15.1: unset, the smaller of 5 s and ttl; set above ttl, refused naming the key.
    #[test]
    fn unsettled_ttl_defaults_to_the_smaller_of_five_seconds_and_ttl_and_never_exceeds_ttl() {
        let c = load_env(&[]).expect("defaults");
        assert_eq!(c.cache.unsettled_ttl, Duration::from_secs(5));
        assert_eq!(
            c.cache.unsettled_statuses,
            ["pending", "pending_po_upload", "unknown"]
        );
        let c = load_env(&[("PARTNER_GATEWAY__CACHE__TTL", "3s")]).expect("valid");
        assert_eq!(c.cache.unsettled_ttl, Duration::from_secs(3));
        let c = load_env(&[("PARTNER_GATEWAY__CACHE__UNSETTLED_TTL", "0s")]).expect("valid");
        assert_eq!(c.cache.unsettled_ttl, Duration::ZERO);
        let err = load_env(&[
            ("PARTNER_GATEWAY__CACHE__TTL", "10s"),
            ("PARTNER_GATEWAY__CACHE__UNSETTLED_TTL", "11s"),
        ])
        .expect_err("above ttl")
        .to_string();
        assert!(
            err.contains("cache.unsettled_ttl") && err.contains("cache.ttl"),
            "{err}"
        );
        let err = load_env(&[("PARTNER_GATEWAY__CACHE__UNSETTLED_TTL", "soon")]).expect_err("bad");
        assert!(err.to_string().contains("cache.unsettled_ttl"), "{err}");
    }

    #[test]
    fn unsettled_statuses_by_list_or_comma_separated_text_in_any_case() {
        let c = load_env(&[(
            "PARTNER_GATEWAY__CACHE__UNSETTLED_STATUSES",
            " Pending, ,UNKNOWN ",
        )]);
        assert_eq!(
            c.expect("valid").cache.unsettled_statuses,
            ["pending", "unknown"]
        );
        let c = load_env(&[("PARTNER_GATEWAY__CACHE__UNSETTLED_STATUSES", "")]);
        assert!(
            c.expect("valid").cache.unsettled_statuses.is_empty(),
            "the rule off"
        );
    }
}
