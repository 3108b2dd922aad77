//! Freshness: what an entry of a given age may still be used for (SPEC §4.1), as one pure
//! function.
//!
//! Every stage that weighs an entry's age asks [`Policy`]: the lookup (serve, serve stale and
//! refresh, or ask the upstream first), the fill (is an entry someone else just stored fresh
//! enough to take; may the prior entry stand in for an upstream that failed or that the shield
//! refused) and the store (how long to keep an entry at all). No clock is read here: callers
//! pass the age, so the table tests below are exact at every boundary.

use std::time::Duration;

use crate::config::CacheConfig;
use crate::request::conditional::RequestDirectives;

/// What an entry holds, as far as freshness cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A stored resource (an order): fresh for `ttl`, then inside the stale windows.
    Resource,
    /// A resource whose body is not settled yet (SPEC §15.1: a `pending` order): fresh for
    /// `unsettled_ttl`, then revalidated before the answer — never served stale while it
    /// revalidates — and inside `stale_if_error` after it when the upstream fails.
    Unsettled,
    /// A remembered 404 (negative caching): fresh for `negative_ttl`, never served stale.
    NotFound,
}

/// What a request may do with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it as it is (`HIT`).
    Fresh,
    /// Serve it now (`STALE`) and refresh it in the background (stale-while-revalidate).
    Stale,
    /// Ask the upstream first, conditionally on this entry. `stale_if_error`: if the upstream
    /// fails or the shield refuses the call, the entry may still be served (`STALE`).
    Revalidate { stale_if_error: bool },
    /// Of no use any more: as if there were no entry.
    Unusable,
}

/// The freshness rules of one configuration.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    ttl: Duration,
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
    negative_ttl: Duration,
    unsettled_ttl: Duration,
}

impl Policy {
    /// The rules `cache.*` configures.
    pub fn new(config: &CacheConfig) -> Policy {
        Policy {
            ttl: config.ttl,
            stale_while_revalidate: config.stale_while_revalidate,
            stale_if_error: config.stale_if_error,
            negative_ttl: config.negative_ttl,
            unsettled_ttl: config.unsettled_ttl,
        }
    }

    /// What a request with `directives` may do with an entry of `kind` that is `age` old.
    pub fn freshness(
        &self,
        kind: Kind,
        age: Duration,
        directives: &RequestDirectives,
    ) -> Freshness {
        if age > self.retention(kind) {
            return Freshness::Unusable;
        }
        let revalidate = directives.requires_revalidation(age);
        match kind {
            Kind::NotFound if revalidate => Freshness::Revalidate {
                stale_if_error: false,
            },
            Kind::NotFound => Freshness::Fresh,
            Kind::Resource if !revalidate && age <= self.ttl => Freshness::Fresh,
            Kind::Resource if !revalidate && age <= self.ttl + self.stale_while_revalidate => {
                Freshness::Stale
            }
            Kind::Resource => Freshness::Revalidate {
                stale_if_error: age <= self.ttl + self.stale_if_error,
            },
            Kind::Unsettled if !revalidate && age <= self.unsettled_ttl => Freshness::Fresh,
            Kind::Unsettled => Freshness::Revalidate {
                stale_if_error: age <= self.unsettled_ttl + self.stale_if_error,
            },
        }
    }

    /// Whether an entry may stand in for an upstream that failed or a call the shield refused
    /// (inside `stale_if_error`; never a remembered 404).
    pub fn serves_on_error(&self, kind: Kind, age: Duration) -> bool {
        let must_ask = RequestDirectives {
            no_cache: true,
            ..RequestDirectives::default()
        };
        self.freshness(kind, age, &must_ask)
            == Freshness::Revalidate {
                stale_if_error: true,
            }
    }

    /// How long any rule can use an entry of `kind`.
    pub fn retention(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Resource => self.ttl + self.stale_while_revalidate.max(self.stale_if_error),
            Kind::Unsettled => self.unsettled_ttl + self.stale_if_error,
            Kind::NotFound => self.negative_ttl,
        }
    }

    /// Whether unsettled bodies are stored at all (`cache.unsettled_ttl` above zero).
    pub fn stores_unsettled(&self) -> bool {
        !self.unsettled_ttl.is_zero()
    }

    /// How long the store keeps entries: the longest any rule can use one (at least 1 ms, as
    /// the store cannot keep anything for no time).
    pub fn longest_retention(&self) -> Duration {
        self.retention(Kind::Resource)
            .max(self.retention(Kind::Unsettled))
            .max(self.retention(Kind::NotFound))
            .max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Freshness::{Fresh, Revalidate, Stale, Unusable};
    use Kind::{NotFound, Resource, Unsettled};

    const MS: Duration = Duration::from_millis(1);

    fn policy(ttl: u64, swr: u64, sie: u64, negative: u64) -> Policy {
        let s = Duration::from_secs;
        Policy {
            ttl: s(ttl),
            stale_while_revalidate: s(swr),
            stale_if_error: s(sie),
            negative_ttl: s(negative),
            unsettled_ttl: s(ttl.min(5)),
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    const REVALIDATE: Freshness = Revalidate {
        stale_if_error: false,
    };
    const REVALIDATE_OR_STALE: Freshness = Revalidate {
        stale_if_error: true,
    };

    /// SPEC §4.1, row by row, at and around every boundary (ttl 30 s, swr 30 s, sie 300 s).
    #[test]
    fn the_spec_table_for_resources() {
        let p = policy(30, 30, 300, 0);
        let none = RequestDirectives::default();
        let cases = [
            (Duration::ZERO, Fresh),
            (secs(30), Fresh),                    // exactly ttl: still fresh
            (secs(30) + MS, Stale),               // just past ttl
            (secs(60), Stale),                    // exactly ttl + swr
            (secs(60) + MS, REVALIDATE_OR_STALE), // past swr, inside sie
            (secs(330), REVALIDATE_OR_STALE),     // exactly ttl + sie
            (secs(330) + MS, Unusable),           // past every window: kept no longer
        ];
        for (age, want) in cases {
            assert_eq!(p.freshness(Resource, age, &none), want, "age {age:?}");
        }
    }

    /// SPEC §15.1: an unsettled body is fresh for `unsettled_ttl` (5 s here), then revalidated
    /// before the answer — never STALE under swr — and may stand in on error within sie.
    #[test]
    fn the_spec_table_for_unsettled_bodies() {
        let p = policy(30, 30, 300, 0);
        let none = RequestDirectives::default();
        let cases = [
            (Duration::ZERO, Fresh),
            (secs(5), Fresh),                    // exactly unsettled_ttl
            (secs(5) + MS, REVALIDATE_OR_STALE), // past it: ask first (never Stale)
            (secs(31), REVALIDATE_OR_STALE),     // where a settled body would be Stale
            (secs(305), REVALIDATE_OR_STALE),    // exactly unsettled_ttl + sie
            (secs(305) + MS, Unusable),
        ];
        for (age, want) in cases {
            assert_eq!(p.freshness(Unsettled, age, &none), want, "age {age:?}");
        }
        assert!(p.serves_on_error(Unsettled, secs(305)));
        assert_eq!(p.retention(Unsettled), secs(305));
        assert!(p.stores_unsettled());
        let off = Policy {
            unsettled_ttl: Duration::ZERO,
            ..p
        };
        assert!(!off.stores_unsettled());
    }

    #[test]
    fn when_stale_while_revalidate_outlasts_stale_if_error() {
        let p = policy(10, 60, 5, 0);
        let none = RequestDirectives::default();
        assert_eq!(p.freshness(Resource, secs(15), &none), Stale);
        assert_eq!(p.freshness(Resource, secs(70), &none), Stale);
        assert_eq!(p.freshness(Resource, secs(70) + MS, &none), Unusable);
        assert!(p.serves_on_error(Resource, secs(15)));
        assert!(!p.serves_on_error(Resource, secs(15) + MS));
        assert_eq!(p.retention(Resource), secs(70));
    }

    #[test]
    fn zero_windows() {
        let p = policy(30, 0, 0, 0);
        let none = RequestDirectives::default();
        assert_eq!(p.freshness(Resource, secs(30), &none), Fresh);
        assert_eq!(p.freshness(Resource, secs(30) + MS, &none), Unusable);
        assert!(p.serves_on_error(Resource, secs(30)));
        assert!(!p.serves_on_error(Resource, secs(30) + MS));
        // ttl 0 too: only an entry of age 0 is fresh; the store keeps entries 1 ms.
        let p = policy(0, 0, 0, 0);
        assert_eq!(p.freshness(Resource, Duration::ZERO, &none), Fresh);
        assert_eq!(p.freshness(Resource, MS, &none), Unusable);
        assert_eq!(p.longest_retention(), MS);
    }

    #[test]
    fn request_directives_force_a_revalidation() {
        let p = policy(30, 30, 300, 0);
        let d = |no_cache, max_age| RequestDirectives {
            no_cache,
            max_age,
            ..RequestDirectives::default()
        };
        // no-cache: even a fresh entry is asked about first, and may stand in on error.
        assert_eq!(
            p.freshness(Resource, secs(1), &d(true, None)),
            REVALIDATE_OR_STALE
        );
        // max-age=0 revalidates anything older than 0 s; max-age=5 only older than 5 s.
        assert_eq!(
            p.freshness(Resource, MS, &d(false, Some(0))),
            REVALIDATE_OR_STALE
        );
        assert_eq!(p.freshness(Resource, secs(5), &d(false, Some(5))), Fresh);
        assert_eq!(
            p.freshness(Resource, secs(5) + MS, &d(false, Some(5))),
            REVALIDATE_OR_STALE
        );
        // Inside swr, a client's max-age turns "serve stale" into "ask first".
        assert_eq!(
            p.freshness(Resource, secs(45), &d(false, Some(40))),
            REVALIDATE_OR_STALE
        );
        // Past every window, directives change nothing.
        assert_eq!(p.freshness(Resource, secs(331), &d(true, None)), Unusable);
    }

    #[test]
    fn remembered_404s_are_fresh_then_gone_and_never_stale() {
        let p = policy(30, 30, 300, 10);
        let none = RequestDirectives::default();
        let no_cache = RequestDirectives {
            no_cache: true,
            ..RequestDirectives::default()
        };
        assert_eq!(p.freshness(NotFound, secs(10), &none), Fresh);
        assert_eq!(p.freshness(NotFound, secs(10) + MS, &none), Unusable);
        assert_eq!(p.freshness(NotFound, secs(1), &no_cache), REVALIDATE);
        assert!(!p.serves_on_error(NotFound, Duration::ZERO));
        // The store keeps entries as long as the longest rule needs them.
        assert_eq!(p.longest_retention(), secs(330));
        assert_eq!(policy(1, 0, 0, 600).longest_retention(), secs(600));
        // negative_ttl 0: a remembered 404 is never used.
        let off = policy(30, 30, 300, 0);
        assert_eq!(off.freshness(NotFound, MS, &none), Unusable);
    }
}
