//! Who is asking: a request's `Authorization` value as a keyed hash, computed once per request.
//!
//! Two rules depend on the caller's credential — the cache partition (SPEC §3.3) and the shield's
//! scope (SPEC §6) — and both take this one [`Fingerprint`], so a request hashes its credential
//! at most once and no stage below keeps the raw value. The hash is keyed by a random
//! per-process secret: stable within the process, meaningless outside it. The one copy of a raw
//! credential the gateway keeps is a connection's last one, in that connection's
//! [`CredentialMemo`], for as long as the connection is open.

use std::cell::Cell;

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};

/// A credential's keyed hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A prefix of the keyed hash is enough to tell callers apart in a debug print.
        let h = &self.0;
        write!(f, "{:02x}{:02x}{:02x}{:02x}…", h[0], h[1], h[2], h[3])
    }
}

impl Fingerprint {
    /// The hash as hex: a name for a partition outside the process (the shared tier's keys).
    /// It is a keyed hash, not a credential.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Hashes credentials under the process's secret.
pub struct Fingerprinter {
    secret: [u8; 32],
}

impl Default for Fingerprinter {
    fn default() -> Self {
        Fingerprinter::new()
    }
}

impl Fingerprinter {
    /// A fingerprinter with a fresh random secret.
    pub fn new() -> Fingerprinter {
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Fingerprinter { secret }
    }

    /// A fingerprinter keyed by a secret the fleet shares (`fleet.partition_secret`), so that
    /// every replica hashes a credential alike.
    pub fn with_secret(secret: &[u8]) -> Fingerprinter {
        Fingerprinter {
            secret: blake3::derive_key("partner-gateway credential partition v1", secret),
        }
    }

    /// The keyed hash of one credential.
    pub fn fingerprint(&self, authorization: &HeaderValue) -> Fingerprint {
        Fingerprint(*blake3::keyed_hash(&self.secret, authorization.as_bytes()).as_bytes())
    }

    /// The fingerprint of a request's `Authorization`, through its connection's memo when it
    /// has one; `None` when the request carries none, or an empty one (no credential: the
    /// anonymous scope, never a cache partition).
    pub fn caller(
        &self,
        headers: &HeaderMap,
        memo: Option<&CredentialMemo>,
    ) -> Option<Fingerprint> {
        let authorization = headers.get(AUTHORIZATION).filter(|v| !is_blank(v))?;
        Some(match memo {
            Some(memo) => memo.fingerprint(self, authorization),
            None => self.fingerprint(authorization),
        })
    }
}

/// An `Authorization` value with nothing in it is no credential (SPEC §3.3).
pub fn is_blank(value: &HeaderValue) -> bool {
    value.as_bytes().trim_ascii().is_empty()
}

/// The last credential seen on one client connection, with its fingerprint. A keep-alive
/// connection nearly always carries one credential, and hashing it (a Partner Center bearer
/// token is a 1–2 KB JWT) costs more than the rest of a hit, where comparing it costs little.
/// One per connection: a client's credential is only ever compared with its own.
#[derive(Default)]
pub struct CredentialMemo(Cell<Option<(HeaderValue, Fingerprint)>>);

impl CredentialMemo {
    /// [`Fingerprinter::fingerprint`], taken from the memo when the connection's previous
    /// request carried the same credential.
    pub fn fingerprint(&self, hasher: &Fingerprinter, authorization: &HeaderValue) -> Fingerprint {
        match self.0.take() {
            Some((value, fingerprint)) if value == authorization => {
                self.0.set(Some((value, fingerprint)));
                fingerprint
            }
            _ => {
                let fingerprint = hasher.fingerprint(authorization);
                // Copied: a value parsed by hyper would keep the connection's read buffer alive.
                if let Ok(value) = HeaderValue::from_bytes(authorization.as_bytes()) {
                    self.0.set(Some((value, fingerprint)));
                }
                fingerprint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(token: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static(token));
        headers
    }

    #[test]
    fn credentials_hash_apart_and_per_process() {
        let hasher = Fingerprinter::new();
        let a = hasher.caller(&with_token("Bearer a"), None);
        assert_eq!(a, hasher.caller(&with_token("Bearer a"), None));
        assert_ne!(a, hasher.caller(&with_token("Bearer b"), None));
        assert_eq!(hasher.caller(&HeaderMap::new(), None), None);
        assert!(!format!("{a:?}").contains("Bearer"));
        // Another process (another secret) hashes the same token differently.
        let other = Fingerprinter::new();
        assert_ne!(a, other.caller(&with_token("Bearer a"), None));
    }

    #[test]
    fn a_connection_memo_never_answers_for_another_credential() {
        let hasher = Fingerprinter::new();
        let memo = CredentialMemo::default();
        let through_memo = |token| hasher.caller(&with_token(token), Some(&memo));
        let (a, b, a_again) = (
            through_memo("Bearer a"),
            through_memo("Bearer b"),
            through_memo("Bearer a"),
        );
        assert_ne!(a, b);
        assert_eq!(a, a_again);
        assert_eq!(a, hasher.caller(&with_token("Bearer a"), None));
    }
}
