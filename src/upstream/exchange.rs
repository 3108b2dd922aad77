//! The one way a request reaches the upstream: admit through the shield → send → open a
//! cooldown on 429 → read within the request timeout.
//!
//! Fills, revalidations, background refreshes, bypassed and forwarded requests all come here,
//! so the budget, the in-flight bound, the 429 cooldown (SPEC §6), the timeout and its 504,
//! the idle limit on every upstream body and the end of an exchange whose streamed client
//! body was cut off (SPEC §14), and the upstream metrics are each applied in exactly one
//! place. What an answer means (store it, stream it, invalidate after it) is the caller's
//! business.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{request, Request, Response, StatusCode};

use crate::body::Body;
use crate::config::UpstreamConfig;
use crate::error::GatewayError;
use crate::observe::metrics::Metrics;
use crate::outcome::{Note, Refusal};
use crate::request::correlation::Correlation;
use crate::upstream::client::{Upstream, UpstreamSetupError};
use crate::upstream::forward;
use crate::upstream::shield::{Refused, ScopeKey, Shield};

/// What an upstream call is for, as far as the shield cares (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A request on a cached route (fill, revalidation, refresh, bypass): held back during a
    /// cooldown, and its 429 opens one.
    Cached,
    /// Anything else: neither affected by a cooldown nor opening one.
    Forward,
}

/// Why an exchange produced no answer.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Set when the shield kept the request from the upstream.
    pub refusal: Option<Refusal>,
    /// The answer the client gets when nothing cached can stand in.
    pub error: GatewayError,
}

impl From<Refused> for Failure {
    fn from(refused: Refused) -> Failure {
        Failure {
            refusal: Some(refused.reason),
            error: refused.error,
        }
    }
}

impl From<GatewayError> for Failure {
    fn from(error: GatewayError) -> Failure {
        Failure {
            refusal: None,
            error,
        }
    }
}

/// The upstream, its shield and its timeout: one for the process.
pub struct Exchange {
    client: Upstream,
    shield: Shield,
    metrics: Arc<Metrics>,
    request_timeout: Duration,
    body_idle_timeout: Duration,
}

impl Exchange {
    /// Builds the pooled client and the shield from validated config.
    pub fn new(
        config: &UpstreamConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Exchange, UpstreamSetupError> {
        Ok(Exchange {
            client: Upstream::new(config)?,
            shield: Shield::new(config, metrics.clone()),
            metrics,
            request_timeout: config.request_timeout,
            body_idle_timeout: config.body_idle_timeout,
        })
    }

    /// `upstream.request_timeout`: how long one upstream exchange may take.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The shield, for callers that work out a request's scope.
    pub fn shield(&self) -> &Shield {
        &self.shield
    }

    /// The upstream request for a client's request head (SPEC §5 header rules).
    pub fn request_for(
        &self,
        parts: &request::Parts,
        body: Body,
        correlation: &Correlation,
    ) -> Result<Request<Body>, GatewayError> {
        forward::upstream_request(parts, body, correlation, &self.client)
    }

    /// Admits `request` through the shield, sends it, opens a cooldown when a cached route is
    /// answered 429, and hands the response to `read` — all within `upstream.request_timeout`,
    /// holding the in-flight slot until `read` is done. The response body is cut off when it
    /// sends no byte for `upstream.body_idle_timeout`.
    pub async fn send<T, Read, Fut>(
        &self,
        scope: ScopeKey,
        purpose: Purpose,
        request: Request<Body>,
        read: Read,
    ) -> Result<T, Failure>
    where
        Read: FnOnce(Response<Body>) -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        self.send_as(scope, purpose, false, request, read).await
    }

    /// [`Exchange::send`], for a request that streams a client's body when `streamed`.
    async fn send_as<T, Read, Fut>(
        &self,
        scope: ScopeKey,
        purpose: Purpose,
        streamed: bool,
        request: Request<Body>,
        read: Read,
    ) -> Result<T, Failure>
    where
        Read: FnOnce(Response<Body>) -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let order = purpose == Purpose::Cached;
        let admission = self.shield.admit(scope, order, streamed).await?;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let head = tokio::time::timeout_at(deadline, self.client.send(request)).await;
        let response = match head {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                self.metrics.upstream(None, started.elapsed());
                return Err(error.into());
            }
            Err(_) => {
                self.metrics.upstream(None, started.elapsed());
                return Err(self.timeout_error().into());
            }
        };
        self.metrics
            .upstream(Some(response.status().as_u16()), started.elapsed());
        if purpose == Purpose::Cached && response.status() == StatusCode::TOO_MANY_REQUESTS {
            self.shield
                .open_cooldown_everywhere(scope, response.headers())
                .await;
        }
        let idle = self.body_idle_timeout;
        let response = response.map(|incoming| Body::upstream(incoming, idle));
        let read = tokio::time::timeout_at(deadline, read(response)).await;
        drop(admission);
        match read {
            Ok(result) => result.map_err(Failure::from),
            Err(_) => Err(self.timeout_error().into()),
        }
    }

    /// Sends a request upstream as it came and streams the answer back (SPEC §5). A client
    /// body that streams takes a place in the shield's streaming share, and when it is cut
    /// off before the answer's head came, that cut is the answer (408, 413) and the upstream
    /// request is dropped.
    pub async fn forward(
        &self,
        parts: &request::Parts,
        mut body: Body,
        scope: ScopeKey,
        purpose: Purpose,
        correlation: &Correlation,
        note: &mut Note,
    ) -> Result<Response<Body>, GatewayError> {
        let cutoff = body.take_cutoff();
        let request = self.request_for(parts, body, correlation)?;
        let streamed = cutoff.is_some();
        let sent = self.send_as(scope, purpose, streamed, request, |response| async {
            Ok(response)
        });
        let sent = match cutoff {
            None => sent.await,
            Some(cutoff) => tokio::select! {
                biased;
                cut = cutoff.wait() => Err(Failure::from(GatewayError::from(cut))),
                sent = sent => sent,
            },
        };
        let response = sent.map_err(|failure| {
            note.shield = failure.refusal;
            failure.error
        })?;
        note.upstream_status = Some(response.status().as_u16());
        Ok(forward::client_response(response, correlation))
    }

    /// The error for an exchange that ran past `upstream.request_timeout`.
    fn timeout_error(&self) -> GatewayError {
        GatewayError::UpstreamTimeout(self.request_timeout.as_millis() as u64)
    }
}
