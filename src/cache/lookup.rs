//! Answering a cached route from the cache (SPEC §4): stage 4 of a request.
//!
//! Two steps: [`OrderCache::lookup`], synchronous — eligibility (else BYPASS) → lookup →
//! freshness → conditional answer — which answers every hit without building a future; and
//! [`OrderCache::fetch`] for the rest — a coalesced fill or revalidation → answer. What an
//! entry's age allows is the policy's to say; this module only acts on it.

use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use http::{request, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::Body;
use crate::cache::ask::Outcome;
use crate::cache::fill::Fills;
use crate::cache::key::{CacheKey, KeyMaker, Keyed};
use crate::cache::policy::{Freshness, Policy};
use crate::cache::store::Entry;
use crate::cache::tier::Tiers;
use crate::config::CacheConfig;
use crate::error::GatewayError;
use crate::observe::metrics::Metrics;
use crate::outcome::{CacheState, Note, Tier, X_CACHE};
use crate::request::coding;
use crate::request::conditional::{if_none_match_matches, RequestDirectives};
use crate::request::correlation::{Correlation, CORRELATION_ID, REQUEST_ID};
use crate::request::credential::Fingerprint;
use crate::resource::ItemRef;
use crate::upstream::exchange::{Exchange, Purpose};
use crate::upstream::forward;
use crate::upstream::shield::ScopeKey;

/// What the cache makes of an order request without waiting for anything.
pub enum Lookup {
    /// Answered from memory: HIT, a fresh remembered 404, STALE (while one refresh runs), or
    /// the 304 of any of them.
    Answered(Response<Body>),
    /// Needs the upstream, coalesced with every other request for the key.
    Fetch(Pending),
    /// Not eligible for the cache: to be forwarded untouched and marked `BYPASS`.
    Bypass(Request<Incoming>),
}

/// An order request that waits for a fill, with what the lookup already worked out.
pub struct Pending {
    parts: request::Parts,
    key: CacheKey,
    /// The entry held for the key that must be revalidated, if any: sent as `If-None-Match`,
    /// and served STALE if the upstream fails or the shield refuses, as the policy allows.
    prior: Option<Arc<Entry>>,
    scope: ScopeKey,
    /// Who the fill may be shared with beyond the key (`shared` mode: one credential).
    fill_scope: Option<Fingerprint>,
    /// The client's `Cache-Control`: an entry the fill finds must be fresh by it too.
    directives: RequestDirectives,
}

/// The order cache as the request path sees it.
pub struct OrderCache {
    enabled: bool,
    policy: Policy,
    keys: KeyMaker,
    tiers: Arc<Tiers>,
    fills: Arc<Fills>,
    exchange: Arc<Exchange>,
    metrics: Arc<Metrics>,
}

impl OrderCache {
    /// The cache `config` describes, storing into `tiers` and filling through `exchange`.
    pub fn new(
        config: &CacheConfig,
        tiers: Arc<Tiers>,
        exchange: Arc<Exchange>,
        metrics: Arc<Metrics>,
    ) -> OrderCache {
        OrderCache {
            enabled: config.enabled,
            policy: Policy::new(config),
            keys: KeyMaker::new(config.partition),
            fills: Arc::new(Fills::new(
                config,
                tiers.clone(),
                exchange.clone(),
                metrics.clone(),
            )),
            tiers,
            exchange,
            metrics,
        }
    }

    /// Fills in progress now (for `/cache/stats`).
    pub fn fills_in_progress(&self) -> usize {
        self.fills.in_progress()
    }

    /// The synchronous half of answering `GET`/`HEAD` of one order: eligibility (else BYPASS)
    /// → lookup → freshness → conditional answer. A hit never builds a future: the whole
    /// answer is made here, and only a request that needs the upstream goes on to
    /// [`OrderCache::fetch`]. `now` is the request's arrival; `caller`, its fingerprint.
    pub fn lookup(
        &self,
        request: Request<Incoming>,
        item: ItemRef,
        now: Instant,
        correlation: &Correlation,
        caller: Option<Fingerprint>,
        note: &mut Note,
    ) -> Result<Lookup, GatewayError> {
        let directives = RequestDirectives::parse(request.headers());
        let key = match self.keys.key(item, request.headers(), caller) {
            Keyed::TwoCredentials => return Err(GatewayError::InvalidAuthorization),
            Keyed::Key(key) if self.enabled && !directives.no_store => key,
            Keyed::Key(_) | Keyed::Bypass => return Ok(Lookup::Bypass(request)),
        };
        let (parts, _body) = request.into_parts();
        let scope = self.exchange.shield().scope_of(caller);
        let fill_scope = self.keys.fill_scope(caller);

        let entry = self.tiers.get(&key);
        let freshness = entry
            .as_ref()
            .map(|e| self.policy.freshness(e.kind(), e.age(now), &directives));
        if let Some(entry) = &entry {
            // SPEC §9: in fleet mode the access line says which tier answered.
            let from_memory = self.tiers.is_shared().then_some(Tier::L1);
            match freshness {
                Some(Freshness::Fresh) => {
                    note.tier = from_memory;
                    let response = answer(entry, CacheState::Hit, &parts, correlation, note, now);
                    return Ok(Lookup::Answered(response));
                }
                Some(Freshness::Stale) => {
                    note.tier = from_memory;
                    if !directives.only_if_cached {
                        // One background refresh per key: a refresh in progress is joined,
                        // not repeated, and runs on even though nobody waits for it. Its logs
                        // carry this request's IDs.
                        let _span = correlation.span().entered();
                        let prior = Some(entry.clone());
                        let _ = self.fills.start_or_join(
                            &key,
                            fill_scope,
                            prior,
                            scope,
                            directives,
                            || self.fill_request(&parts, correlation),
                        );
                    }
                    let response = answer(entry, CacheState::Stale, &parts, correlation, note, now);
                    return Ok(Lookup::Answered(response));
                }
                _ => {}
            }
        }
        // In fleet mode the shared tier may still hold it (looked at in `fetch`).
        if directives.only_if_cached && !self.tiers.is_shared() {
            return Err(GatewayError::NotCached);
        }
        let revalidate = matches!(freshness, Some(Freshness::Revalidate { .. }));
        Ok(Lookup::Fetch(Pending {
            parts,
            key,
            // A remembered 404 has no version to revalidate: it is simply asked for again.
            prior: entry.filter(|e| revalidate && !e.is_negative()),
            scope,
            fill_scope,
            directives,
        }))
    }

    /// Asks the upstream (coalesced with every other request for the key) and answers from
    /// what comes back.
    pub async fn fetch(
        &self,
        pending: Pending,
        correlation: &Correlation,
        note: &mut Note,
    ) -> Result<Response<Body>, GatewayError> {
        let Pending {
            parts,
            key,
            prior,
            scope,
            fill_scope,
            directives,
        } = pending;
        let parts = &parts;
        if directives.only_if_cached {
            return self
                .shared_or_not_cached(&key, &directives, parts, correlation, note)
                .await;
        }
        let head_only = parts.method == Method::HEAD;
        let (outcome, joined) =
            self.fills
                .start_or_join(&key, fill_scope, prior, scope, directives, || {
                    self.fill_request(parts, correlation)
                });
        if joined {
            self.metrics.coalesced_wait();
        }
        let outcome = outcome.await;
        let now = Instant::now();
        match &*outcome {
            Outcome::Entry {
                entry,
                state,
                upstream_status,
                tier,
            } => {
                note.upstream_status = *upstream_status;
                note.tier = tier.filter(|_| self.tiers.is_shared());
                Ok(answer(entry, *state, parts, correlation, note, now))
            }
            Outcome::Stale {
                entry,
                upstream_status,
                refusal,
            } => {
                note.upstream_status = *upstream_status;
                note.shield = *refusal;
                note.tier = self.tiers.is_shared().then_some(Tier::L1);
                let stale = CacheState::Stale;
                Ok(answer(entry, stale, parts, correlation, note, now))
            }
            Outcome::Passed { head, body } => {
                // Passed in a coding this caller's request does not accept: its own copy.
                if !coding::accepts(&parts.headers, coding::of_answer(&head.headers).as_deref()) {
                    let own = Box::pin(self.own_copy(parts, scope, correlation, note)).await?;
                    return Ok(marked(own, CacheState::Miss, note));
                }
                note.upstream_status = Some(head.status.as_u16());
                let body = if head_only {
                    Body::empty()
                } else {
                    Body::full(body.clone())
                };
                let mut response = Response::from_parts(head.clone(), body);
                forward::finish_head(response.headers_mut(), correlation);
                Ok(marked(response, CacheState::Miss, note))
            }
            Outcome::Oversized(slot) => {
                let claimed = slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                let response = match claimed {
                    Some(mut response) => {
                        note.upstream_status = Some(response.status().as_u16());
                        if head_only {
                            *response.body_mut() = Body::empty();
                        }
                        forward::finish_head(response.headers_mut(), correlation);
                        response
                    }
                    // Someone else is streaming the one oversized answer; fetch our own copy.
                    None => Box::pin(self.own_copy(parts, scope, correlation, note)).await?,
                };
                Ok(marked(response, CacheState::Miss, note))
            }
            Outcome::Failed(failure) => {
                note.shield = failure.refusal;
                Err(failure.error.clone())
            }
        }
    }

    /// This caller's own upstream request, as it came (its own `Accept-Encoding` included), for
    /// when the fill's answer cannot be shared with it.
    async fn own_copy(
        &self,
        parts: &request::Parts,
        scope: ScopeKey,
        correlation: &Correlation,
        note: &mut Note,
    ) -> Result<Response<Body>, GatewayError> {
        let purpose = Purpose::Cached;
        (self.exchange)
            .forward(parts, Body::empty(), scope, purpose, correlation, note)
            .await
    }

    /// `only-if-cached` after a memory miss in fleet mode: the shared tier's entry, used as it
    /// is if the directives allow (no upstream, no refresh), else `504 NotCached` (SPEC §4.3).
    async fn shared_or_not_cached(
        &self,
        key: &CacheKey,
        directives: &RequestDirectives,
        parts: &request::Parts,
        correlation: &Correlation,
        note: &mut Note,
    ) -> Result<Response<Body>, GatewayError> {
        let epoch = self.tiers.epoch(key);
        let entry = self
            .tiers
            .get_shared(key, epoch)
            .await
            .ok_or(GatewayError::NotCached)?;
        let now = Instant::now();
        let state = match self
            .policy
            .freshness(entry.kind(), entry.age(now), directives)
        {
            Freshness::Fresh => CacheState::Hit,
            Freshness::Stale => CacheState::Stale,
            _ => return Err(GatewayError::NotCached),
        };
        note.tier = Some(Tier::L2);
        Ok(answer(&entry, state, parts, correlation, note, now))
    }

    /// The upstream request of a fill: always a GET for the whole order, without the client's
    /// conditionals (the gateway answers those itself from what the fill brings back).
    fn fill_request(
        &self,
        parts: &request::Parts,
        correlation: &Correlation,
    ) -> Result<Request<Body>, GatewayError> {
        let mut request = self
            .exchange
            .request_for(parts, Body::empty(), correlation)?;
        *request.method_mut() = Method::GET;
        let headers = request.headers_mut();
        for name in [
            http::header::IF_NONE_MATCH,
            http::header::IF_MODIFIED_SINCE,
            http::header::IF_MATCH,
            http::header::IF_UNMODIFIED_SINCE,
            http::header::IF_RANGE,
            http::header::RANGE,
            CONTENT_LENGTH,
            CONTENT_TYPE,
        ] {
            headers.remove(name);
        }
        Ok(request)
    }
}

/// Sets the gateway's `X-Cache` on an answer that passed through (replacing the upstream's).
pub fn marked(mut response: Response<Body>, state: CacheState, note: &mut Note) -> Response<Body> {
    response.headers_mut().insert(&X_CACHE, state.header());
    note.cache = Some(state);
    response
}

/// An answer from an entry: 304 when `If-None-Match` matches, else the stored order (or 404).
pub fn answer(
    entry: &Arc<Entry>,
    state: CacheState,
    parts: &request::Parts,
    correlation: &Correlation,
    note: &mut Note,
    now: Instant,
) -> Response<Body> {
    note.cache = Some(state);
    let not_modified = entry
        .etag
        .as_ref()
        .is_some_and(|etag| if_none_match_matches(&parts.headers, etag));
    // Sized once for every header below: no re-hashing growth on the hit path.
    let mut headers = HeaderMap::with_capacity(12);
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Body::empty())
    } else {
        if let Some(content_type) = &entry.content_type {
            headers.append(CONTENT_TYPE, content_type.clone());
        }
        if parts.method == Method::HEAD {
            headers.append(CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
            (entry.status, Body::empty())
        } else {
            (entry.status, Body::full(entry.body.clone()))
        }
    };
    if let Some(etag) = &entry.etag {
        headers.append(ETAG, etag.clone());
    }
    headers.append(http::header::AGE, age_value(entry.age(now).as_secs()));
    headers.append(&X_CACHE, state.header());
    headers.append(http::header::VIA, HeaderValue::from_static(forward::VIA));
    headers.append(&CORRELATION_ID, correlation.correlation_id.clone());
    headers.append(&REQUEST_ID, correlation.request_id.clone());
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// `Age` values for the first hour, formatted once into static text: most answers take theirs
/// from this table, without allocating or touching a shared reference count.
fn age_value(secs: u64) -> HeaderValue {
    static TABLE: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let text: String = (0..3600u32).map(|i| format!("{i} ")).collect();
        Box::leak(text.into_boxed_str())
            .split_terminator(' ')
            .collect()
    });
    match usize::try_from(secs).ok().and_then(|i| table.get(i)) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(secs),
    }
}
