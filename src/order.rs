//! Stage 4 — answering an order-by-ID request from the cache (SPEC §4).
//!
//! Two steps: [`lookup`], synchronous — eligibility (else BYPASS) → lookup → freshness →
//! conditional answer — which answers every hit without building a future; and [`fetch`] for
//! the rest — a coalesced fill/revalidation → answer. [`CacheState`] is the vocabulary of the
//! outcome: its `as_str()` is both the `X-Cache` value and the log/metric label.

use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use http::{request, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::Body;
use crate::conditional::{if_none_match_matches, RequestDirectives};
use crate::correlation::{Correlation, CORRELATION_ID, REQUEST_ID};
use crate::error::GatewayError;
use crate::fill::{Fetched, Outcome};
use crate::forward;
use crate::key::{CacheKey, CredentialMemo};
use crate::pipeline::{Gateway, Note};
use crate::route::OrderRef;
use crate::shield::ScopeKey;
use crate::store::Entry;

/// `X-Cache`: how an order-by-ID answer was produced.
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The states of SPEC §4.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    Miss,
    Hit,
    Stale,
    Revalidated,
    Bypass,
}

impl CacheState {
    /// The `X-Cache` value and the `cache` label of logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::Miss => "MISS",
            CacheState::Hit => "HIT",
            CacheState::Stale => "STALE",
            CacheState::Revalidated => "REVALIDATED",
            CacheState::Bypass => "BYPASS",
        }
    }

    fn header(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

impl From<Fetched> for CacheState {
    fn from(fetched: Fetched) -> CacheState {
        match fetched {
            Fetched::Miss => CacheState::Miss,
            Fetched::Revalidated => CacheState::Revalidated,
            Fetched::Hit => CacheState::Hit,
        }
    }
}

/// What the cache makes of an order request without waiting for anything.
pub enum Lookup {
    /// Answered from memory: HIT, a fresh remembered 404, STALE (while one refresh runs), or
    /// the 304 of any of them.
    Answered(Response<Body>),
    /// Needs the upstream, coalesced with every other request for the key.
    Fetch(Pending),
    /// Not eligible for the cache: forwarded untouched, marked `BYPASS`.
    Bypass(Request<Incoming>),
}

/// An order request that waits for a fill, with what the lookup already worked out.
pub struct Pending {
    parts: request::Parts,
    key: CacheKey,
    /// The entry held for the key (expired or revalidation required), if any: sent as
    /// `If-None-Match`, and served STALE if the upstream fails or the shield refuses.
    prior: Option<Arc<Entry>>,
    scope: ScopeKey,
}

/// The synchronous half of answering `GET`/`HEAD` of one order: eligibility (else BYPASS) →
/// lookup → freshness → conditional answer. A hit never builds a future: the whole answer is
/// made here, and only a request that needs the upstream goes on to [`fetch`]. `now` is the
/// request's arrival; `memo`, its connection's last credential.
pub fn lookup(
    gateway: &Gateway,
    request: Request<Incoming>,
    order: OrderRef,
    now: Instant,
    correlation: &Correlation,
    memo: &CredentialMemo,
    note: &mut Note,
) -> Result<Lookup, GatewayError> {
    let config = &gateway.config.cache;
    let directives = RequestDirectives::parse(request.headers());
    let key = if config.enabled && !directives.no_store {
        gateway.keys.key(order, request.headers(), memo)
    } else {
        None
    };
    let Some(key) = key else {
        return Ok(Lookup::Bypass(request));
    };
    let (parts, _body) = request.into_parts();

    let entry = gateway.store.get(&key);
    if let Some(entry) = &entry {
        let age = entry.age(now);
        let fresh_for = if entry.is_negative() {
            config.negative_ttl
        } else {
            config.ttl
        };
        if !directives.requires_revalidation(age) {
            if age <= fresh_for {
                let response = answer(entry, CacheState::Hit, &parts, correlation, note, now);
                return Ok(Lookup::Answered(response));
            }
            // Remembered 404s are never served stale.
            if !entry.is_negative() && age <= config.ttl + config.stale_while_revalidate {
                if !directives.only_if_cached {
                    let scope = gateway
                        .shield
                        .scope_of(&gateway.keys, &parts.headers, Some(memo));
                    // One background refresh per key: a refresh in progress is joined, not
                    // repeated, and runs on even though nobody waits for it. Its logs carry
                    // this request's IDs.
                    let _span = correlation.span().entered();
                    let _ = gateway.fills.start_or_join(
                        &gateway.fill_context,
                        &key,
                        Some(entry.clone()),
                        scope,
                        || fill_request(gateway, &parts, correlation),
                    );
                }
                let response = answer(entry, CacheState::Stale, &parts, correlation, note, now);
                return Ok(Lookup::Answered(response));
            }
        }
    }
    if directives.only_if_cached {
        return Err(GatewayError::NotCached);
    }
    let scope = gateway
        .shield
        .scope_of(&gateway.keys, &parts.headers, Some(memo));
    Ok(Lookup::Fetch(Pending {
        parts,
        key,
        prior: entry.filter(|e| !e.is_negative()),
        scope,
    }))
}

/// Asks the upstream (coalesced with every other request for the key) and answers from what
/// comes back.
pub async fn fetch(
    gateway: &Gateway,
    pending: Pending,
    correlation: &Correlation,
    note: &mut Note,
) -> Result<Response<Body>, GatewayError> {
    let Pending {
        parts,
        key,
        prior,
        scope,
    } = pending;
    let (parts, key) = (&parts, &key);
    let head_only = parts.method == Method::HEAD;
    let (outcome, joined) =
        gateway
            .fills
            .start_or_join(&gateway.fill_context, key, prior, scope, || {
                fill_request(gateway, parts, correlation)
            });
    if joined {
        gateway.metrics.coalesced_wait();
    }
    let outcome = outcome.await;
    let now = Instant::now();
    match &*outcome {
        Outcome::Entry {
            entry,
            state,
            upstream_status,
        } => {
            note.upstream_status = *upstream_status;
            Ok(answer(
                entry,
                (*state).into(),
                parts,
                correlation,
                note,
                now,
            ))
        }
        Outcome::Stale {
            entry,
            upstream_status,
            refusal,
        } => {
            note.upstream_status = *upstream_status;
            note.shield = *refusal;
            Ok(answer(
                entry,
                CacheState::Stale,
                parts,
                correlation,
                note,
                now,
            ))
        }
        Outcome::Passed { head, body, .. } => {
            note.upstream_status = Some(head.status.as_u16());
            let mut response = Response::from_parts(
                head.clone(),
                if head_only {
                    Body::empty()
                } else {
                    Body::full(body.clone())
                },
            );
            forward::finish_head(response.headers_mut(), correlation);
            Ok(marked(response, CacheState::Miss, note))
        }
        Outcome::Oversized(slot) => {
            let claimed = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            match claimed {
                Some(mut response) => {
                    note.upstream_status = Some(response.status().as_u16());
                    if head_only {
                        *response.body_mut() = Body::empty();
                    }
                    forward::finish_head(response.headers_mut(), correlation);
                    Ok(marked(response, CacheState::Miss, note))
                }
                // Someone else is streaming the one oversized answer; fetch our own copy.
                None => {
                    let response = Box::pin(gateway.forward_parts(
                        parts,
                        Body::empty(),
                        true,
                        correlation,
                        note,
                    ))
                    .await?;
                    Ok(marked(response, CacheState::Miss, note))
                }
            }
        }
        Outcome::Failed(error) => Err(error.clone()),
        Outcome::Refused(refused) => {
            note.shield = Some(refused.reason);
            Err(refused.error.clone())
        }
    }
}

/// Forwards an ineligible request untouched; the answer is marked `BYPASS`.
pub async fn bypass(
    gateway: &Gateway,
    request: Request<Incoming>,
    correlation: &Correlation,
    note: &mut Note,
) -> Result<Response<Body>, GatewayError> {
    let response = gateway.forward(request, true, correlation, note).await?;
    Ok(marked(response, CacheState::Bypass, note))
}

/// Sets the gateway's `X-Cache` on an answer that passed through (replacing the upstream's).
fn marked(mut response: Response<Body>, state: CacheState, note: &mut Note) -> Response<Body> {
    response.headers_mut().insert(&X_CACHE, state.header());
    note.cache = Some(state);
    response
}

/// The upstream request of a fill: always a GET for the whole order, without the client's
/// conditionals (the gateway answers those itself from what the fill brings back).
fn fill_request(
    gateway: &Gateway,
    parts: &request::Parts,
    correlation: &Correlation,
) -> Result<Request<Body>, GatewayError> {
    let mut request =
        forward::upstream_request(parts, Body::empty(), correlation, &gateway.upstream)?;
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
        http::header::CONTENT_TYPE,
    ] {
        headers.remove(name);
    }
    Ok(request)
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
