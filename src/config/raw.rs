//! The configuration as written (SPEC §2): every key, read by serde alone.
//!
//! This file exists so that reading is serde's job alone: the merged layers (`load.rs`) become
//! [`RawConfig`] — durations with a bound, enums by their serde names (the one string↔enum
//! table), numbers and booleans from env strings by the `config` crate. It owns every raw
//! struct, `[fleet]`'s included; the checks serde cannot express are in `validate.rs`.

use std::time::Duration;

use serde::de::{Deserializer, IntoDeserializer};
use serde::{Deserialize, Serialize};

use super::settings::{LogFormat, Partition, Scope};
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
    pub fleet: RawFleet,
    /// `[webhooks]`.
    pub webhooks: RawWebhooks,
    /// `[audit]`.
    pub audit: RawAudit,
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
    /// Empty: the smaller of 5 s and `ttl`.
    #[serde(with = "optional_bounded")]
    pub unsettled_ttl: Option<Duration>,
    #[serde(deserialize_with = "words")]
    pub unsettled_statuses: Vec<String>,
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

/// A list of words: a TOML array, or one comma-separated string (the environment form,
/// `PARTNER_GATEWAY__CACHE__UNSETTLED_STATUSES=pending,unknown`), each trimmed, empty ones left
/// out.
fn words<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        List(Vec<String>),
        Text(String),
    }
    let words = match Written::deserialize(deserializer)? {
        Written::List(words) => words,
        Written::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(words
        .into_iter()
        .map(|word| word.trim().to_owned())
        .filter(|word| !word.is_empty())
        .collect())
}

/// `[webhooks]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawWebhooks {
    pub path: String,
    pub relay_url: String,
    #[serde(with = "bounded")]
    pub relay_timeout: Duration,
    pub certificate_file: String,
    #[serde(deserialize_with = "words")]
    pub certificate_hosts: Vec<String>,
    pub ca_file: String,
    pub certificate_issuer: String,
}

/// `[audit]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawAudit {
    #[serde(with = "bounded")]
    pub interval: Duration,
    pub token_file: String,
    #[serde(with = "bounded")]
    pub overlap: Duration,
}

/// `[fleet]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawFleet {
    pub redis_url: String,
    pub cluster: bool,
    pub name: String,
    pub partition_secret: String,
    #[serde(with = "bounded")]
    pub timeout: Duration,
    #[serde(with = "bounded")]
    pub invalidation_wait: Duration,
}

/// Durations as humantime strings, at most [`bounded::MAX`] (SPEC §2): one bound for every
/// duration key, so no value can overflow a timer or a cache's expiry later.
pub mod bounded {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// The longest duration any key accepts: 365 days.
    pub const MAX: Duration = Duration::from_secs(365 * 24 * 60 * 60);

    /// Reads a humantime duration and refuses one longer than [`MAX`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse(&String::deserialize(d)?)
    }

    /// [`deserialize`]'s rule for one text.
    pub fn parse<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
        let value = humantime::parse_duration(text.trim())
            .map_err(|e| E::custom(format!("{text:?} is not a duration like \"30s\" ({e})")))?;
        if value > MAX {
            return Err(E::custom(format!(
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

/// A duration that may be left unset (`""`), bounded as [`bounded`] bounds every duration.
pub mod optional_bounded {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// `""` (or only spaces) is unset; anything else a duration as [`super::bounded`] reads it.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        crate::config::raw::bounded::parse(&text).map(Some)
    }

    /// Writes unset as `""`, a duration the way humantime reads it back.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => humantime_serde::serialize(value, s),
            None => s.serialize_str(""),
        }
    }
}
