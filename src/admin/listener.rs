//! The admin listener (SPEC §8): probes, metrics, cache stats and purges.
//!
//! It lives on its own port so that nothing a partner service can reach on the front port can
//! purge the cache or read internals, and so that probes keep answering while the front drains.
//! Its `GET` endpoints are open; purges pass [`admin_auth`](crate::admin::auth) first.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::auth::authorize_purge;
use crate::body::Body;
use crate::changes::invalidate::{Cause, Invalidated};
use crate::error::GatewayError;
use crate::front::connection;
use crate::front::pipeline::Gateway;
use crate::request::correlation::Correlation;
use crate::request::route::Guid;
use crate::resource::{IdField, ItemRef, Purge, Resource};

/// Accepts admin connections until `stop` turns true. Each is driven like a front connection
/// (SPEC §8): the same head-read timeout and head-size limit (431), idle connections closed.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let builder = Arc::new(connection::builder(&gateway.config.server));
    let limit = gateway.config.server.header_read_timeout;
    loop {
        let (stream, peer) = tokio::select! {
            () = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let gateway = gateway.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let handle = move |request| {
                let gateway = gateway.clone();
                async move { handle(&gateway, peer, request).await }
            };
            connection::drive(stream, &builder, limit, stop, handle).await;
        });
    }
}

/// Resolves once the flag turns true (or its sender is gone).
pub async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}

/// Routes one admin request from `peer`.
pub async fn handle(
    gateway: &Gateway,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path();
    match (request.method(), path) {
        (&Method::GET, "/metrics") => return metrics(gateway).await,
        (&Method::GET, "/cache/stats") => return stats(gateway).await,
        _ => {}
    }
    if path == "/cache" || path.starts_with("/cache/") {
        return cache_admin(gateway, peer, request.method(), path, request.headers()).await;
    }
    match (request.method(), path) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, r#"{"status":"ok"}"#.to_owned()),
        (&Method::GET, "/readyz") if gateway.is_draining() => json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"draining"}"#.to_owned(),
        ),
        (&Method::GET, "/readyz") => json(StatusCode::OK, r#"{"status":"ready"}"#.to_owned()),
        // SPEC §7: the Partner Center error shape, with the request's correlation IDs.
        (method, "/healthz" | "/readyz" | "/metrics") => {
            let correlation = Correlation::from_request(request.headers());
            refused(GatewayError::MethodNotAllowed(method.clone()), &correlation)
        }
        _ => refused(
            GatewayError::NotFound,
            &Correlation::from_request(request.headers()),
        ),
    }
}

/// `GET /metrics`: the Prometheus text format, cache gauges current as of this scrape.
async fn metrics(gateway: &Gateway) -> Response<Body> {
    let usage = gateway.tiers.usage();
    let text = gateway.metrics.render(usage.entries, usage.bytes);
    let mut response = Response::new(Body::full(text));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /cache/stats`: what is in the cache and how it has been used since start.
async fn stats(gateway: &Gateway) -> Response<Body> {
    let usage = gateway.tiers.usage();
    let outcomes = gateway.metrics.outcomes();
    let count = |label: &str| {
        outcomes
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(0, |(_, n)| *n)
    };
    let from_memory = count("HIT") + count("STALE");
    let eligible = from_memory + count("MISS") + count("REVALIDATED");
    let hit_ratio = if eligible == 0 {
        0.0
    } else {
        from_memory as f64 / eligible as f64
    };
    let by_outcome: serde_json::Map<String, serde_json::Value> = outcomes
        .iter()
        .filter(|(label, _)| *label != "none")
        .map(|(label, n)| ((*label).to_owned(), serde_json::Value::from(*n)))
        .collect();
    let body = serde_json::json!({
        "entries": usage.entries,
        "bytes": usage.bytes,
        "max_bytes": gateway.config.cache.max_bytes,
        "hit_ratio": hit_ratio,
        "outcomes": by_outcome,
        "fills_in_progress": gateway.cache.fills_in_progress(),
        "resources": gateway
            .config
            .cache
            .resources
            .iter()
            .map(|r| (r.name().to_owned(), usage.per_resource[r.index()].into()))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
    });
    let mut body = body;
    if let Some(fleet) = &gateway.fleet {
        body["fleet"] = serde_json::json!({"up": fleet.is_up(), "replicas": fleet.replicas()});
    }
    json(StatusCode::OK, body.to_string())
}

/// `DELETE /cache`, `/cache/customers/{c}`, `/cache/customers/{c}/orders/{o}`,
/// `/cache/customers/{c}/subscriptions/{s}` (SPEC §4.4, §13).
///
/// Order of refusals: unknown path (404), wrong method (405), then who asks (401/403, SPEC §8)
/// before anything about the ids is said (400). Every answer carries the request's
/// correlation IDs (SPEC §7).
async fn cache_admin(
    gateway: &Gateway,
    peer: SocketAddr,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let correlation = Correlation::from_request(headers);
    let correlated = |mut response: Response<Body>| {
        correlation.apply(response.headers_mut());
        response
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let guid = |text: &str, field| Guid::parse(text).ok_or(GatewayError::InvalidIdentifier(field));
    let target = match segments.as_slice() {
        ["cache"] => Ok(Purge::All),
        ["cache", "customers", c] => guid(c, IdField::Customer).map(Purge::Customer),
        ["cache", "customers", c, collection, id] => match Resource::by_collection(collection) {
            Some(resource) => guid(c, IdField::Customer).and_then(|customer| {
                let id = guid(id, IdField::Item(resource))?;
                Ok(Purge::One(ItemRef {
                    resource,
                    customer,
                    id,
                }))
            }),
            None => return refused(GatewayError::NotFound, &correlation),
        },
        _ => return refused(GatewayError::NotFound, &correlation),
    };
    if method != Method::DELETE {
        return refused(GatewayError::MethodNotAllowed(method.clone()), &correlation);
    }
    if let Err(refusal) = authorize_purge(peer.ip(), &gateway.config.admin.token, headers) {
        // The peer and the reason, never the Authorization value.
        tracing::warn!(
            %peer,
            path,
            correlation_id = correlation.correlation_str(),
            request_id = correlation.request_str(),
            error = %refusal,
            "admin purge refused"
        );
        return refused(refusal, &correlation);
    }
    let target = match target {
        Ok(target) => target,
        Err(error) => return refused(error, &correlation),
    };
    // The one invalidation path: memory (a large purge on the blocking pool), the shared tier
    // (N counts both), and in fleet mode every live replica, whose confirmations R counts.
    let Invalidated { purged, replicas } = gateway.changes.run(vec![target], Cause::Admin).await;
    // `purge`, not `target`: every line already has a `target` (the module), one key per name.
    tracing::info!(
        purged,
        purge = %target,
        %peer,
        correlation_id = correlation.correlation_str(),
        request_id = correlation.request_str(),
        "cache purged by admin request"
    );
    let body = match replicas {
        Some(replicas) => format!(r#"{{"purged":{purged},"replicas":{replicas}}}"#),
        None => format!(r#"{{"purged":{purged}}}"#),
    };
    correlated(json(StatusCode::OK, body))
}

/// A refused purge: the SPEC §7 JSON, never stored by a cache in between, and for a 401 the
/// scheme the client must use (RFC 9110 §11.6.1).
/// Every error the admin port answers (SPEC §7, §8): the Partner Center shape, the correlation
/// IDs, never stored; a 401 says how to authenticate.
fn refused(error: GatewayError, correlation: &Correlation) -> Response<Body> {
    let unauthorized = matches!(error, GatewayError::AdminUnauthorized);
    let mut response = error.into_response(correlation);
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if unauthorized {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="partner-gateway-admin""#),
        );
    }
    response
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Admin answers describe this instant; no cache in between may keep them.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
