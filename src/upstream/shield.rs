//! The rate-limit shield (SPEC §6): keeps the upstream under its budget while clients keep
//! getting answers.
//!
//! Three guards stand before every upstream request — fills, revalidations and forwards alike:
//! an upstream-429 cooldown (order-by-ID requests only), a bound on concurrent upstream requests
//! (`max_in_flight`, waiting at most `queue_timeout`), and a token bucket (`governor`), one
//! globally or one per credential. A refused request is answered stale by the caller when it
//! can be, else with a local 429 carrying `Retry-After`. Cache hits never come here.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use futures_util::future::BoxFuture;
use std::time::{Duration, Instant, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use http::header::{HeaderMap, RETRY_AFTER};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Scope, UpstreamConfig};
use crate::error::GatewayError;
use crate::observe::metrics::Metrics;
use crate::outcome::Refusal;
use crate::request::credential::Fingerprint;

/// The longest cooldown an upstream `Retry-After` can impose (SPEC §6).
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// Who shares a bucket and a cooldown: everybody (global scope), one credential, or every
/// caller without `Authorization` together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScopeKey(Option<Fingerprint>);

impl ScopeKey {
    /// The scope's name outside the process (the fleet's keys): the credential's keyed hash,
    /// or `none` for the scope every caller without a credential (or every caller, in `global`
    /// scope) shares.
    pub fn label(&self) -> String {
        self.0.map_or_else(|| "none".to_owned(), |f| f.to_hex())
    }
}

/// The budget and the cooldowns a fleet shares (SPEC §12.4), asked once per upstream request.
/// Implemented by fleet mode; `None` from either call means Redis did not answer, and the
/// replica keeps to its own guards.
pub trait SharedBudget: Send + Sync {
    /// Takes one token from the scope's fleet bucket, unless (for a cached route) the fleet's
    /// cooldown for the scope is open: `Some(Ok(()))` admitted, `Some(Err(..))` refused.
    fn take(&self, scope: ScopeKey, cached: bool) -> BoxFuture<'_, Option<Result<(), Refused>>>;
    /// Opens the scope's cooldown for the whole fleet.
    fn cool(&self, scope: ScopeKey, length: Duration) -> BoxFuture<'_, ()>;
}

/// A refusal and the answer that goes with it.
#[derive(Debug, Clone)]
pub struct Refused {
    pub reason: Refusal,
    pub error: GatewayError,
}

enum Bucket {
    Off,
    Global(DefaultDirectRateLimiter),
    PerCredential(DefaultKeyedRateLimiter<ScopeKey>),
}

/// Permission to send one upstream request; the in-flight slot (and the streaming share, if
/// one was taken) is freed when it is dropped.
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    _share: Option<OwnedSemaphorePermit>,
    metrics: Arc<Metrics>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.metrics.in_flight(-1.0);
    }
}

/// The process's shield.
pub struct Shield {
    scope: Scope,
    slots: Arc<Semaphore>,
    /// The part of `slots` that requests streaming a client's body may hold at once: a client
    /// that trickles its body holds its slot for as long, and must not hold them all (SPEC §14).
    streams: Arc<Semaphore>,
    queue_timeout: Duration,
    bucket: Bucket,
    cooldowns: Mutex<HashMap<ScopeKey, Instant>>,
    checks: AtomicU64,
    metrics: Arc<Metrics>,
    /// Made once: building a clock calibrates the TSC, far too slow per request.
    clock: DefaultClock,
    /// The fleet's budget and cooldowns, in fleet mode.
    shared: OnceLock<Arc<dyn SharedBudget>>,
}

impl Shield {
    /// Builds the guards from validated config.
    pub fn new(config: &UpstreamConfig, metrics: Arc<Metrics>) -> Shield {
        let bucket = match NonZeroU32::new(config.rate_limit_rps) {
            None => Bucket::Off,
            Some(rps) => {
                let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(rps);
                let quota = Quota::per_second(rps).allow_burst(burst);
                match config.rate_limit_scope {
                    Scope::Global => Bucket::Global(governor::RateLimiter::direct(quota)),
                    Scope::Credential => Bucket::PerCredential(governor::RateLimiter::keyed(quota)),
                }
            }
        };
        Shield {
            scope: config.rate_limit_scope,
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            streams: Arc::new(Semaphore::new(streaming_share(config.max_in_flight))),
            queue_timeout: config.queue_timeout,
            bucket,
            cooldowns: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
            metrics,
            clock: DefaultClock::default(),
            shared: OnceLock::new(),
        }
    }

    /// From now on, the budget and the cooldowns are the fleet's (fleet mode).
    pub fn share_with(&self, budget: Arc<dyn SharedBudget>) {
        let _ = self.shared.set(budget);
    }

    /// Opens the scope's cooldown here and, in fleet mode, for the whole fleet (recorded in
    /// Redis before the 429 goes to the client, SPEC §12.4).
    pub async fn open_cooldown_everywhere(&self, scope: ScopeKey, headers: &HeaderMap) {
        let length = self.open_cooldown(scope, headers);
        if let Some(shared) = self.shared.get() {
            shared.cool(scope, length).await;
        }
    }

    /// Whether scopes need the caller's fingerprint (so the front computes it).
    pub fn needs_fingerprint(&self) -> bool {
        self.scope == Scope::Credential
    }

    /// The scope of a request whose caller is `caller` (`None`: no `Authorization`; every such
    /// caller shares one scope). The front computes `caller` whenever
    /// [`Shield::needs_fingerprint`].
    pub fn scope_of(&self, caller: Option<Fingerprint>) -> ScopeKey {
        match self.scope {
            Scope::Global => ScopeKey(None),
            Scope::Credential => ScopeKey(caller),
        }
    }

    /// Time left in the scope's cooldown, if one is open.
    pub fn cooldown_left(&self, scope: ScopeKey) -> Option<Duration> {
        let mut cooldowns = self
            .cooldowns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let until = *cooldowns.get(&scope)?;
        let now = Instant::now();
        if until <= now {
            cooldowns.remove(&scope);
            return None;
        }
        Some(until - now)
    }

    /// Opens (or extends) the scope's cooldown after an upstream 429 to an order-by-ID request.
    pub fn open_cooldown(&self, scope: ScopeKey, headers: &HeaderMap) -> Duration {
        let length = retry_after(headers, SystemTime::now());
        let until = Instant::now() + length;
        let mut cooldowns = self
            .cooldowns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let slot = cooldowns.entry(scope).or_insert(until);
        *slot = (*slot).max(until);
        self.metrics.cooldown();
        tracing::warn!(
            cooldown_ms = length.as_millis() as u64,
            "upstream answered 429; cooldown opened"
        );
        length
    }

    /// Asks for one upstream request. `order` requests respect the cooldown; forwarded ones
    /// do not (SPEC §6). A `streamed` request (one that sends a client's body as it arrives)
    /// also needs a place in the streaming share.
    pub async fn admit(
        &self,
        scope: ScopeKey,
        order: bool,
        streamed: bool,
    ) -> Result<Admission, Refused> {
        let result = self.try_admit(scope, order, streamed).await;
        if let Err(refused) = &result {
            self.metrics.shield_rejection(refused.reason);
        }
        result
    }

    async fn try_admit(
        &self,
        scope: ScopeKey,
        order: bool,
        streamed: bool,
    ) -> Result<Admission, Refused> {
        if order {
            if let Some(left) = self.cooldown_left(scope) {
                return Err(Refused {
                    reason: Refusal::Cooldown,
                    error: GatewayError::UpstreamThrottled {
                        retry_after: ceil_secs(left),
                    },
                });
            }
        }
        let places = async {
            let share = match streamed {
                true => Some(self.streams.clone().acquire_owned().await?),
                false => None,
            };
            let slot = self.slots.clone().acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>((slot, share))
        };
        let (slot, share) = match tokio::time::timeout(self.queue_timeout, places).await {
            Ok(Ok(places)) => places,
            _ => {
                return Err(Refused {
                    reason: Refusal::InFlight,
                    error: GatewayError::GatewayRateLimited { retry_after: 1 },
                })
            }
        };
        // The token is taken only by a request that really goes upstream now: from the fleet's
        // bucket in fleet mode (which also holds the fleet's cooldowns), else from this one's.
        let shared = match self.shared.get() {
            Some(shared) => shared.take(scope, order).await,
            None => None,
        };
        if let Some(Err(refused)) = shared {
            return Err(refused);
        }
        if shared.is_some() {
            self.metrics.in_flight(1.0);
            return Ok(Admission {
                _slot: slot,
                _share: share,
                metrics: self.metrics.clone(),
            });
        }
        if let Err(wait) = self.take_token(scope) {
            return Err(Refused {
                reason: Refusal::Budget,
                error: GatewayError::GatewayRateLimited {
                    retry_after: ceil_secs(wait),
                },
            });
        }
        self.metrics.in_flight(1.0);
        Ok(Admission {
            _slot: slot,
            _share: share,
            metrics: self.metrics.clone(),
        })
    }

    fn take_token(&self, scope: ScopeKey) -> Result<(), Duration> {
        let clock = &self.clock;
        match &self.bucket {
            Bucket::Off => Ok(()),
            Bucket::Global(limiter) => limiter
                .check()
                .map_err(|not_until| not_until.wait_time_from(clock.now())),
            Bucket::PerCredential(limiter) => {
                // Forget idle credentials now and then so the key map stays small.
                if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
                limiter
                    .check_key(&scope)
                    .map_err(|not_until| not_until.wait_time_from(clock.now()))
            }
        }
    }
}

/// How many in-flight slots requests streaming a client's body may hold at once: half, at
/// least one.
fn streaming_share(max_in_flight: usize) -> usize {
    (max_in_flight / 2).max(1)
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` says.
fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// The cooldown an upstream `Retry-After` asks for (SPEC §6): delta-seconds or an HTTP-date;
/// absent, unparsable, zero or past means 1 s; capped at [`MAX_COOLDOWN`].
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Duration {
    const DEFAULT: Duration = Duration::from_secs(1);
    let Some(text) = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()) else {
        return DEFAULT;
    };
    let text = text.trim();
    let digits = text.strip_prefix('+').unwrap_or(text);
    let wait = if let Ok(secs) = text.parse::<u64>() {
        Duration::from_secs(secs)
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // Delta-seconds beyond u64: longer than any cooldown, so the cap.
        MAX_COOLDOWN
    } else if let Ok(at) = httpdate::parse_http_date(text) {
        at.duration_since(now).unwrap_or(Duration::ZERO)
    } else {
        return DEFAULT;
    };
    if wait.is_zero() {
        DEFAULT
    } else {
        wait.min(MAX_COOLDOWN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(value).expect("value"));
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let s = Duration::from_secs;
        assert_eq!(retry_after(&HeaderMap::new(), now), s(1));
        assert_eq!(retry_after(&with("2"), now), s(2));
        assert_eq!(retry_after(&with(" 57 "), now), s(57));
        assert_eq!(retry_after(&with("0"), now), s(1));
        assert_eq!(retry_after(&with("soon"), now), s(1));
        assert_eq!(retry_after(&with("-3"), now), s(1));
        assert_eq!(retry_after(&with("100000"), now), MAX_COOLDOWN);
        assert_eq!(
            retry_after(&with("100000000000000000000"), now),
            MAX_COOLDOWN
        );
        let later = httpdate::fmt_http_date(now + s(30));
        assert_eq!(retry_after(&with(&later), now), s(30));
        let past = httpdate::fmt_http_date(now - s(30));
        assert_eq!(retry_after(&with(&past), now), s(1));
    }

    #[test]
    fn rounding() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
    }
}
