//! The effective configuration back to TOML, for `partner-gateway check-config` (SPEC §2).
//!
//! This file exists so printing is serde too: [`Config`] derives `Serialize` with the key names
//! of SPEC §2 (durations via `humantime_serde`, enums by their serde names, derived fields
//! skipped), and the two helpers here cover the values that are not printed as stored: a
//! password inside `upstream.base_url` becomes `***`, and no `upstream.ca_file` prints as `""`.
//! The output loads back to the same values (tested below and in `tests/process.rs`).

use super::settings::{Config, ConfigError};

impl Config {
    /// The effective configuration as loadable TOML, any password in `base_url` masked.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::Load(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::load_env;
    use crate::config::RawConfig;
    use std::time::Duration;

    #[test]
    fn user_info_in_the_base_url_is_refused_and_secrets_are_masked() {
        let err = load_env(&[(
            "PARTNER_GATEWAY__UPSTREAM__BASE_URL",
            "https://svc:s3cret@example.test/x",
        )])
        .expect_err("user info");
        let text = err.to_string();
        assert!(text.contains("upstream.base_url"), "{text}");
        assert!(text.contains("user info"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let c = load_env(&[("PARTNER_GATEWAY__ADMIN__TOKEN", "t0ken-value")]).expect("valid");
        let toml = c.to_toml().expect("toml");
        assert!(!toml.contains("t0ken-value"), "{toml}");
        assert!(toml.contains("token = \"***\""), "{toml}");
        let unset = Config::defaults()
            .expect("defaults")
            .to_toml()
            .expect("toml");
        assert!(unset.contains("token = \"\""), "{unset}");
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
    fn every_value_survives_printing_and_loading() {
        let c = load_env(&[
            ("PARTNER_GATEWAY__SERVER__LISTEN", "[::1]:8081"),
            ("PARTNER_GATEWAY__SERVER__HEADER_READ_TIMEOUT", "1.5s"),
            ("PARTNER_GATEWAY__SERVER__MAX_HEADER_BYTES", "9000"),
            ("PARTNER_GATEWAY__SERVER__SHUTDOWN_GRACE", "0s"),
            ("PARTNER_GATEWAY__ADMIN__LISTEN", "0.0.0.0:9902"),
            ("PARTNER_GATEWAY__UPSTREAM__BASE_URL", "http://h:81/pc/"),
            ("PARTNER_GATEWAY__UPSTREAM__CONNECT_TIMEOUT", "250ms"),
            ("PARTNER_GATEWAY__UPSTREAM__REQUEST_TIMEOUT", "2m"),
            ("PARTNER_GATEWAY__UPSTREAM__POOL_IDLE_TIMEOUT", "1h 1ns"),
            ("PARTNER_GATEWAY__UPSTREAM__POOL_MAX_IDLE_PER_HOST", "0"),
            ("PARTNER_GATEWAY__UPSTREAM__MAX_IN_FLIGHT", "3"),
            ("PARTNER_GATEWAY__UPSTREAM__QUEUE_TIMEOUT", "0s"),
            ("PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_RPS", "7"),
            ("PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_BURST", "9"),
            ("PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_SCOPE", "credential"),
            ("PARTNER_GATEWAY__CACHE__ENABLED", "false"),
            ("PARTNER_GATEWAY__CACHE__MAX_BYTES", "8192"),
            ("PARTNER_GATEWAY__CACHE__STALE_WHILE_REVALIDATE", "0s"),
            ("PARTNER_GATEWAY__CACHE__STALE_IF_ERROR", "2days"),
            ("PARTNER_GATEWAY__CACHE__NEGATIVE_TTL", "10s"),
            ("PARTNER_GATEWAY__CACHE__PARTITION", "shared"),
            ("PARTNER_GATEWAY__LOG__FORMAT", "pretty"),
            (
                "PARTNER_GATEWAY__LOG__LEVEL",
                " warn,partner_gateway=debug ",
            ),
        ])
        .expect("valid");
        let text = c.to_toml().expect("toml");
        let raw: RawConfig = toml::from_str(&text).expect("loadable");
        let back = Config::try_from(raw).expect("valid");
        // Debug covers every field, the derived ones (scheme, authority, prefix) included.
        assert_eq!(format!("{back:?}"), format!("{c:?}"), "{text}");
        assert_eq!(back.to_toml().expect("toml"), text);
        assert!(
            text.contains("max_entry_bytes = 1048576"),
            "as written: {text}"
        );
        assert!(text.contains("ca_file = \"\""), "{text}");
    }
}
