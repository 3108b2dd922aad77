//! The checks serde cannot express, from [`RawConfig`] to [`Config`].
//!
//! This file exists so that every judgement of a value is in one place: socket addresses,
//! `upstream.base_url` (scheme, host, user info kept out of requests), `upstream.ca_file` (read
//! and parsed now, not at the first TLS handshake), minimums, positive durations, distinct
//! listeners and the log filter. Each error is [`ConfigError::Invalid`] naming its key; no input
//! panics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::Uri;
use rustls::pki_types::CertificateDer;

use super::mask::mask_password;
use super::raw::RawConfig;
use super::settings::{
    AdminConfig, CacheConfig, Config, ConfigError, ServerConfig, UpstreamConfig,
};

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, message)
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let s = raw.server;
        let server = ServerConfig {
            listen: socket_addr("server.listen", &s.listen)?,
            header_read_timeout: positive("server.header_read_timeout", s.header_read_timeout)?,
            max_header_bytes: to_usize("server.max_header_bytes", s.max_header_bytes, 8192)?,
            shutdown_grace: s.shutdown_grace,
            max_connections: to_usize("server.max_connections", s.max_connections, 1)?,
            body_read_timeout: positive("server.body_read_timeout", s.body_read_timeout)?,
            max_body_bytes: s.max_body_bytes,
        };
        let admin = AdminConfig {
            listen: socket_addr("admin.listen", &raw.admin.listen)?,
            token: admin_token(raw.admin.token)?,
        };
        if admin.listen == server.listen && server.listen.port() != 0 {
            return Err(invalid(
                "admin.listen",
                "must differ from server.listen (admin is never on the front port)",
            ));
        }

        let u = raw.upstream;
        let base = base_url(&u.base_url)?;
        let (ca_file, extra_roots) = read_roots(&u.ca_file)?;
        let upstream = UpstreamConfig {
            scheme: base.scheme,
            authority: base.authority,
            path_prefix: base.path_prefix,
            base_url: u.base_url,
            connect_timeout: positive("upstream.connect_timeout", u.connect_timeout)?,
            request_timeout: positive("upstream.request_timeout", u.request_timeout)?,
            body_idle_timeout: positive("upstream.body_idle_timeout", u.body_idle_timeout)?,
            ca_file,
            extra_roots,
            pool_idle_timeout: u.pool_idle_timeout,
            pool_max_idle_per_host: to_usize(
                "upstream.pool_max_idle_per_host",
                u.pool_max_idle_per_host,
                0,
            )?,
            max_in_flight: to_usize("upstream.max_in_flight", u.max_in_flight, 1)?,
            queue_timeout: u.queue_timeout,
            rate_limit_rps: to_u32("upstream.rate_limit_rps", u.rate_limit_rps)?,
            rate_limit_burst: to_u32("upstream.rate_limit_burst", u.rate_limit_burst)?,
            rate_limit_scope: u.rate_limit_scope,
        };

        let c = raw.cache;
        if c.max_bytes == 0 {
            return Err(invalid("cache.max_bytes", "must be greater than zero"));
        }
        if c.resources.is_empty() {
            return Err(invalid(
                "cache.resources",
                "names no resource; list at least one of orders, subscriptions, customers \
                 (cache.enabled = false turns the cache off)",
            ));
        }
        // SPEC §15.1: unset, the smaller of 5 s and ttl; set, never longer than ttl.
        let unsettled_ttl = match c.unsettled_ttl {
            None => Duration::from_secs(5).min(c.ttl),
            Some(set) if set > c.ttl => {
                let (set, ttl) = (
                    humantime::format_duration(set),
                    humantime::format_duration(c.ttl),
                );
                return Err(invalid(
                    "cache.unsettled_ttl",
                    format!("{set} is longer than cache.ttl ({ttl}); an unsettled body cannot outlive a settled one"),
                ));
            }
            Some(set) => set,
        };
        let unsettled_statuses = c
            .unsettled_statuses
            .iter()
            .map(|status| status.to_ascii_lowercase())
            .collect();
        // Any max_entry_bytes is valid next to max_bytes (SPEC §2): the smaller one is the
        // limit in force, see `CacheConfig::entry_limit`.
        let cache = CacheConfig {
            enabled: c.enabled,
            max_bytes: c.max_bytes,
            max_entry_bytes: to_usize("cache.max_entry_bytes", c.max_entry_bytes, 1)?,
            ttl: c.ttl,
            stale_while_revalidate: c.stale_while_revalidate,
            stale_if_error: c.stale_if_error,
            negative_ttl: c.negative_ttl,
            partition: c.partition,
            resources: c.resources.into_iter().collect(),
            unsettled_ttl,
            unsettled_statuses,
        };

        let log = super::logs::validate(raw.log)?;

        let fleet = super::fleet::validate(raw.fleet, cache.partition, upstream.rate_limit_scope)?;
        let webhooks = super::webhooks::validate(raw.webhooks)?;
        let audit = super::webhooks::validate_audit(raw.audit)?;

        Ok(Config {
            server,
            admin,
            upstream,
            cache,
            log,
            fleet,
            webhooks,
            audit,
        })
    }
}

/// A bearer token is printable ASCII without spaces (RFC 6750 `b64token` and kin): anything
/// else could never be sent back in an `Authorization` header, so no purge could match it.
fn admin_token(token: String) -> Result<String, ConfigError> {
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(token)
    } else {
        Err(invalid(
            "admin.token",
            "must be printable ASCII without spaces (it is sent as a bearer token)",
        ))
    }
}

fn positive(key: &'static str, d: Duration) -> Result<Duration, ConfigError> {
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

fn to_usize(key: &'static str, value: u64, min: u64) -> Result<usize, ConfigError> {
    if value < min {
        return Err(invalid(key, format!("must be at least {min}, got {value}")));
    }
    usize::try_from(value).map_err(|_| invalid(key, "is too large"))
}

fn to_u32(key: &'static str, value: u64) -> Result<u32, ConfigError> {
    u32::try_from(value).map_err(|_| invalid(key, "is too large"))
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
    // Requests carry the client's own Authorization; user info here would never be sent.
    if authority.as_str().contains('@') {
        return Err(invalid(
            KEY,
            "must not carry user info (it is never sent upstream; clients send their own Authorization)",
        ));
    }
    Ok(BaseUrl {
        scheme,
        authority: authority.clone(),
        path_prefix: uri.path().trim_end_matches('/').to_owned(),
    })
}

type Roots = (Option<PathBuf>, Vec<CertificateDer<'static>>);

fn read_roots(value: &str) -> Result<Roots, ConfigError> {
    if value.is_empty() {
        return Ok((None, Vec::new()));
    }
    let certs = super::webhooks::read_certificates("upstream.ca_file", value)?;
    Ok((Some(PathBuf::from(value)), certs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::load_env;

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
                "PARTNER_GATEWAY__CACHE__RESOURCES",
                "orders,invoices",
                "cache.resources",
            ),
            (
                "PARTNER_GATEWAY__CACHE__RESOURCES",
                " , ",
                "cache.resources",
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
            ("PARTNER_GATEWAY__ADMIN__TOKEN", "two words", "admin.token"),
            ("PARTNER_GATEWAY__LOG__LEVEL", "[[[", "log.level"),
            ("PARTNER_GATEWAY__CACHE__MAX_BYTES", "0", "cache.max_bytes"),
            (
                "PARTNER_GATEWAY__CACHE__MAX_ENTRY_BYTES",
                "0",
                "cache.max_entry_bytes",
            ),
            (
                "PARTNER_GATEWAY__UPSTREAM__CONNECT_TIMEOUT",
                "0s",
                "upstream.connect_timeout",
            ),
            (
                "PARTNER_GATEWAY__UPSTREAM__RATE_LIMIT_RPS",
                "5000000000",
                "upstream.rate_limit_rps",
            ),
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
    fn resources_by_list_or_comma_separated_text() {
        use crate::resource::Resource;
        let c = load_env(&[("PARTNER_GATEWAY__CACHE__RESOURCES", "orders, subscriptions")]);
        let listed: Vec<Resource> = c.expect("valid").cache.resources.iter().collect();
        assert_eq!(listed, [Resource::Orders, Resource::Subscriptions]);
        let default = load_env(&[]).expect("defaults").cache.resources;
        assert_eq!(default.iter().collect::<Vec<_>>(), [Resource::Orders]);
        let printed = load_env(&[]).expect("defaults").to_toml().expect("toml");
        assert!(printed.contains(r#"resources = ["orders"]"#), "{printed}");
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
    fn odd_base_urls_are_errors_not_panics() {
        for url in [
            "",
            "https://",
            "https://@",
            "https://a:b@",
            "http://[::1",
            "https://h?q",
            "https://h#f",
            "https://a@b@c/",
            "//host/x",
            "https://h:99999",
        ] {
            let err = load_env(&[("PARTNER_GATEWAY__UPSTREAM__BASE_URL", url)]);
            if let Err(e) = err {
                assert!(e.to_string().contains("upstream.base_url"), "{url}: {e}");
            }
        }
    }

    #[test]
    fn mask_password_cases() {
        assert_eq!(mask_password("https://a:b@h/p"), "https://a:***@h/p");
        assert_eq!(mask_password("https://a@h/p"), "https://a@h/p");
        assert_eq!(mask_password("https://h/p@x"), "https://h/p@x");
        assert_eq!(mask_password("nonsense"), "nonsense");
    }
}
