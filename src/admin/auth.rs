//! Who may purge the cache on the admin listener (SPEC §8).
//!
//! The admin `GET` endpoints are open for probes and scrapers, but a purge sends every caller
//! of the purged entries to Partner Center at once, into its throttling. So a purge needs the
//! bearer `admin.token` when one is set, and comes from a loopback peer when none is. The
//! decision is one pure function of (peer address, configured token, request headers), kept
//! apart from the listener so that every case — a non-loopback peer included — is tested
//! without leaving loopback.

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, AUTHORIZATION};
use subtle::ConstantTimeEq;

use crate::config::AdminConfig;
use crate::error::GatewayError;

/// Whether a purge from `peer` with `headers` may run, given the configured `admin.token`.
///
/// - token set: exactly one `Authorization: Bearer <token>` field (scheme in any case), else
///   [`GatewayError::AdminUnauthorized`] — from loopback too;
/// - token empty: accepted from a loopback peer (127.0.0.0/8, `::1`, IPv4-mapped loopback),
///   else [`GatewayError::AdminForbidden`].
pub fn authorize_purge(peer: IpAddr, token: &str, headers: &HeaderMap) -> Result<(), GatewayError> {
    if token.is_empty() {
        return if is_loopback(peer) {
            Ok(())
        } else {
            Err(GatewayError::AdminForbidden)
        };
    }
    let mut fields = headers.get_all(AUTHORIZATION).iter();
    let (Some(field), None) = (fields.next(), fields.next()) else {
        return Err(GatewayError::AdminUnauthorized);
    };
    match bearer_credentials(field.as_bytes()) {
        Some(presented) if same_secret(presented, token.as_bytes()) => Ok(()),
        _ => Err(GatewayError::AdminUnauthorized),
    }
}

/// A loopback address, IPv4-mapped IPv6 (`::ffff:127.0.0.1`, what a dual-stack `[::]`
/// listener sees for an IPv4 peer) included.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The credentials of `Bearer <credentials>` (RFC 6750 §2.1; the scheme is case-insensitive,
/// RFC 9110 §11.1), or `None` for another scheme or empty credentials.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let scheme = value.get(..SCHEME.len())?;
    let rest = value.get(SCHEME.len()..)?;
    if !scheme.eq_ignore_ascii_case(SCHEME) || rest.first() != Some(&b' ') {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    rest.get(start..)
}

/// Compares two secrets in constant time, their lengths included: both are hashed to 32
/// bytes first, then the digests are compared without an early exit.
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    let presented = blake3::hash(presented);
    let expected = blake3::hash(expected);
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Whether an admin listener on `listen` with `token` takes connections from other hosts
/// while no token guards its purges (SPEC §8: worth a warning at start).
pub fn is_unguarded(listen: SocketAddr, token: &str) -> bool {
    token.is_empty() && !is_loopback(listen.ip())
}

/// Logs one structured warning when the admin listener is reachable from other hosts without
/// a token. Call it once, at start.
pub fn warn_if_unguarded(admin: &AdminConfig) {
    if is_unguarded(admin.listen, &admin.token) {
        tracing::warn!(
            admin_listen = %admin.listen,
            admin_token_set = false,
            "admin listener is not on loopback and admin.token is empty: purges from other \
             hosts are refused (403 AdminForbidden); set admin.token to allow them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TOKEN: &str = "s3cret-Token_42";

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                AUTHORIZATION,
                HeaderValue::from_bytes(v).expect("header value"),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn without_a_token_only_loopback_peers_may_purge() {
        for (peer, allowed) in [
            ("127.0.0.1", true),
            ("127.255.0.9", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:127.8.9.10", true),
            ("10.0.0.1", false),
            ("192.168.1.20", false),
            ("0.0.0.0", false),
            ("::", false),
            ("::ffff:10.0.0.1", false),
            ("fe80::1", false),
            ("2001:db8::1", false),
            // IPv4-compatible (deprecated), not IPv4-mapped: not loopback.
            ("::127.0.0.1", false),
        ] {
            let got = authorize_purge(ip(peer), "", &HeaderMap::new());
            if allowed {
                assert!(got.is_ok(), "{peer}: {got:?}");
            } else {
                assert!(
                    matches!(got, Err(GatewayError::AdminForbidden)),
                    "{peer}: {got:?}"
                );
            }
            // A header changes nothing while no token is set.
            let with_header = authorize_purge(ip(peer), "", &headers(&[b"Bearer x"]));
            assert_eq!(with_header.is_ok(), allowed, "{peer} with a header");
        }
    }

    #[test]
    fn with_a_token_every_peer_needs_the_bearer_token() {
        let right = format!("Bearer {TOKEN}");
        let lower = format!("bearer {TOKEN}");
        let upper = format!("BEARER {TOKEN}");
        let spaces = format!("Bearer   {TOKEN}");
        let longer = format!("Bearer {TOKEN}x");
        let shorter = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
        let other_case = format!("Bearer {}", TOKEN.to_ascii_uppercase());
        let basic = format!("Basic {TOKEN}");
        let no_space = format!("Bearer{TOKEN}");
        let tab = format!("Bearer\t{TOKEN}");
        let twice = format!("Bearer {TOKEN} {TOKEN}");
        let cases: &[(&[&[u8]], bool)] = &[
            (&[right.as_bytes()], true),
            (&[lower.as_bytes()], true),
            (&[upper.as_bytes()], true),
            (&[spaces.as_bytes()], true),
            (&[], false),
            (&[b"Bearer"], false),
            (&[b"Bearer "], false),
            (&[b"Bearer wrong"], false),
            (&[longer.as_bytes()], false),
            (&[shorter.as_bytes()], false),
            (&[other_case.as_bytes()], false),
            (&[basic.as_bytes()], false),
            (&[no_space.as_bytes()], false),
            (&[tab.as_bytes()], false),
            (&[twice.as_bytes()], false),
            (&[TOKEN.as_bytes()], false),
            (&[b"Bearer \xff\xfe"], false),
            // Two fields, even if one is right: refused.
            (&[right.as_bytes(), right.as_bytes()], false),
            (&[b"Bearer wrong", right.as_bytes()], false),
        ];
        for peer in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.1"] {
            for (values, allowed) in cases {
                let got = authorize_purge(ip(peer), TOKEN, &headers(values));
                let shown: Vec<_> = values.iter().map(|v| String::from_utf8_lossy(v)).collect();
                if *allowed {
                    assert!(got.is_ok(), "{peer} {shown:?}: {got:?}");
                } else {
                    assert!(
                        matches!(got, Err(GatewayError::AdminUnauthorized)),
                        "{peer} {shown:?}: {got:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn secrets_of_different_lengths_never_match() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
        assert!(!same_secret(b"abc", b"abd"));
    }

    #[test]
    fn only_a_tokenless_listener_off_loopback_is_unguarded() {
        let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(is_unguarded(addr("0.0.0.0:9901"), ""));
        assert!(is_unguarded(addr("[::]:9901"), ""));
        assert!(is_unguarded(addr("10.1.2.3:9901"), ""));
        assert!(!is_unguarded(addr("0.0.0.0:9901"), "t"));
        assert!(!is_unguarded(addr("127.0.0.1:9901"), ""));
        assert!(!is_unguarded(addr("[::1]:9901"), ""));
        assert!(!is_unguarded(addr("[::ffff:127.0.0.1]:9901"), ""));
    }

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn warnings_for(listen: &str, token: &str) -> Vec<serde_json::Value> {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        let admin = AdminConfig {
            listen: listen.parse().expect("addr"),
            token: token.to_owned(),
        };
        tracing::subscriber::with_default(subscriber, || warn_if_unguarded(&admin));
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[test]
    fn an_unguarded_admin_listener_warns_once_with_its_address() {
        let lines = warnings_for("0.0.0.0:9901", "");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["admin_listen"], "0.0.0.0:9901");
        assert_eq!(lines[0]["admin_token_set"], false);
        assert!(warnings_for("0.0.0.0:9901", "t").is_empty());
        assert!(warnings_for("127.0.0.1:9901", "").is_empty());
    }
}
