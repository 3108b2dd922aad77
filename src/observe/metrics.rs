//! Prometheus metrics (SPEC §8), in the classic text exposition format.
//!
//! One recorder per gateway (not the `metrics` crate's global one), so several gateways in one
//! process — tests, the demo — keep separate numbers. Every series a request can touch is a
//! pre-registered handle found by array index (route × cache state × status), created once on
//! first use: recording on the hit path is an atomic add, with no allocation, no string label
//! lookup and no lock shared by all requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::outcome::{
    CacheState, Direction, Eviction, L2Lookup, NotStored, Refusal, WebhookOutcome,
};
use crate::request::route::{slot_label, Route, ROUTE_SLOTS};

/// Request latency buckets, in seconds: from a cache hit (~50 µs) to a slow upstream (10 s).
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// Every family's name and help text, declared at start so each has its help from the first
/// scrape.
#[rustfmt::skip]
const FAMILIES: &[(&str, &str)] = &[
    ("partner_gateway_requests_total", "Front requests answered, by route, status and X-Cache."),
    ("partner_gateway_request_duration_seconds", "Time to answer a front request (head), by route."),
    ("partner_gateway_upstream_requests_total", "Upstream requests, by status (or error when none came back)."),
    ("partner_gateway_upstream_duration_seconds", "Time from sending an upstream request to its response head."),
    ("partner_gateway_coalesced_waits_total", "Requests that waited for another request's fill instead of asking the upstream."),
    ("partner_gateway_cache_entries", "Entries in the order cache."),
    ("partner_gateway_cache_bytes", "Weighted bytes in the order cache (body + key + headers)."),
    ("partner_gateway_cache_not_stored_total", "Upstream order responses not stored, by reason."),
    ("partner_gateway_shield_rejections_total", "Upstream calls the shield refused, by reason."),
    ("partner_gateway_cooldowns_total", "Upstream 429 cooldowns opened."),
    ("partner_gateway_cache_evictions_total", "Entries that left the cache, by cause."),
    ("partner_gateway_upstream_in_flight", "Upstream requests in flight now."),
    ("partner_gateway_fleet_up", "1 while this replica is part of its fleet (fleet mode), else 0."),
    ("partner_gateway_fleet_replicas", "Live replicas of the fleet last seen, this one included (fleet mode)."),
    ("partner_gateway_fleet_l2_lookups_total", "Looks into the fleet's shared tier after an L1 miss, by result (fleet mode)."),
    ("partner_gateway_fleet_invalidations_total", "Invalidations sent to or received from the other replicas, by direction (fleet mode)."),
    ("partner_gateway_fleet_lease_waits_total", "Fills that waited for another replica's fill of the same key (fleet mode)."),
    ("partner_gateway_audit_polls_total", "Polls of the audit records, by outcome (ok, error)."),
    ("partner_gateway_audit_records_total", "Audit records applied to the cache."),
    ("partner_gateway_audit_leader", "1 on the replica that follows the audit records, else 0."),
    ("partner_gateway_webhook_events_total", "Event notifications taken on webhooks.path, by outcome."),
    ("partner_gateway_log_lines_dropped_total", "Log lines dropped because the log output did not keep up."),
    ("partner_gateway_build_info", "Build information; the value is always 1."),
];

/// Routes of the `route` label: one per cached resource (its label), `forward`, `webhook`.
const ROUTES: usize = ROUTE_SLOTS;
const STATUS_MIN: u16 = 100;
const STATUS_SLOTS: usize = 500; // 100..=599
/// "none" (no `X-Cache` sent) and every [`CacheState`].
const CACHE_SLOTS: usize = 1 + CacheState::ALL.len();

/// The `cache` label of a request: slot 0 is "none", then [`CacheState::ALL`] in order.
fn cache_slot(cache: Option<CacheState>) -> usize {
    cache.map_or(0, |state| 1 + state.index())
}

/// The label of a [`cache_slot`].
fn cache_label(slot: usize) -> &'static str {
    match slot.checked_sub(1) {
        None => "none",
        Some(i) => CacheState::ALL[i].as_str(),
    }
}

/// The gateway's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests: Vec<OnceLock<Counter>>,
    requests_other: Mutex<HashMap<(usize, usize, u16), Counter>>,
    request_duration: [Histogram; ROUTES],
    upstream_requests: Vec<OnceLock<Counter>>,
    upstream_error: Counter,
    upstream_duration: Histogram,
    coalesced_waits: Counter,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    /// One per word of each vocabulary, at the word's `index()`.
    not_stored: Vec<Counter>,
    shield_rejections: Vec<Counter>,
    cooldowns: Counter,
    evictions: Vec<Counter>,
    upstream_in_flight: Gauge,
    fleet_up: Gauge,
    fleet_replicas: Gauge,
    l2_lookups: Vec<Counter>,
    invalidations: Vec<Counter>,
    lease_waits: Counter,
    log_lines_dropped: Counter,
    webhook_events: Vec<Counter>,
    audit_polls: [Counter; 2],
    audit_records: Counter,
    audit_leader: Gauge,
    outcomes: [AtomicU64; CACHE_SLOTS],
}

fn meta() -> Metadata<'static> {
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every family with its help text.
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        for (name, help) in FAMILIES {
            recorder.describe_counter(
                KeyName::from_const_str(name),
                None,
                SharedString::const_str(help),
            );
        }
        let counter = |name: &'static str, labels: Vec<Label>| {
            recorder.register_counter(&Key::from_parts(name, labels), &meta())
        };
        let gauge = |name: &'static str, labels: Vec<Label>| {
            recorder.register_gauge(&Key::from_parts(name, labels), &meta())
        };
        let histogram = |name: &'static str, labels: Vec<Label>| {
            recorder.register_histogram(&Key::from_parts(name, labels), &meta())
        };
        let reason = |name: &'static str, value: &'static str| {
            counter(name, vec![Label::from_static_parts("reason", value)])
        };
        let not_stored = NotStored::ALL
            .iter()
            .map(|r| reason("partner_gateway_cache_not_stored_total", r.as_str()))
            .collect();
        let shield_rejections = Refusal::ALL
            .iter()
            .map(|r| reason("partner_gateway_shield_rejections_total", r.as_str()))
            .collect();
        let evictions = Eviction::ALL
            .iter()
            .map(|cause| {
                counter(
                    "partner_gateway_cache_evictions_total",
                    vec![Label::from_static_parts("cause", cause.as_str())],
                )
            })
            .collect();
        let request_duration = std::array::from_fn(|r| {
            histogram(
                "partner_gateway_request_duration_seconds",
                vec![Label::from_static_parts("route", slot_label(r))],
            )
        });
        gauge(
            "partner_gateway_build_info",
            vec![Label::from_static_parts(
                "version",
                env!("CARGO_PKG_VERSION"),
            )],
        )
        .set(1.0);
        let metrics = Metrics {
            requests: (0..ROUTES * CACHE_SLOTS * STATUS_SLOTS)
                .map(|_| OnceLock::new())
                .collect(),
            requests_other: Mutex::new(HashMap::new()),
            request_duration,
            upstream_requests: (0..STATUS_SLOTS).map(|_| OnceLock::new()).collect(),
            upstream_error: counter(
                "partner_gateway_upstream_requests_total",
                vec![Label::from_static_parts("status", "error")],
            ),
            upstream_duration: histogram("partner_gateway_upstream_duration_seconds", vec![]),
            coalesced_waits: counter("partner_gateway_coalesced_waits_total", vec![]),
            cache_entries: gauge("partner_gateway_cache_entries", vec![]),
            cache_bytes: gauge("partner_gateway_cache_bytes", vec![]),
            log_lines_dropped: counter("partner_gateway_log_lines_dropped_total", vec![]),
            audit_polls: ["ok", "error"].map(|outcome| {
                counter(
                    "partner_gateway_audit_polls_total",
                    vec![Label::from_static_parts("outcome", outcome)],
                )
            }),
            audit_records: counter("partner_gateway_audit_records_total", vec![]),
            audit_leader: gauge("partner_gateway_audit_leader", vec![]),
            webhook_events: WebhookOutcome::ALL
                .iter()
                .map(|o| {
                    counter(
                        "partner_gateway_webhook_events_total",
                        vec![Label::from_static_parts("outcome", o.as_str())],
                    )
                })
                .collect(),
            not_stored,
            shield_rejections,
            cooldowns: counter("partner_gateway_cooldowns_total", vec![]),
            evictions,
            upstream_in_flight: gauge("partner_gateway_upstream_in_flight", vec![]),
            fleet_up: gauge("partner_gateway_fleet_up", vec![]),
            fleet_replicas: gauge("partner_gateway_fleet_replicas", vec![]),
            l2_lookups: L2Lookup::ALL
                .iter()
                .map(|r| {
                    counter(
                        "partner_gateway_fleet_l2_lookups_total",
                        vec![Label::from_static_parts("result", r.as_str())],
                    )
                })
                .collect(),
            lease_waits: counter("partner_gateway_fleet_lease_waits_total", vec![]),
            invalidations: Direction::ALL
                .iter()
                .map(|d| {
                    counter(
                        "partner_gateway_fleet_invalidations_total",
                        vec![Label::from_static_parts("direction", d.as_str())],
                    )
                })
                .collect(),
            outcomes: Default::default(),
            handle,
            recorder,
        };
        // Families without traffic yet still appear (at 0) so dashboards and alerts find them.
        metrics.coalesced_waits.increment(0);
        metrics.cooldowns.increment(0);
        metrics.upstream_error.increment(0);
        metrics.lease_waits.increment(0);
        for counter in metrics.l2_lookups.iter().chain(&metrics.invalidations) {
            counter.increment(0);
        }
        metrics
    }

    fn status_counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &meta())
    }

    /// One answered front request: its route, status and `X-Cache` state, found by index.
    pub fn request(&self, route: &Route, status: u16, cache: Option<CacheState>, took: Duration) {
        let r = route.slot();
        let c = cache_slot(cache);
        self.outcomes[c].fetch_add(1, Ordering::Relaxed);
        self.request_duration[r].record(took.as_secs_f64());
        let labels = || {
            vec![
                Label::from_static_parts("route", slot_label(r)),
                Label::new("status", status.to_string()),
                Label::from_static_parts("cache", cache_label(c)),
            ]
        };
        let slot = usize::from(status.wrapping_sub(STATUS_MIN));
        if slot < STATUS_SLOTS {
            let index = (r * CACHE_SLOTS + c) * STATUS_SLOTS + slot;
            self.requests[index]
                .get_or_init(|| self.status_counter("partner_gateway_requests_total", labels()))
                .increment(1);
        } else {
            self.requests_other
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry((r, c, status))
                .or_insert_with(|| self.status_counter("partner_gateway_requests_total", labels()))
                .increment(1);
        }
    }

    /// One upstream exchange: its status (`None`: no response) and time to the head.
    pub fn upstream(&self, status: Option<u16>, took: Duration) {
        self.upstream_duration.record(took.as_secs_f64());
        let slot = status.map(|s| usize::from(s.wrapping_sub(STATUS_MIN)));
        match (status, slot) {
            (Some(code), Some(slot)) if slot < STATUS_SLOTS => self.upstream_requests[slot]
                .get_or_init(|| {
                    self.status_counter(
                        "partner_gateway_upstream_requests_total",
                        vec![Label::new("status", code.to_string())],
                    )
                })
                .increment(1),
            _ => self.upstream_error.increment(1),
        }
    }

    /// A request joined a fill in progress.
    pub fn coalesced_wait(&self) {
        self.coalesced_waits.increment(1);
    }

    /// An upstream order response was not stored.
    pub fn not_stored(&self, reason: NotStored) {
        self.not_stored[reason.index()].increment(1);
    }

    /// The shield refused an upstream call.
    pub fn shield_rejection(&self, reason: Refusal) {
        self.shield_rejections[reason.index()].increment(1);
    }

    /// An upstream 429 opened a cooldown.
    pub fn cooldown(&self) {
        self.cooldowns.increment(1);
    }

    /// An entry left the cache.
    pub fn eviction(&self, cause: Eviction) {
        self.evictions[cause.index()].increment(1);
    }

    /// Upstream requests in flight changed by `delta`.
    pub fn in_flight(&self, delta: f64) {
        self.upstream_in_flight.increment(delta);
    }

    /// Whether this replica is part of its fleet now.
    pub fn fleet_up(&self, up: bool) {
        self.fleet_up.set(if up { 1.0 } else { 0.0 });
    }

    /// One look into the shared tier.
    pub fn l2_lookup(&self, result: L2Lookup) {
        self.l2_lookups[result.index()].increment(1);
    }

    /// A fill waited for another replica's fill.
    pub fn lease_wait(&self) {
        self.lease_waits.increment(1);
    }

    /// An invalidation crossed the fleet.
    pub fn invalidation(&self, direction: Direction) {
        self.invalidations[direction.index()].increment(1);
    }

    /// What became of one event notification.
    pub fn webhook_event(&self, outcome: WebhookOutcome) {
        self.webhook_events[outcome.index()].increment(1);
    }

    /// One poll of the audit records ended, well or not.
    pub fn audit_poll(&self, ok: bool) {
        self.audit_polls[usize::from(!ok)].increment(1);
    }

    /// One audit record applied.
    pub fn audit_record(&self) {
        self.audit_records.increment(1);
    }

    /// Whether this replica follows the audit records.
    pub fn audit_leader(&self, leader: bool) {
        self.audit_leader.set(if leader { 1.0 } else { 0.0 });
    }

    /// Live replicas of the fleet last seen.
    pub fn fleet_replicas(&self, replicas: usize) {
        self.fleet_replicas.set(replicas as f64);
    }

    /// Answers by `X-Cache` value since start ("none" first).
    pub fn outcomes(&self) -> [(&'static str, u64); CACHE_SLOTS] {
        std::array::from_fn(|i| (cache_label(i), self.outcomes[i].load(Ordering::Relaxed)))
    }

    /// Folds recorded histogram samples into their buckets. The exporter keeps raw samples until
    /// then, so this must run often (the server does every second), scraped or not, or memory
    /// grows with the request count.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The exposition text, with the cache gauges set to the given current values and the
    /// count of dropped log lines read from the log queue.
    pub fn render(&self, entries: u64, bytes: u64) -> String {
        self.cache_entries.set(entries as f64);
        self.cache_bytes.set(bytes as f64);
        self.log_lines_dropped
            .absolute(crate::observe::logs::dropped_lines());
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_slots_match_their_labels() {
        for state in CacheState::ALL {
            assert_eq!(cache_label(cache_slot(Some(*state))), state.as_str());
        }
        assert_eq!(cache_label(cache_slot(None)), "none");
        assert_eq!(CACHE_SLOTS, 6);
    }
}
