//! What can go wrong in a request, and the one place it becomes an HTTP answer (SPEC §7).
//!
//! Everything below the outer handler returns `Result<_, GatewayError>` and uses `?`; only
//! [`GatewayError::into_response`] decides status, `errorName`, `Retry-After` and body, so the
//! Partner Center error shape and the correlation headers cannot be forgotten on some path.

use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::body::{Body, Cut};
use crate::request::correlation::Correlation;
use crate::resource::IdField;

/// An answer the gateway makes itself instead of the upstream's. Its `Display` is the detail
/// for the request's log line (field `error`); what the client reads is
/// [`GatewayError::description`], which names no internal detail (SPEC §7).
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("the {} in the path is not a GUID", .0.name())]
    InvalidIdentifier(IdField),
    #[error("the path has an empty or dot segment, or an encoded '/' or '.'")]
    InvalidPath,
    #[error("the request carries more than one Authorization field")]
    InvalidAuthorization,
    #[error("the method {0} is not allowed through the gateway")]
    MethodNotAllowed(http::Method),
    #[error("the request body stalled for longer than the body read timeout")]
    RequestTimeout,
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("the request body was broken off or is shorter than announced")]
    RequestBodyBroken,
    #[error("there is no such admin endpoint")]
    NotFound,
    #[error("the event notification is not a JSON object with EventName and ResourceUri")]
    InvalidWebhookEvent,
    #[error("the event notification's signature or certificate does not verify")]
    WebhookUnauthorized,
    #[error("the admin token is missing or wrong")]
    AdminUnauthorized,
    #[error("admin purges are accepted only from loopback while no admin token is set")]
    AdminForbidden,
    #[error("the gateway's upstream budget is exhausted; retry after {retry_after} s")]
    GatewayRateLimited { retry_after: u64 },
    #[error("the upstream is throttling these calls; retry after {retry_after} s")]
    UpstreamThrottled { retry_after: u64 },
    #[error("the upstream could not be reached or answered badly: {0}")]
    UpstreamUnavailable(String),
    #[error("the upstream did not answer within {0} ms")]
    UpstreamTimeout(u64),
    #[error("only-if-cached was requested and nothing usable is cached")]
    NotCached,
    #[error("the gateway failed while handling this request")]
    Internal,
}

impl GatewayError {
    /// Status and Partner Center `errorName`. No `_` arm: a new variant forces a decision.
    pub fn status_and_name(&self) -> (StatusCode, &'static str) {
        match self {
            GatewayError::InvalidIdentifier(_) => (StatusCode::BAD_REQUEST, "InvalidIdentifier"),
            GatewayError::InvalidPath => (StatusCode::BAD_REQUEST, "InvalidPath"),
            GatewayError::InvalidAuthorization => (StatusCode::BAD_REQUEST, "InvalidAuthorization"),
            GatewayError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed")
            }
            GatewayError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "RequestTimeout"),
            GatewayError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge")
            }
            GatewayError::RequestBodyBroken => (StatusCode::BAD_REQUEST, "InvalidRequestBody"),
            GatewayError::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
            GatewayError::InvalidWebhookEvent => (StatusCode::BAD_REQUEST, "InvalidWebhookEvent"),
            GatewayError::WebhookUnauthorized => (StatusCode::UNAUTHORIZED, "WebhookUnauthorized"),
            GatewayError::AdminUnauthorized => (StatusCode::UNAUTHORIZED, "AdminUnauthorized"),
            GatewayError::AdminForbidden => (StatusCode::FORBIDDEN, "AdminForbidden"),
            GatewayError::GatewayRateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "GatewayRateLimited")
            }
            GatewayError::UpstreamThrottled { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "UpstreamThrottled")
            }
            GatewayError::UpstreamUnavailable(_) => {
                (StatusCode::BAD_GATEWAY, "UpstreamUnavailable")
            }
            GatewayError::UpstreamTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "UpstreamTimeout"),
            GatewayError::NotCached => (StatusCode::GATEWAY_TIMEOUT, "NotCached"),
            GatewayError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    /// What the client reads: the log detail, less anything internal (an OS error, a
    /// certificate problem, an upstream address).
    pub fn description(&self) -> String {
        match self {
            GatewayError::UpstreamUnavailable(_) => {
                "the upstream could not be reached or answered badly".to_owned()
            }
            other => other.to_string(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::GatewayRateLimited { retry_after }
            | GatewayError::UpstreamThrottled { retry_after } => Some((*retry_after).max(1)),
            _ => None,
        }
    }

    /// Whether a request that failed this way, once handed to the upstream exchange, may have
    /// reached Partner Center and been applied there: no answer head came back (a timeout, a
    /// broken connection, a body cut off on its way). A write that ends so invalidates as a 2xx
    /// would (SPEC §4.4); a refusal of the gateway's own (budget, cooldown, a bad request) never
    /// left it.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamUnavailable(_)
                | GatewayError::UpstreamTimeout(_)
                | GatewayError::RequestTimeout
                | GatewayError::PayloadTooLarge { .. }
                | GatewayError::RequestBodyBroken
                | GatewayError::Internal
        )
    }

    /// The SPEC §7 JSON answer, with the request's correlation headers.
    pub fn into_response(self, correlation: &Correlation) -> Response<Body> {
        let (status, name) = self.status_and_name();
        let body = serde_json::json!({
            "code": status.as_u16(),
            "description": self.description(),
            "errorName": name,
            "data": [],
            "source": "partner-gateway",
        });
        let mut response = Response::new(Body::full(body.to_string()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        correlation.apply(headers);
        response
    }
}

impl From<Cut> for GatewayError {
    /// The answer to a request whose body was cut off (SPEC §14).
    fn from(cut: Cut) -> GatewayError {
        match cut {
            Cut::Stalled => GatewayError::RequestTimeout,
            Cut::TooLarge(limit) => GatewayError::PayloadTooLarge { limit },
            Cut::Broken => GatewayError::RequestBodyBroken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn error_shape() {
        let corr = Correlation::from_request(&HeaderMap::new());
        let resp = GatewayError::UpstreamThrottled { retry_after: 0 }.into_response(&corr);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[RETRY_AFTER], "1");
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            resp.headers()[&crate::request::correlation::CORRELATION_ID],
            corr.correlation_id
        );
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(json["code"], 429);
        assert_eq!(json["errorName"], "UpstreamThrottled");
        assert_eq!(json["source"], "partner-gateway");
        assert_eq!(json["data"], serde_json::json!([]));
        assert!(json["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
}
