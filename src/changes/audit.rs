//! The audit-record follower (SPEC §15.3): what the partner's users and tools changed in Partner
//! Center — the portal included, with no call through the gateway — reaches the cache.
//!
//! Every `audit.interval` it asks `/v1/auditrecords?startDate=…` (all pages), with the bearer
//! token read from `audit.token_file` just before, and drops what each record names through the
//! one invalidation path: an order (and the customer's subscriptions), a subscription, a
//! customer — the item named in `resourceNewValue` (or `resourceOldValue`), or every entry of
//! that resource of the customer when neither names one. Each poll reaches back `audit.overlap`
//! before the newest record seen; a record applied once is not applied again. A failed poll is
//! logged and tried again at the next interval (after `Retry-After` on a 429); client requests
//! never see it. Audit calls spend no client budget.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::header::AUTHORIZATION;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::body::Body;
use crate::changes::invalidate::{Cause, Invalidator};
use crate::config::{AuditConfig, UpstreamConfig};
use crate::guid::Guid;
use crate::observe::metrics::Metrics;
use crate::request::correlation::{CORRELATION_ID, REQUEST_ID};
use crate::resource::{ItemRef, Purge, Resource, Resources};
use crate::upstream::client::{Upstream, UpstreamSetupError};

/// Record ids remembered as applied (the overlap re-reads recent ones).
const REMEMBERED: usize = 100_000;

/// Largest audit page read.
const MAX_PAGE: usize = 8 * 1024 * 1024;

/// Pages followed in one poll at most.
const MAX_PAGES: usize = 1000;

/// Why a poll ended early.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error("{0}")]
    Failed(String),
    #[error("throttled; next poll in {0:?} at the earliest")]
    Throttled(Duration),
}

/// The follower of one gateway.
pub struct Follower {
    config: AuditConfig,
    client: Upstream,
    timeout: Duration,
    resources: Resources,
    changes: Invalidator,
    metrics: Arc<Metrics>,
    /// Where the next poll starts.
    since: Mutex<SystemTime>,
    applied: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Follower {
    /// The follower `audit` describes (`None` when `audit.interval` is zero).
    pub fn new(
        audit: &AuditConfig,
        upstream: &UpstreamConfig,
        resources: Resources,
        changes: Invalidator,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Follower>, UpstreamSetupError> {
        if !audit.enabled() {
            return Ok(None);
        }
        Ok(Some(Follower {
            config: audit.clone(),
            client: Upstream::new(upstream)?,
            timeout: upstream.request_timeout,
            resources,
            changes,
            metrics,
            since: Mutex::new(SystemTime::now() - audit.overlap),
            applied: Mutex::default(),
        }))
    }

    /// Polls every `audit.interval` until the process ends.
    pub async fn run(self: Arc<Self>) {
        self.metrics.audit_leader(true);
        loop {
            let wait = match self.poll().await {
                Ok(None) => self.config.interval,
                Ok(Some(applied)) => {
                    self.metrics.audit_poll(true);
                    tracing::debug!(applied, "audit records polled");
                    self.config.interval
                }
                Err(error) => {
                    self.metrics.audit_poll(false);
                    tracing::warn!(error = %error, "audit-record poll failed; tried again later");
                    match error {
                        PollError::Throttled(wait) => wait.max(self.config.interval),
                        PollError::Failed(_) => self.config.interval,
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One poll, every page; `None` when it was skipped for want of a token.
    async fn poll(&self) -> Result<Option<usize>, PollError> {
        let token = self
            .config
            .token_file
            .as_ref()
            .and_then(|file| std::fs::read_to_string(file).ok())
            .map(|token| token.trim().to_owned())
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            tracing::warn!("audit.token_file is missing or empty; this audit poll is skipped");
            return Ok(None);
        };
        let since = *self.since.lock().unwrap_or_else(PoisonError::into_inner);
        let start = humantime::format_rfc3339_seconds(since);
        let mut next = Some((format!("/v1/auditrecords?startDate={start}"), Vec::new()));
        let (mut applied, mut newest) = (0, None::<SystemTime>);
        for _ in 0..MAX_PAGES {
            let Some((path, headers)) = next.take() else {
                break;
            };
            let page = self.page(&path, &headers, &token).await?;
            for record in page["items"].as_array().into_iter().flatten() {
                if let Some(at) = record["operationDate"].as_str().and_then(rfc3339) {
                    newest = newest.max(Some(at));
                }
                applied += usize::from(self.apply(record).await);
            }
            next = next_page(&page);
        }
        if let Some(newest) = newest {
            let mut since = self.since.lock().unwrap_or_else(PoisonError::into_inner);
            *since = (*since).max(newest - self.config.overlap);
        }
        Ok(Some(applied))
    }

    /// One page of records.
    async fn page(
        &self,
        path: &str,
        headers: &[(String, String)],
        token: &str,
    ) -> Result<Value, PollError> {
        let failed = |why: String| PollError::Failed(why);
        let pq: PathAndQuery = path
            .parse()
            .map_err(|e| failed(format!("bad next link: {e}")))?;
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = self
            .client
            .uri_for(Some(&pq))
            .map_err(|e| failed(e.to_string()))?;
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| failed("the audit token is not a header value".to_owned()))?;
        let head = request.headers_mut();
        head.insert(AUTHORIZATION, bearer);
        for id in [&CORRELATION_ID, &REQUEST_ID] {
            let value = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string());
            head.insert(id, value.map_err(|e| failed(e.to_string()))?);
        }
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes());
            if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(value)) {
                head.insert(name, value);
            }
        }
        let started = std::time::Instant::now();
        let exchange = async {
            let response = self
                .client
                .send(request)
                .await
                .map_err(|e| failed(e.to_string()));
            let response =
                response.inspect_err(|_| self.metrics.upstream(None, started.elapsed()))?;
            let status = response.status();
            self.metrics
                .upstream(Some(status.as_u16()), started.elapsed());
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait =
                    crate::upstream::shield::retry_after(response.headers(), SystemTime::now());
                return Err(PollError::Throttled(wait));
            }
            if !status.is_success() {
                return Err(failed(format!("answered {status}")));
            }
            let limited = http_body_util::Limited::new(response.into_body(), MAX_PAGE);
            let body = limited.collect().await.map_err(|e| failed(e.to_string()))?;
            serde_json::from_slice(&body.to_bytes()).map_err(|e| failed(format!("not JSON: {e}")))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| failed("no answer in time".to_owned()))?
    }

    /// Drops what one record names, unless it was applied before. Whether it was applied now.
    async fn apply(&self, record: &Value) -> bool {
        let id = record["id"].as_str().map(str::to_owned);
        if let Some(id) = &id {
            let applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
            if applied.0.contains(id) {
                return false;
            }
        }
        let purges = effects(record, self.resources);
        if !purges.is_empty() {
            self.changes.run(purges, Cause::Audit).await;
        }
        if let Some(id) = id {
            let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
            let (seen, order) = &mut *applied;
            if seen.insert(id.clone()) {
                order.push_back(id);
            }
            while order.len() > REMEMBERED {
                if let Some(old) = order.pop_front() {
                    seen.remove(&old);
                }
            }
        }
        self.metrics.audit_record();
        true
    }
}

/// What a record drops (SPEC §15.3), among the cached resources.
fn effects(record: &Value, resources: Resources) -> Vec<Purge> {
    let field = |name: &str| {
        record.as_object().and_then(|fields| {
            fields
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .and_then(|(_, value)| value.as_str())
        })
    };
    let Some(customer) = field("customerId").and_then(Guid::parse) else {
        return Vec::new();
    };
    let resource = match field("resourceType")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("order") => Resource::Orders,
        Some("subscription") => Resource::Subscriptions,
        Some("customer") => Resource::Customers,
        _ => return Vec::new(),
    };
    let named = ["resourceNewValue", "resourceOldValue"]
        .iter()
        .find_map(|name| {
            let value: Value = serde_json::from_str(field(name)?).ok()?;
            Guid::parse(value["id"].as_str()?)
        });
    let mut purges = match (resource, named) {
        (Resource::Customers, _) => vec![Purge::One(ItemRef {
            resource,
            customer,
            id: customer,
        })],
        (_, Some(id)) => vec![Purge::One(ItemRef {
            resource,
            customer,
            id,
        })],
        (_, None) => vec![Purge::EveryOf(resource, customer)],
    };
    if resource == Resource::Orders {
        purges.push(Purge::EveryOf(Resource::Subscriptions, customer));
    }
    purges.retain(|purge| match purge {
        Purge::One(item) => resources.contains(item.resource),
        Purge::EveryOf(resource, _) => resources.contains(*resource),
        _ => true,
    });
    purges
}

/// The next page's path (a `/v1/` path as is, any other relative to `/v1`) and headers.
fn next_page(page: &Value) -> Option<(String, Vec<(String, String)>)> {
    let next = &page["links"]["next"];
    let uri = next["uri"].as_str()?;
    let path = if uri.starts_with("/v1/") {
        uri.to_owned()
    } else {
        format!("/v1/{}", uri.trim_start_matches('/'))
    };
    let headers = next["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| {
            Some((
                h["key"].as_str()?.to_owned(),
                h["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    Some((path, headers))
}

fn rfc3339(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "4a2f6c1e-8b3d-4e5f-9a7b-1c2d3e4f5a60";
    const O: &str = "0d0e0000-0000-4000-8000-0000000a11ce";

    fn all() -> Resources {
        Resource::ALL.into_iter().collect()
    }

    #[test]
    fn each_record_drops_what_it_names() {
        let order = serde_json::json!({
            "id": "r1", "customerId": C, "resourceType": "Order",
            "resourceNewValue": format!(r#"{{"id":"{O}","status":"completed"}}"#),
        });
        let (c, o) = (Guid::parse(C).expect("c"), Guid::parse(O).expect("o"));
        let item = |resource, id| {
            Purge::One(ItemRef {
                resource,
                customer: c,
                id,
            })
        };
        assert_eq!(
            effects(&order, all()),
            [
                item(Resource::Orders, o),
                Purge::EveryOf(Resource::Subscriptions, c)
            ]
        );
        let unnamed = serde_json::json!({"customerid": C, "RESOURCETYPE": "subscription"});
        assert_eq!(
            effects(&unnamed, all()),
            [Purge::EveryOf(Resource::Subscriptions, c)]
        );
        let customer = serde_json::json!({"customerId": C, "resourceType": "customer"});
        assert_eq!(effects(&customer, all()), [item(Resource::Customers, c)]);
        let old = serde_json::json!({
            "customerId": C, "resourceType": "subscription",
            "resourceNewValue": "not json", "resourceOldValue": format!(r#"{{"id":"{O}"}}"#),
        });
        assert_eq!(effects(&old, all()), [item(Resource::Subscriptions, o)]);
        for nothing in [
            serde_json::json!({"customerId": C, "resourceType": "invoice"}),
            serde_json::json!({"resourceType": "order"}),
            serde_json::json!({"customerId": "x", "resourceType": "order"}),
        ] {
            assert!(effects(&nothing, all()).is_empty(), "{nothing}");
        }
        // Only the cached resources: orders alone drop no subscriptions.
        let orders_only: Resources = [Resource::Orders].into_iter().collect();
        assert_eq!(effects(&order, orders_only), [item(Resource::Orders, o)]);
    }

    #[test]
    fn next_links_are_paths_under_v1_with_their_headers() {
        let page = serde_json::json!({"links": {"next": {"uri": "auditrecords?seek=2",
            "headers": [{"key": "MS-ContinuationToken", "value": "abc"}]}}});
        assert_eq!(
            next_page(&page),
            Some((
                "/v1/auditrecords?seek=2".to_owned(),
                vec![("MS-ContinuationToken".to_owned(), "abc".to_owned())]
            ))
        );
        let page = serde_json::json!({"links": {"next": {"uri": "/v1/auditrecords?x=1"}}});
        assert_eq!(
            next_page(&page).map(|n| n.0),
            Some("/v1/auditrecords?x=1".to_owned())
        );
        assert_eq!(next_page(&serde_json::json!({"items": []})), None);
    }
}
