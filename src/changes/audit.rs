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
//! never see it. Audit calls spend no client budget. In fleet mode one replica at a time
//! follows (a lease in Redis), and the window and the applied records live in Redis, so a new
//! leader goes on where the last one stopped; a replica cut off from Redis follows alone.

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
use crate::changes::records::{effects, next_page, rfc3339};
use crate::config::{AuditConfig, UpstreamConfig};
use crate::fleet::link::{Link, Query};
use crate::observe::metrics::Metrics;
use crate::request::correlation::{CORRELATION_ID, REQUEST_ID};
use crate::resource::Resources;
use crate::upstream::client::{Upstream, UpstreamSetupError};

/// Record ids remembered as applied (the overlap re-reads recent ones).
const REMEMBERED: usize = 100_000;

/// Largest audit page read.
const MAX_PAGE: usize = 8 * 1024 * 1024;

/// Pages followed in one poll at most.
const MAX_PAGES: usize = 1000;

/// Takes the follower's lease, or keeps it when this replica holds it already.
const LEAD: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// The fleet's part of the follower: who follows, and what has been applied so far.
struct Shared {
    link: Arc<Link>,
    lead: redis::Script,
    /// This replica's token in the lease.
    me: String,
    leader_key: String,
    since_key: String,
    applied_key: String,
}

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
    /// Fleet mode: the lease and the window in Redis.
    shared: Option<Shared>,
}

impl Follower {
    /// The follower `audit` describes (`None` when `audit.interval` is zero).
    pub fn new(
        audit: &AuditConfig,
        upstream: &UpstreamConfig,
        resources: Resources,
        changes: Invalidator,
        metrics: Arc<Metrics>,
        fleet: Option<(Arc<Link>, &str)>,
    ) -> Result<Option<Follower>, UpstreamSetupError> {
        if !audit.enabled() {
            return Ok(None);
        }
        let shared = fleet.map(|(link, name)| {
            let key = |what: &str| format!("{name}:{{{name}}}:audit:{what}");
            Shared {
                link,
                lead: redis::Script::new(LEAD),
                me: uuid::Uuid::new_v4().to_string(),
                leader_key: key("leader"),
                since_key: key("since"),
                applied_key: key("applied"),
            }
        });
        Ok(Some(Follower {
            config: audit.clone(),
            client: Upstream::new(upstream)?,
            timeout: upstream.request_timeout,
            resources,
            changes,
            metrics,
            since: Mutex::new(SystemTime::now() - audit.overlap),
            applied: Mutex::default(),
            shared,
        }))
    }

    /// Polls every `audit.interval` until the process ends — in fleet mode only while this
    /// replica holds the follower's lease.
    pub async fn run(self: Arc<Self>) {
        loop {
            let leading = self.lead().await;
            self.metrics.audit_leader(leading);
            if !leading {
                tokio::time::sleep(self.config.interval).await;
                continue;
            }
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

    /// Whether this replica follows now: always alone; in a fleet, while it holds the lease
    /// (taken or kept for three intervals, so a live replica takes over within three of a dead
    /// leader's); cut off from Redis, it follows alone.
    async fn lead(&self) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        if !shared.link.is_up() {
            return true;
        }
        let mut invocation = shared.lead.prepare_invoke();
        invocation
            .key(&shared.leader_key)
            .arg(&shared.me)
            .arg((self.config.interval * 3).as_millis() as u64);
        match shared.link.run::<i64>(Query::Script(&invocation)).await {
            Ok(taken) => taken == 1,
            Err(_) => true,
        }
    }

    /// The window's start: this replica's, or the fleet's when that is later.
    async fn window(&self) -> SystemTime {
        let local = *self.since.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(shared) = self.shared.as_ref().filter(|s| s.link.is_up()) else {
            return local;
        };
        let mut get = redis::cmd("GET");
        get.arg(&shared.since_key);
        let remote = shared.link.run::<Option<u64>>(Query::Cmd(&get)).await;
        let remote = remote
            .ok()
            .flatten()
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        remote.map_or(local, |remote| local.max(remote))
    }

    /// Keeps the window's start, here and for the fleet.
    async fn keep_window(&self, since: SystemTime) {
        *self.since.lock().unwrap_or_else(PoisonError::into_inner) = since;
        let Some(shared) = self.shared.as_ref().filter(|s| s.link.is_up()) else {
            return;
        };
        let ms = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let keep = self.remembered_for().as_millis() as u64;
        let mut set = redis::cmd("SET");
        set.arg(&shared.since_key).arg(ms).arg("PX").arg(keep);
        let _ = shared.link.run::<()>(Query::Cmd(&set)).await;
    }

    /// How long the fleet remembers the window and the applied records: past any overlap.
    fn remembered_for(&self) -> Duration {
        (self.config.overlap + self.config.interval) * 2 + Duration::from_secs(60)
    }

    /// Whether record `id` is new (and now marked applied), in this replica and the fleet.
    async fn first_time(&self, id: &str) -> bool {
        {
            let applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
            if applied.0.contains(id) {
                return false;
            }
        }
        let Some(shared) = self.shared.as_ref().filter(|s| s.link.is_up()) else {
            return true;
        };
        let mut mark = redis::pipe();
        mark.atomic()
            .sadd(&shared.applied_key, id)
            .pexpire(
                &shared.applied_key,
                self.remembered_for().as_millis() as i64,
            )
            .ignore();
        match shared.link.run::<(i64,)>(Query::Pipe(&mark)).await {
            Ok((added,)) => added == 1,
            Err(_) => true,
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
        let since = self.window().await;
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
            self.keep_window(since.max(newest - self.config.overlap))
                .await;
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
            if !self.first_time(id).await {
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
