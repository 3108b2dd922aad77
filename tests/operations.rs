//! Operations from outside: Prometheus metrics, cache stats, admin separation (SPEC §8).

mod common {
    pub mod gateway;
    pub mod http;
    pub mod order_upstream;
    pub mod orders;
    pub mod paths;
    pub mod wait;
}

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{gateway::*, http::*, order_upstream::*, orders::*, paths::*, wait::*};
use http::StatusCode;

/// One parsed sample: name, labels, value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// A strict parser of the Prometheus text exposition format (version 0.0.4): every line is a
/// `# HELP`/`# TYPE` comment or a well-formed sample of a family declared before it; histogram
/// buckets are cumulative and end in `+Inf` equal to `_count`.
fn parse_prometheus(text: &str) -> Samples {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Samples::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().expect("comment kind");
            let name = parts.next().expect("family name");
            assert!(name_ok(name), "bad family name in {line:?}");
            if kind == "TYPE" {
                let t = parts.next().expect("type");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "bad type in {line:?}"
                );
                assert!(
                    types.insert(name.to_owned(), t.to_owned()).is_none(),
                    "TYPE twice: {name}"
                );
            } else {
                assert_eq!(kind, "HELP", "unknown comment {line:?}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close");
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    assert!(name_ok(k), "bad label name in {line:?}");
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name, labels)
            }
        };
        assert!(name_ok(name), "bad sample name in {line:?}");
        let family = types
            .keys()
            .filter(|f| {
                name == f.as_str()
                    || name
                        .strip_prefix(f.as_str())
                        .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))
            })
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("sample before its TYPE: {line:?}"));
        if types[family] != "histogram" {
            assert_eq!(name, family, "{line:?}");
        }
        assert!(
            samples.insert((name.to_owned(), labels), value).is_none(),
            "duplicate {line:?}"
        );
    }
    // Histograms: cumulative buckets, +Inf == _count.
    for (family, t) in &types {
        if t != "histogram" {
            continue;
        }
        let bucket = format!("{family}_bucket");
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, labels), value) in &samples {
            if *name == bucket {
                let mut rest = labels.clone();
                let le = rest.remove("le").expect("le label");
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("le")
                };
                series.entry(rest).or_default().push((le, *value));
            }
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family} not cumulative"
            );
            let last = buckets.last().expect("buckets");
            assert!(last.0.is_infinite(), "{family} lacks +Inf");
            let count = samples[&(format!("{family}_count"), labels)];
            assert_eq!(last.1, count, "{family}: +Inf != _count");
        }
    }
    samples
}

fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .get(&(name.to_owned(), labels))
        .copied()
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_a_known_sequence_exactly() {
    let token = "Bearer t";
    let Warmed { up, gw, order: a } = Warmed::start(
        &[
            ("cache.ttl", "100ms"),
            ("cache.stale_while_revalidate", "30s"),
        ],
        token,
    )
    .await;
    let auth = ("authorization", token);
    let url = |o: &str| gw.order_url(o);
    let (b, c, d) = (new_order(), new_order(), new_order());

    assert_eq!(get(&url(&a), &[auth]).await.header("x-cache"), Some("HIT"));
    let etag = format!("\"{}\"", etag_for(&a, 1));
    let not_modified = get(&url(&a), &[auth, ("if-none-match", &etag)]).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        get(&url(&a), &[auth]).await.header("x-cache"),
        Some("STALE")
    );
    up.wait_hits(2).await; // the background refresh (answered 304)
    eventually(Duration::from_secs(5), || async {
        gw.stats().await["fills_in_progress"] == 0
    })
    .await;
    up.set_mode(Mode::Status(500));
    assert_eq!(
        get(&url(&b), &[auth]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    up.set_mode(Mode::Status(429));
    up.add_header("retry-after", "30");
    assert_eq!(
        get(&url(&c), &[auth]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let local = get(&url(&d), &[auth]).await;
    assert_eq!(local.json()["errorName"], "UpstreamThrottled");
    let bad = get(&gw.url(&order_path("nope", &a)), &[auth]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let scrape = get(&gw.admin_url("/metrics"), &[]).await;
    assert_eq!(scrape.status, StatusCode::OK);
    assert!(scrape
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    assert_eq!(scrape.header("cache-control"), Some("no-store"));
    let text = String::from_utf8(scrape.body.to_vec()).expect("utf8");
    let m = parse_prometheus(&text);
    let req = |status: &str, cache: &str| {
        value(
            &m,
            "partner_gateway_requests_total",
            &[("route", "order"), ("status", status), ("cache", cache)],
        )
    };
    assert_eq!(req("200", "MISS"), 1.0);
    assert_eq!(req("200", "HIT"), 1.0);
    assert_eq!(req("304", "HIT"), 1.0);
    assert_eq!(req("200", "STALE"), 1.0);
    assert_eq!(req("500", "MISS"), 1.0);
    assert_eq!(req("429", "MISS"), 1.0);
    assert_eq!(req("429", "none"), 1.0);
    assert_eq!(req("400", "none"), 1.0);
    let up_req = |status: &str| {
        value(
            &m,
            "partner_gateway_upstream_requests_total",
            &[("status", status)],
        )
    };
    assert_eq!(up_req("200"), 1.0);
    assert_eq!(up_req("304"), 1.0);
    assert_eq!(up_req("500"), 1.0);
    assert_eq!(up_req("429"), 1.0);
    assert_eq!(up_req("error"), 0.0);
    assert_eq!(up.hits(), 4);
    let not_stored = |r: &str| {
        value(
            &m,
            "partner_gateway_cache_not_stored_total",
            &[("reason", r)],
        )
    };
    assert_eq!(not_stored("status"), 2.0);
    for r in [
        "not_json",
        "id_mismatch",
        "no_etag",
        "no_store",
        "too_large",
    ] {
        assert_eq!(not_stored(r), 0.0, "{r}");
    }
    assert_eq!(
        value(
            &m,
            "partner_gateway_shield_rejections_total",
            &[("reason", "cooldown")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "partner_gateway_shield_rejections_total",
            &[("reason", "budget")]
        ),
        0.0
    );
    assert_eq!(value(&m, "partner_gateway_cooldowns_total", &[]), 1.0);
    assert_eq!(value(&m, "partner_gateway_coalesced_waits_total", &[]), 0.0);
    assert_eq!(value(&m, "partner_gateway_cache_entries", &[]), 1.0);
    assert!(value(&m, "partner_gateway_cache_bytes", &[]) > 300.0);
    assert_eq!(value(&m, "partner_gateway_upstream_in_flight", &[]), 0.0);
    assert_eq!(
        value(
            &m,
            "partner_gateway_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "partner_gateway_request_duration_seconds_count",
            &[("route", "order")]
        ),
        8.0
    );
    assert_eq!(
        value(&m, "partner_gateway_upstream_duration_seconds_count", &[]),
        4.0
    );
    for family in [
        "partner_gateway_requests_total",
        "partner_gateway_request_duration_seconds",
        "partner_gateway_upstream_requests_total",
        "partner_gateway_upstream_duration_seconds",
        "partner_gateway_coalesced_waits_total",
        "partner_gateway_cache_entries",
        "partner_gateway_cache_bytes",
        "partner_gateway_cache_not_stored_total",
        "partner_gateway_shield_rejections_total",
        "partner_gateway_cooldowns_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }

    let stats = get(&gw.admin_url("/cache/stats"), &[]).await;
    assert_eq!(stats.header("cache-control"), Some("no-store"));
    let stats = stats.json();
    assert_eq!(stats["entries"], 1);
    assert_eq!(stats["max_bytes"], 268_435_456u64);
    assert_eq!(
        stats["bytes"].as_f64(),
        Some(value(&m, "partner_gateway_cache_bytes", &[]))
    );
    assert_eq!(stats["outcomes"]["MISS"], 3);
    assert_eq!(stats["outcomes"]["HIT"], 2);
    assert_eq!(stats["outcomes"]["STALE"], 1);
    assert_eq!(stats["hit_ratio"], 0.5);
    gw.stop().await;
}

#[tokio::test]
async fn coalesced_waits_are_counted() {
    let up = OrderUpstream::start().await;
    up.set_delay(Duration::from_millis(300));
    let gw = TestGateway::with(&up.base_url, &[]).await;
    let urls = vec![gw.order_url(&new_order()); 10];
    for reply in concurrent_gets(urls, &[("authorization", "Bearer t")]).await {
        assert_eq!(reply.status, StatusCode::OK);
    }
    let text = get(&gw.admin_url("/metrics"), &[]).await;
    let m = parse_prometheus(&String::from_utf8_lossy(&text.body));
    assert_eq!(up.hits(), 1);
    assert_eq!(value(&m, "partner_gateway_coalesced_waits_total", &[]), 9.0);
    gw.stop().await;
}

#[tokio::test]
async fn admin_endpoints_are_not_on_the_front_port() {
    let up = OrderUpstream::start().await;
    let gw = TestGateway::with(&up.base_url, &[]).await;
    for path in ["/metrics", "/cache/stats", "/readyz"] {
        let front = get(&gw.url(path), &[]).await;
        // Forwarded to the upstream like any path; the upstream saw it.
        assert!(
            !String::from_utf8_lossy(&front.body).contains("partner_gateway_"),
            "{path}"
        );
        assert!(front.json().get("entries").is_none(), "{path}");
    }
    assert_eq!(up.hits(), 3);
    gw.stop().await;
}
