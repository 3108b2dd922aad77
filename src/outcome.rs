//! The gateway's vocabularies: how an answer was made, why an answer was not stored, why the
//! shield refused, why an entry left the cache — and the note a request carries to its access
//! line.
//!
//! They live here, below every stage, because three parts speak them: the stage that decides
//! (cache, shield, store), the access log and the metrics. Each word has one spelling, its
//! `as_str()`, which is at once the `X-Cache` value or log field and the Prometheus label; each
//! vocabulary lists its words in `ALL`, from which metrics build their label arrays, so a word
//! added or reordered here cannot mislabel a series.

use http::header::{HeaderName, HeaderValue};

/// Declares a vocabulary: an enum whose words each have one label, listed in `ALL` in
/// declaration order (so `index()` is a word's place in `ALL`).
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$word_meta:meta])* $word:ident => $label:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$word_meta])* $word,)+ }

        impl $name {
            /// Every word, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$word,)+];

            /// The word's one spelling: header value, log field and metric label.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$word => $label,)+ }
            }

            /// The word's place in [`Self::ALL`] (for arrays of per-label handles).
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

vocabulary! {
    /// How an answer to a cached route was produced (SPEC §4.1): the `X-Cache` header.
    pub enum CacheState {
        Miss => "MISS",
        Hit => "HIT",
        Stale => "STALE",
        Revalidated => "REVALIDATED",
        Bypass => "BYPASS",
    }
}

vocabulary! {
    /// Why an upstream answer was passed through instead of stored (SPEC §4.2, §8).
    pub enum NotStored {
        /// Not a 200 (and not a remembered 404).
        Status => "status",
        /// Not JSON, or JSON that does not parse.
        NotJson => "not_json",
        /// The body's `id` is not the requested one.
        IdMismatch => "id_mismatch",
        /// No usable `attributes.etag`.
        NoEtag => "no_etag",
        /// The upstream said `Cache-Control: no-store`.
        NoStore => "no_store",
        /// Bigger than the entry limit.
        TooLarge => "too_large",
        /// In a content coding other than gzip (which is decoded), or gzip that does not decode.
        Encoding => "encoding",
        /// Not settled yet (SPEC §15.1), and `cache.unsettled_ttl` is zero.
        Unsettled => "unsettled",
    }
}

vocabulary! {
    /// Why the shield kept a request from the upstream (SPEC §6).
    pub enum Refusal {
        /// The token bucket is empty.
        Budget => "budget",
        /// Every in-flight slot stayed taken for `queue_timeout`.
        InFlight => "in_flight",
        /// An upstream 429 cooldown is open.
        Cooldown => "cooldown",
    }
}

vocabulary! {
    /// Why an entry left the cache (`partner_gateway_cache_evictions_total{cause}`).
    pub enum Eviction {
        /// The byte bound needed room.
        Size => "size",
        /// No rule can use it any more.
        Expired => "expired",
        /// A purge or a write dropped it.
        Explicit => "explicit",
    }
}

vocabulary! {
    /// Which tier an answer from the cache came from (the access log's `tier`, fleet mode).
    pub enum Tier {
        /// This replica's memory.
        L1 => "l1",
        /// The fleet's shared tier in Redis.
        L2 => "l2",
    }
}

vocabulary! {
    /// What a look into the shared tier found (`partner_gateway_fleet_l2_lookups_total`).
    pub enum L2Lookup {
        Hit => "hit",
        Miss => "miss",
        /// Redis failed or was too slow: a miss that also says so.
        Error => "error",
    }
}

vocabulary! {
    /// Which way an invalidation crossed the fleet (`partner_gateway_fleet_invalidations_total`).
    pub enum Direction {
        Sent => "sent",
        Received => "received",
    }
}

/// `X-Cache`: how an answer to a cached route was produced.
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

impl CacheState {
    /// The `X-Cache` header value.
    pub fn header(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

/// What a request learned on its way that its access line and metrics report (SPEC §9).
#[derive(Debug, Default, Clone, Copy)]
pub struct Note {
    /// Status of the upstream response this request used, if one was received.
    pub upstream_status: Option<u16>,
    /// The `X-Cache` value sent, if any.
    pub cache: Option<CacheState>,
    /// Why the shield refused this request's upstream call, if it did.
    pub shield: Option<Refusal>,
    /// Which tier answered from the cache (fleet mode only).
    pub tier: Option<Tier>,
}

vocabulary! {
    /// What became of an event notification (SPEC §15.2).
    pub enum WebhookOutcome {
        /// Verified, its invalidations done, relayed (or answered) as it should be.
        Accepted => "accepted",
        /// No or a bad signature, another algorithm, or a certificate that does not verify.
        Unauthorized => "unauthorized",
        /// Verified, but not a JSON object with `EventName` and `ResourceUri`.
        Invalid => "invalid",
        /// Verified and invalidated, but the partner's handler did not answer.
        RelayFailed => "relay_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_sits_at_its_index_with_a_distinct_label() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            index: fn(T) -> usize,
            label: fn(T) -> &'static str,
        ) {
            for (i, word) in all.iter().enumerate() {
                assert_eq!(index(*word), i, "{word:?}");
                let same = all.iter().filter(|w| label(**w) == label(*word)).count();
                assert_eq!(same, 1, "{word:?} shares its label");
            }
        }
        check(CacheState::ALL, CacheState::index, CacheState::as_str);
        check(NotStored::ALL, NotStored::index, NotStored::as_str);
        check(Refusal::ALL, Refusal::index, Refusal::as_str);
        check(Eviction::ALL, Eviction::index, Eviction::as_str);
        check(Tier::ALL, Tier::index, Tier::as_str);
        check(L2Lookup::ALL, L2Lookup::index, L2Lookup::as_str);
        check(Direction::ALL, Direction::index, Direction::as_str);
        check(
            WebhookOutcome::ALL,
            WebhookOutcome::index,
            WebhookOutcome::as_str,
        );
        assert_eq!(CacheState::Revalidated.header(), "REVALIDATED");
    }
}
