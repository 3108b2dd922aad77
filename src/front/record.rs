//! What a request leaves behind (SPEC §9): its metrics and its one access line — also when its
//! client hung up before the answer (status 499, as nginx writes it), whether its work stopped
//! with it or ran on in a task of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Uri};

use crate::observe::metrics::Metrics;
use crate::outcome::{CacheState, Note, Refusal, Tier};
use crate::request::correlation::Correlation;
use crate::request::route::Route;

/// What a request carries from arrival to its access line.
pub struct Exchanged {
    pub started: Instant,
    pub route: Route,
    pub method: Method,
    pub uri: Uri,
    pub correlation: Correlation,
}

/// The request's metrics and its one access line (SPEC §9).
pub fn account(
    metrics: &Metrics,
    exchanged: &Exchanged,
    note: &Note,
    status: u16,
    error: Option<&str>,
) {
    let elapsed = exchanged.started.elapsed();
    metrics.request(&exchanged.route, status, note.cache, elapsed);
    access_log(exchanged, status, note, error, elapsed);
}

/// The status an access line gives a request whose client hung up before the answer (nginx's).
pub const CLIENT_LEFT: u16 = 499;

/// Marks that the client of a request whose work runs in a task of its own hung up (its
/// future was dropped before the task ended).
pub struct ClientLeft(pub Arc<AtomicBool>);

impl Drop for ClientLeft {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Writes the access line of a request whose client hung up while it waited (its future was
/// dropped): every request leaves one line and its metrics (SPEC §9). Disarmed once the
/// request finishes normally.
pub struct Unfinished<'a> {
    pub metrics: &'a Metrics,
    pub exchanged: &'a Exchanged,
    /// Whether dropping it writes the line; cleared once the request finished normally.
    pub armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if self.armed {
            let error = Some("the client closed the connection before the answer");
            account(
                self.metrics,
                self.exchanged,
                &Note::default(),
                CLIENT_LEFT,
                error,
            );
        }
    }
}

/// The one access line of SPEC §9. Never the query string, `Authorization` or a body.
fn access_log(
    exchanged: &Exchanged,
    status: u16,
    note: &Note,
    error: Option<&str>,
    elapsed: Duration,
) {
    tracing::info!(
        target: "partner_gateway::access",
        method = exchanged.method.as_str(),
        path = exchanged.uri.path(),
        route = exchanged.route.label(),
        status,
        cache = note.cache.map(CacheState::as_str),
        upstream_status = note.upstream_status,
        shield = note.shield.map(Refusal::as_str),
        tier = note.tier.map(Tier::as_str),
        error,
        latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        correlation_id = exchanged.correlation.correlation_str(),
        request_id = exchanged.correlation.request_str(),
        "request"
    );
}
