//! Partner Center's event notifications (SPEC §15.2): verify, then invalidate, then relay.
//!
//! `POST {webhooks.path}` on the front listener. A notification whose signature does not verify
//! changes nothing and goes nowhere. A verified one drops exactly what a 2xx write on its
//! `ResourceUri`'s path drops (the write-effect rule of `request::target`, not a copy of it),
//! through the one invalidation path — on every replica, confirmed, before anything else — and
//! only then reaches the partner's own handler (`webhooks.relay_url`) with its body and
//! signature unchanged, so that what the handler reads right after the event is already fresh.

use std::time::Duration;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;

use crate::body::{Body, Intake};
use crate::changes::certificate::Certificates;
use crate::changes::invalidate::{Cause, Invalidator};
use crate::config::{UpstreamConfig, WebhooksConfig};
use crate::error::GatewayError;
use crate::observe::metrics::Metrics;
use crate::outcome::WebhookOutcome;
use crate::request::correlation::Correlation;
use crate::request::target;
use crate::resource::Resources;
use crate::upstream::client::{Upstream, UpstreamSetupError};
use crate::upstream::forward;

/// Largest notification body taken (SPEC §15.2): larger ones are `413 PayloadTooLarge`.
pub const MAX_BODY: usize = 64 * 1024;

/// The notification endpoint of one gateway.
pub struct Webhooks {
    certificates: Certificates,
    intake: Intake,
    relay: Option<(Uri, Upstream)>,
    relay_timeout: Duration,
    resources: Resources,
    changes: Invalidator,
}

impl Webhooks {
    /// The endpoint `config` describes (`None` when `webhooks.path` is empty); the relay uses a
    /// pooled client with the upstream's TLS roots and limits.
    pub fn new(
        config: &WebhooksConfig,
        intake: Intake,
        upstream: &UpstreamConfig,
        resources: Resources,
        changes: Invalidator,
    ) -> Result<Option<Webhooks>, UpstreamSetupError> {
        if !config.enabled() {
            return Ok(None);
        }
        let relay = match config.relay_url.parse::<Uri>() {
            Ok(uri) if !config.relay_url.is_empty() => Some((uri, Upstream::new(upstream)?)),
            _ => None,
        };
        Ok(Some(Webhooks {
            certificates: Certificates::new(config, upstream)?,
            intake,
            relay,
            relay_timeout: config.relay_timeout,
            resources,
            changes,
        }))
    }

    /// One notification, start to answer; an error is the SPEC §7 answer the pipeline makes.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        correlation: &Correlation,
        metrics: &Metrics,
    ) -> Result<Response<Body>, GatewayError> {
        if request.method() != Method::POST {
            return Err(GatewayError::MethodNotAllowed(request.method().clone()));
        }
        let (parts, body) = request.into_parts();
        let body = self.intake.take_whole(body, MAX_BODY as u64).await?;
        let signer = self.certificates.signer_for(&parts.headers).await;
        if let Err(why) = signer.and_then(|signer| signer.verify(&parts.headers, &body)) {
            tracing::warn!(error = %why, "event notification refused");
            metrics.webhook_event(WebhookOutcome::Unauthorized);
            return Err(GatewayError::WebhookUnauthorized);
        }
        let Some((event, resource_uri)) = event_of(&body) else {
            metrics.webhook_event(WebhookOutcome::Invalid);
            return Err(GatewayError::InvalidWebhookEvent);
        };
        let changed = target::changed_by_write(&resource_path(&resource_uri), self.resources);
        let invalidated = self.changes.run(changed, Cause::Webhook).await;
        tracing::info!(
            event = %event,
            resource_uri = %resource_uri,
            invalidated = invalidated.purged,
            replicas = invalidated.replicas,
            "event notification taken"
        );
        let Some((uri, client)) = &self.relay else {
            metrics.webhook_event(WebhookOutcome::Accepted);
            let answer = serde_json::json!({ "invalidated": invalidated.purged }).to_string();
            let mut response = Response::new(Body::full(answer));
            let json = http::HeaderValue::from_static("application/json");
            response.headers_mut().insert(CONTENT_TYPE, json);
            correlation.apply(response.headers_mut());
            return Ok(response);
        };
        let mut relayed = Request::new(Body::full(body));
        *relayed.method_mut() = Method::POST;
        *relayed.uri_mut() = uri.clone();
        let headers = relayed.headers_mut();
        *headers = parts.headers;
        forward::strip_hop_by_hop(headers);
        headers.remove(HOST);
        headers.remove(CONTENT_LENGTH);
        correlation.apply(headers);
        let sent = tokio::time::timeout(self.relay_timeout, client.send(relayed)).await;
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                metrics.webhook_event(WebhookOutcome::RelayFailed);
                return Err(error);
            }
            Err(_) => {
                metrics.webhook_event(WebhookOutcome::RelayFailed);
                return Err(GatewayError::UpstreamTimeout(
                    self.relay_timeout.as_millis() as u64,
                ));
            }
        };
        metrics.webhook_event(WebhookOutcome::Accepted);
        let response = response.map(|body| Body::upstream(body, self.relay_timeout));
        Ok(forward::client_response(response, correlation))
    }
}

/// `EventName` and `ResourceUri` of a notification (field names in any case), if the body is
/// a JSON object with both as strings.
fn event_of(body: &[u8]) -> Option<(String, String)> {
    let serde_json::Value::Object(fields) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_str())
            .map(str::to_owned)
    };
    Some((field("EventName")?, field("ResourceUri")?))
}

/// The path a `ResourceUri` names, its leading `/webhooks` segment removed (Partner Center
/// writes `https://api.partnercenter.microsoft.com/webhooks/v1/customers/{c}/…`).
fn resource_path(uri: &str) -> String {
    let path = match uri.parse::<Uri>() {
        Ok(parsed) => parsed.path().to_owned(),
        Err(_) => uri.split(['?', '#']).next().unwrap_or_default().to_owned(),
    };
    match path.strip_prefix("/webhooks") {
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_uris_name_paths_without_the_webhooks_segment() {
        let c = "4a2f6c1e-8b3d-4e5f-9a7b-1c2d3e4f5a60";
        let absolute = format!(
            "https://api.partnercenter.microsoft.com/webhooks/v1/customers/{c}/subscriptions/s1"
        );
        assert_eq!(
            resource_path(&absolute),
            format!("/v1/customers/{c}/subscriptions/s1")
        );
        assert_eq!(
            resource_path(&format!("/v1/customers/{c}")),
            format!("/v1/customers/{c}")
        );
        assert_eq!(resource_path("/webhooksx/v1"), "/webhooksx/v1");
        assert_eq!(resource_path("/v1/invoices/x?y=1"), "/v1/invoices/x");
    }

    #[test]
    fn an_event_needs_its_name_and_resource_in_any_case() {
        let body = br#"{"eventname":"subscription-updated","RESOURCEURI":"/v1/x","AuditUri":"/a"}"#;
        assert_eq!(
            event_of(body),
            Some(("subscription-updated".into(), "/v1/x".into()))
        );
        for bad in [
            &br#"{"EventName":"x"}"#[..],
            b"[]",
            b"{",
            br#"{"EventName":1,"ResourceUri":"/"}"#,
        ] {
            assert_eq!(event_of(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
