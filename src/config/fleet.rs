//! `[fleet]`: the checks of fleet mode's keys (SPEC §12).
//!
//! Its own file because fleet mode is one decision with its own rules: the Redis URL(s) and
//! whether they are Cluster seeds, the name every key and channel carries, the secret that
//! makes credential hashes agree across replicas (required whenever a rule keys on a
//! credential), and the two time bounds. Off (`redis_url = ""`), nothing here is used.

use http::Uri;

use super::mask::mask_password;
use super::raw::RawFleet;
use super::settings::{ConfigError, FleetConfig, Partition, Scope};

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, message)
}

/// Checks `[fleet]`; `partition` and `scope` say whether a credential secret is needed.
pub fn validate(
    raw: RawFleet,
    partition: Partition,
    scope: Scope,
) -> Result<FleetConfig, ConfigError> {
    const URL: &str = "fleet.redis_url";
    let urls: Vec<String> = raw
        .redis_url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.len() > 1 && !raw.cluster {
        return Err(invalid(
            URL,
            "several URLs are Cluster seeds: set fleet.cluster = true",
        ));
    }
    for url in &urls {
        let masked = mask_password(url);
        let uri: Uri = url
            .parse()
            .map_err(|e| invalid(URL, format!("{masked:?} is not a URL ({e})")))?;
        if !matches!(uri.scheme_str(), Some("redis" | "rediss")) {
            return Err(invalid(
                URL,
                format!("{masked:?} must start with redis:// or rediss://"),
            ));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid(URL, format!("{masked:?} must name a host")));
        }
    }
    let name = raw.name.trim().to_owned();
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(invalid(
            "fleet.name",
            "must be 1 to 64 letters, digits, '-', '_' or '.' (it prefixes every Redis key)",
        ));
    }
    let secret = raw.partition_secret;
    let keyed = partition == Partition::Credential || scope == Scope::Credential;
    if !secret.is_empty() && secret.len() < 32 {
        return Err(invalid(
            "fleet.partition_secret",
            "must be at least 32 bytes",
        ));
    }
    if !urls.is_empty() && keyed && secret.is_empty() {
        return Err(invalid(
            "fleet.partition_secret",
            "is required in fleet mode while cache.partition or upstream.rate_limit_scope is \
             \"credential\" (at least 32 bytes, the same on every replica)",
        ));
    }
    for (key, value) in [
        ("fleet.timeout", raw.timeout),
        ("fleet.invalidation_wait", raw.invalidation_wait),
    ] {
        if value.is_zero() {
            return Err(invalid(key, "must be greater than zero"));
        }
    }
    Ok(FleetConfig {
        redis_url: raw.redis_url,
        cluster: raw.cluster,
        name,
        partition_secret: secret,
        timeout: raw.timeout,
        invalidation_wait: raw.invalidation_wait,
        urls,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::load::load_env;
    use crate::config::Config;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn off_by_default_and_on_with_a_url_and_a_secret() {
        let c = Config::defaults().expect("defaults");
        assert!(!c.fleet.enabled());
        assert_eq!(c.fleet.name, "partner-gateway");
        assert_eq!(c.fleet.timeout, std::time::Duration::from_millis(50));
        assert_eq!(
            c.fleet.invalidation_wait,
            std::time::Duration::from_millis(250)
        );
        let on = load_env(&[
            (
                "PARTNER_GATEWAY__FLEET__REDIS_URL",
                "redis://:pw@127.0.0.1:6379/0",
            ),
            ("PARTNER_GATEWAY__FLEET__PARTITION_SECRET", SECRET),
        ])
        .expect("valid");
        assert!(on.fleet.enabled());
        let toml = on.to_toml().expect("toml");
        assert!(!toml.contains(":pw@") && !toml.contains(SECRET), "{toml}");
        assert!(toml.contains("redis://:***@127.0.0.1:6379/0"), "{toml}");
    }

    #[test]
    fn fleet_errors_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(
                    "PARTNER_GATEWAY__FLEET__REDIS_URL",
                    "redis://127.0.0.1:6379",
                )],
                "fleet.partition_secret",
            ),
            (
                &[("PARTNER_GATEWAY__FLEET__PARTITION_SECRET", "short")],
                "fleet.partition_secret",
            ),
            (
                &[
                    ("PARTNER_GATEWAY__FLEET__REDIS_URL", "http://127.0.0.1:6379"),
                    ("PARTNER_GATEWAY__FLEET__PARTITION_SECRET", SECRET),
                ],
                "fleet.redis_url",
            ),
            (
                &[
                    (
                        "PARTNER_GATEWAY__FLEET__REDIS_URL",
                        "redis://a:1,redis://b:2",
                    ),
                    ("PARTNER_GATEWAY__FLEET__PARTITION_SECRET", SECRET),
                ],
                "fleet.redis_url",
            ),
            (&[("PARTNER_GATEWAY__FLEET__NAME", "a b")], "fleet.name"),
            (&[("PARTNER_GATEWAY__FLEET__NAME", "{tag}")], "fleet.name"),
            (
                &[("PARTNER_GATEWAY__FLEET__TIMEOUT", "0s")],
                "fleet.timeout",
            ),
            (
                &[("PARTNER_GATEWAY__FLEET__INVALIDATION_WAIT", "400days")],
                "fleet.invalidation_wait",
            ),
        ];
        for (env, key) in cases {
            let err = load_env(env).expect_err(key).to_string();
            assert!(err.contains(key), "{env:?}: {err}");
        }
        // Cluster seeds, and no secret needed when nothing keys on a credential.
        load_env(&[
            (
                "PARTNER_GATEWAY__FLEET__REDIS_URL",
                "redis://a:1, redis://b:2",
            ),
            ("PARTNER_GATEWAY__FLEET__CLUSTER", "true"),
            ("PARTNER_GATEWAY__CACHE__PARTITION", "shared"),
            ("PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_SCOPE", "global"),
        ])
        .expect("valid");
    }
}
