//! Asking the upstream for one key and keeping what it answers (SPEC §4.1, §4.2): the last
//! step of every fill and refresh. A conditional request when there is a prior entry; the
//! answer judged (stored, refreshed, passed through, or the prior entry standing in for an
//! error) and stored in every tier before anyone is answered. Coalescing, the tiers' earlier
//! looks and the fleet's lease belong to the fill (one level up); this is one exchange.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, IF_NONE_MATCH,
};
use http::{response, Request, Response, StatusCode};

use crate::body::{read_limited, Body, Limited};
use crate::cache::cacheability;
use crate::cache::key::{detach, CacheKey, KeyMaker};
use crate::cache::policy::Policy;
use crate::cache::store::Entry;
use crate::cache::tier::{Stamp, Tiers};
use crate::config::CacheConfig;
use crate::error::GatewayError;
use crate::observe::metrics::Metrics;
use crate::outcome::{CacheState, NotStored, Refusal, Tier};
use crate::request::coding;
use crate::upstream::client::describe;
use crate::upstream::exchange::{Exchange, Failure, Purpose};
use crate::upstream::shield::ScopeKey;

/// How a fill ended; shared by every request that waited for it.
pub enum Outcome {
    /// A usable entry: just fetched (`Miss`), confirmed unchanged (`Revalidated`), or found
    /// already refreshed by someone else (`Hit`).
    Entry {
        entry: Arc<Entry>,
        state: CacheState,
        upstream_status: Option<u16>,
        /// The tier it came from, when it came from the cache rather than the upstream.
        tier: Option<Tier>,
    },
    /// The upstream failed, or the shield refused the call, and the prior entry may stand in
    /// (SPEC §4.1, stale-if-error).
    Stale {
        entry: Arc<Entry>,
        upstream_status: Option<u16>,
        refusal: Option<Refusal>,
    },
    /// An answer that is not stored, passed to every waiter as received.
    Passed { head: response::Parts, body: Bytes },
    /// An answer too large to buffer: the first waiter to claim it streams it; the others
    /// must ask the upstream themselves.
    Oversized(Mutex<Option<Response<Body>>>),
    /// No answer and nothing cached to stand in: connect error, timeout, broken response, or
    /// the shield kept the request from the upstream.
    Failed(Failure),
}

/// What a fill needs from the process.
pub struct FillContext {
    pub tiers: Arc<Tiers>,
    pub exchange: Arc<Exchange>,
    pub policy: Policy,
    /// The body size limit in force (SPEC §2: the smaller of the two cache bounds).
    pub entry_limit: usize,
    /// How long a fleet lease on a key lasts: `upstream.request_timeout` + 1 s (SPEC §12.2).
    pub lease_ttl: Duration,
    /// Whether upstream 404s are remembered (`cache.negative_ttl > 0`, `credential` mode).
    pub remember_not_found: bool,
    /// `cache.unsettled_statuses`, lower-cased (SPEC §15.1).
    pub unsettled: Vec<String>,
    pub metrics: Arc<Metrics>,
}

impl FillContext {
    /// What fills need under the rules of `config`: they ask `exchange` and store into `tiers`.
    pub fn new(
        config: &CacheConfig,
        tiers: Arc<Tiers>,
        exchange: Arc<Exchange>,
        metrics: Arc<Metrics>,
    ) -> FillContext {
        let lease_ttl = exchange.request_timeout() + Duration::from_secs(1);
        FillContext {
            tiers,
            exchange,
            policy: Policy::new(config),
            entry_limit: config.entry_limit(),
            lease_ttl,
            remember_not_found: !config.negative_ttl.is_zero()
                && KeyMaker::new(config.partition).remembers_not_found(),
            unsettled: config.unsettled_statuses.clone(),
            metrics,
        }
    }
}

/// Asks the upstream (conditionally when there is a prior entry), judges the answer, stores it.
pub async fn fetch(
    ctx: &FillContext,
    key: &CacheKey,
    stamp: Stamp,
    prior: Option<Arc<Entry>>,
    scope: ScopeKey,
    mut request: Request<Body>,
) -> Outcome {
    if let Some(etag) = prior.as_ref().and_then(|p| p.etag.clone()) {
        request.headers_mut().insert(IF_NONE_MATCH, etag);
    }
    // Every client is answered from an identity-coded entry (SPEC §4.2): never the client's
    // Accept-Encoding, which the fill's other callers may not share.
    let identity = HeaderValue::from_static("identity");
    request.headers_mut().insert(ACCEPT_ENCODING, identity);
    let limit = ctx.entry_limit;
    let read = ctx
        .exchange
        .send(scope, Purpose::Cached, request, |response| async move {
            read_limited(response, limit)
                .await
                .map_err(|e| GatewayError::UpstreamUnavailable(describe(&e)))
        })
        .await;
    let (mut head, mut body) = match read {
        Ok(Limited::Whole(head, body)) => (head, body),
        Ok(Limited::Oversized(response)) => {
            ctx.metrics.not_stored(NotStored::TooLarge);
            return Outcome::Oversized(Mutex::new(Some(response)));
        }
        Err(failure) => {
            return match stand_in(ctx, key, prior) {
                Some(entry) => Outcome::Stale {
                    entry,
                    upstream_status: None,
                    refusal: failure.refusal,
                },
                None => Outcome::Failed(failure),
            };
        }
    };
    let status = head.status;
    let upstream_status = Some(status.as_u16());
    let now = Instant::now();
    // SPEC §4.1: a revoked token or a deleted order must not keep reading the old copy.
    let refused = [
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::NOT_FOUND,
    ];
    if let Some(prior) = prior.as_ref().filter(|_| refused.contains(&status)) {
        let dropped = ctx.tiers.drop_entry(key, prior).await;
        tracing::info!(
            status = status.as_u16(),
            dropped,
            "revalidation refused; cached entry dropped"
        );
    }

    if status == StatusCode::NOT_MODIFIED {
        if let Some(prior) = prior.as_ref().filter(|p| p.etag.is_some()) {
            let entry = Arc::new(prior.refreshed(now));
            ctx.tiers.put(key.clone(), entry.clone(), stamp).await;
            return Outcome::Entry {
                entry,
                state: CacheState::Revalidated,
                upstream_status,
                tier: None,
            };
        }
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(entry) = stand_in(ctx, key, prior.clone()) {
            ctx.metrics.not_stored(NotStored::Status);
            return Outcome::Stale {
                entry,
                upstream_status,
                refusal: None,
            };
        }
    }
    // What may be stored is stored decoded; anything still in a coding is passed through, to
    // the callers that accept it (the others ask for their own copy).
    if status == StatusCode::OK || status == StatusCode::NOT_FOUND {
        match identity_coded(&mut head, body, limit) {
            Ok(decoded) => body = decoded,
            Err((reason, coded)) => {
                ctx.metrics.not_stored(reason);
                tracing::info!(
                    reason = reason.as_str(),
                    status = status.as_u16(),
                    "order response not stored"
                );
                return Outcome::Passed { head, body: coded };
            }
        }
    }
    let content_type = head.headers.get(CONTENT_TYPE).map(detach);
    if status == StatusCode::NOT_FOUND && ctx.remember_not_found {
        let entry = Arc::new(Entry::new(status, body, content_type, None, now));
        ctx.tiers.put(key.clone(), entry.clone(), stamp).await;
        return Outcome::Entry {
            entry,
            state: CacheState::Miss,
            upstream_status,
            tier: None,
        };
    }
    let judged = cacheability::judge(status, &head.headers, &body, &key.item.id, &ctx.unsettled);
    // SPEC §15.1: with `unsettled_ttl = 0s` an unsettled body is passed on, not stored — and a
    // prior entry, now older than what the upstream holds, is dropped.
    let judged = match judged {
        Ok(storable) if storable.unsettled && !ctx.policy.stores_unsettled() => {
            if let Some(prior) = &prior {
                ctx.tiers.drop_entry(key, prior).await;
            }
            Err(NotStored::Unsettled)
        }
        judged => judged,
    };
    match judged {
        Ok(storable) => {
            let unchanged = prior
                .as_ref()
                .and_then(|p| p.etag.as_ref())
                .is_some_and(|etag| *etag == storable.etag);
            let entry = Entry::new(status, body, content_type, Some(storable.etag), now);
            let entry = Arc::new(entry.with_unsettled(storable.unsettled));
            ctx.tiers.put(key.clone(), entry.clone(), stamp).await;
            Outcome::Entry {
                entry,
                state: if unchanged {
                    CacheState::Revalidated
                } else {
                    CacheState::Miss
                },
                upstream_status,
                tier: None,
            }
        }
        Err(reason) => {
            ctx.metrics.not_stored(reason);
            tracing::info!(
                reason = reason.as_str(),
                status = status.as_u16(),
                "order response not stored"
            );
            Outcome::Passed { head, body }
        }
    }
}

/// The body in identity coding: as it is when it came so, decoded (at most `limit` bytes) when
/// it came gzip although the fill asked for identity — its `Content-Encoding` and
/// `Content-Length` then removed from `head`. Any other coding, or gzip that does not decode
/// within the limit, gives the reason and the bytes as they came.
fn identity_coded(
    head: &mut response::Parts,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, (NotStored, Bytes)> {
    let Some(coding) = coding::of_answer(&head.headers) else {
        return Ok(body);
    };
    if coding != "gzip" && coding != "x-gzip" {
        return Err((NotStored::Encoding, body));
    }
    let mut decoded = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let reader = flate2::read::GzDecoder::new(&body[..]);
    // One byte past the limit tells "too large" from "exactly the limit".
    let bound = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    match std::io::Read::read_to_end(&mut std::io::Read::take(reader, bound), &mut decoded) {
        Ok(n) if n <= limit => {
            head.headers.remove(CONTENT_ENCODING);
            head.headers.remove(CONTENT_LENGTH);
            Ok(Bytes::from(decoded))
        }
        Ok(_) => Err((NotStored::TooLarge, body)),
        Err(_) => Err((NotStored::Encoding, body)),
    }
}

/// What stands in for an upstream that failed or a call the shield refused, when the fill
/// revalidated an entry: the entry memory holds for the key now (the prior one, or a newer one
/// another replica stored meanwhile), if the policy lets it. Never the prior entry itself once
/// a write or a purge dropped it: that version must not come back as `STALE`.
fn stand_in(ctx: &FillContext, key: &CacheKey, prior: Option<Arc<Entry>>) -> Option<Arc<Entry>> {
    prior?;
    let now = Instant::now();
    ctx.tiers
        .get(key)
        .filter(|current| ctx.policy.serves_on_error(current.kind(), current.age(now)))
}
