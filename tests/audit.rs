//! The audit-record follower from outside (SPEC §15.3): a change made elsewhere (the portal, the
//! partner's tools) reaches the cache through Partner Center's audit records.

mod common {
    #[allow(dead_code)]
    pub mod gateway;
    pub mod http;
    #[allow(dead_code)]
    pub mod redis;
    pub mod wait;
}

use std::time::Duration;

use common::{gateway::*, http::*, redis::*, wait::*};
use httpmock::prelude::*;

const CUSTOMER: &str = "4a2f6c1e-8b3d-4e5f-9a7b-1c2d3e4f5a60";
const ORDER: &str = "0d0e0000-0000-4000-8000-0000000a11ce";
const AUTH: (&str, &str) = ("authorization", "Bearer client");

/// A token file holding `contents` (removed by the test at its end).
fn token_file(contents: &str) -> std::path::PathBuf {
    let token = std::env::temp_dir().join(format!("pg-audit-token-{}", uuid::Uuid::new_v4()));
    std::fs::write(&token, contents).expect("token file");
    token
}

/// The order the tests cache, as the upstream serves it; returns its path and its mock.
async fn serve_order(upstream: &MockServer) -> (String, httpmock::Mock<'_>) {
    let path = format!("/v1/customers/{CUSTOMER}/orders/{ORDER}");
    let order =
        serde_json::json!({"id": ORDER, "status": "completed", "attributes": {"etag": "v1"}});
    let mock = upstream
        .mock_async(|when, then| {
            when.method(GET).path(path.as_str());
            then.status(200)
                .header("content-type", "application/json")
                .body(order.to_string());
        })
        .await;
    (path, mock)
}

async fn metric(gw: &TestGateway, line: &str) -> f64 {
    let text = get(&gw.admin_url("/metrics"), &[]).await.body;
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_change_in_the_audit_records_drops_the_order_on_the_next_poll() {
    let upstream = MockServer::start_async().await;
    let (path, orders) = serve_order(&upstream).await;
    // Page one names the order and links to page two, which the follower must ask for with the
    // continuation token it lists.
    let record = serde_json::json!({
        "id": "record-1", "customerId": CUSTOMER, "resourceType": "order",
        "operationDate": "2026-12-06T08:00:00Z",
        "resourceNewValue": serde_json::json!({"id": ORDER, "status": "completed"}).to_string(),
    });
    let first = upstream
        .mock_async(|when, then| {
            when.method(GET)
                .path("/v1/auditrecords")
                .query_param_exists("startDate")
                .header("authorization", "Bearer audit-token")
                .header_exists("ms-correlationid")
                .header_missing("ms-continuationtoken");
            then.status(200)
                .header("content-type", "application/json")
                .body(
                    serde_json::json!({
                        "totalCount": 1, "items": [record],
                        "links": {"next": {"uri": "auditrecords?seek=2",
                            "headers": [{"key": "MS-ContinuationToken", "value": "page-two"}]}}
                    })
                    .to_string(),
                );
        })
        .await;
    let second = upstream
        .mock_async(|when, then| {
            when.method(GET)
                .path("/v1/auditrecords")
                .header("ms-continuationtoken", "page-two");
            then.status(200)
                .header("content-type", "application/json")
                .body(r#"{"totalCount":0,"items":[]}"#);
        })
        .await;

    // No token yet: polls are skipped, and the order is cached meanwhile.
    let token = token_file("");
    let token_path = token.to_string_lossy().into_owned();
    let settings = [
        ("audit.interval", "200ms"),
        ("audit.token_file", token_path.as_str()),
    ];
    let gw = TestGateway::with(&upstream.base_url(), &settings).await;
    let url = gw.url(&path);
    assert_eq!(get(&url, &[AUTH]).await.header("x-cache"), Some("MISS"));
    assert_eq!(get(&url, &[AUTH]).await.header("x-cache"), Some("HIT"));
    assert_eq!(first.calls_async().await, 0, "no token, no audit call");

    // The token appears (an outside refresher wrote it): the next poll applies the record.
    std::fs::write(&token, "audit-token\n").expect("token");
    eventually(Duration::from_secs(10), || async {
        metric(&gw, "partner_gateway_audit_records_total ").await >= 1.0
    })
    .await;
    assert!(second.calls_async().await >= 1, "page two was followed");
    assert_eq!(
        get(&url, &[AUTH]).await.header("x-cache"),
        Some("MISS"),
        "dropped"
    );
    assert_eq!(orders.calls_async().await, 2);

    // Later polls see the same record again (the overlap) and do not drop the entry again.
    let polls = metric(&gw, "partner_gateway_audit_polls_total{outcome=\"ok\"} ").await;
    eventually(Duration::from_secs(10), || async {
        metric(&gw, "partner_gateway_audit_polls_total{outcome=\"ok\"} ").await >= polls + 2.0
    })
    .await;
    assert_eq!(get(&url, &[AUTH]).await.header("x-cache"), Some("HIT"));
    assert_eq!(
        metric(&gw, "partner_gateway_audit_records_total ").await,
        1.0
    );
    assert_eq!(metric(&gw, "partner_gateway_audit_leader ").await, 1.0);
    // Audit calls are upstream requests like any other in the metrics (SPEC §15.3).
    let audit_calls = first.calls_async().await + second.calls_async().await;
    let counted = metric(
        &gw,
        "partner_gateway_upstream_requests_total{status=\"200\"} ",
    )
    .await;
    assert!(
        counted >= (audit_calls + orders.calls_async().await) as f64,
        "{counted} counted for {audit_calls} audit calls"
    );
    gw.stop().await;
    let _ = std::fs::remove_file(token);
}

#[test]
fn a_follower_needs_its_token_file() {
    let load = |pairs: &[(&str, &str)]| {
        partner_gateway::config::Config::load(&partner_gateway::config::Sources {
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..partner_gateway::config::Sources::default()
        })
    };
    let err = load(&[("PARTNER_GATEWAY__AUDIT__INTERVAL", "1m")]).expect_err("no token file");
    assert!(err.to_string().contains("audit.token_file"), "{err}");
    assert!(load(&[]).is_ok(), "off by default");
}

/// SPEC §15.3 in fleet mode: one replica of three follows; when it stops, one of the other two
/// takes over within three intervals.
#[tokio::test]
async fn one_replica_of_three_follows_and_another_takes_over_when_it_stops() {
    let Some(redis) = RedisServer::start("audit_leader") else {
        return;
    };
    let upstream = MockServer::start_async().await;
    let polls = upstream
        .mock_async(|when, then| {
            when.method(GET).path("/v1/auditrecords");
            then.status(200)
                .header("content-type", "application/json")
                .body(r#"{"totalCount":0,"items":[]}"#);
        })
        .await;
    let token = token_file("audit-token");
    let (url, token_path) = (redis.url(), token.to_string_lossy().into_owned());
    let settings = [
        ("audit.interval", "200ms"),
        ("audit.token_file", token_path.as_str()),
        ("fleet.redis_url", url.as_str()),
        (
            "fleet.partition_secret",
            "audit-secret-audit-secret-audit-secret",
        ),
        ("fleet.timeout", "1s"),
    ];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(TestGateway::with(&upstream.base_url(), &settings).await);
    }
    let leader = "partner_gateway_audit_leader ";
    let followers = |replicas: &[TestGateway]| {
        let urls: Vec<String> = replicas.iter().map(|gw| gw.admin_url("/metrics")).collect();
        async move {
            let mut leading = Vec::new();
            for url in urls {
                let text = get(&url, &[]).await.body;
                let on = String::from_utf8_lossy(&text)
                    .lines()
                    .any(|l| l.strip_prefix(leader).is_some_and(|v| v.trim() == "1"));
                leading.push(on);
            }
            leading
        }
    };
    let one = |leading: &[bool]| leading.iter().filter(|on| **on).count() == 1;
    eventually(Duration::from_secs(10), || async {
        one(&followers(&replicas).await) && polls.calls_async().await > 2
    })
    .await;
    // The follower stops; one of the other two takes over, alone.
    let leading = followers(&replicas).await;
    let index = leading.iter().position(|on| *on).expect("a follower");
    replicas.remove(index).stop().await;
    eventually(Duration::from_secs(5), || async {
        one(&followers(&replicas).await)
    })
    .await;
    let before = polls.calls_async().await;
    eventually(Duration::from_secs(5), || async {
        polls.calls_async().await > before
    })
    .await;
    for gw in replicas {
        gw.stop().await;
    }
    let _ = std::fs::remove_file(token);
}

/// A failing audit endpoint is retried at the next interval and never touches a client's answer.
#[tokio::test]
async fn audit_failures_leave_client_answers_alone() {
    let upstream = MockServer::start_async().await;
    let (path, _order) = serve_order(&upstream).await;
    upstream
        .mock_async(|when, then| {
            when.method(GET).path("/v1/auditrecords");
            then.status(500).body("audit is down");
        })
        .await;
    let token = token_file("audit-token");
    let token_path = token.to_string_lossy().into_owned();
    let settings = [
        ("audit.interval", "100ms"),
        ("audit.token_file", token_path.as_str()),
    ];
    let gw = TestGateway::with(&upstream.base_url(), &settings).await;
    let errors = "partner_gateway_audit_polls_total{outcome=\"error\"} ";
    eventually(Duration::from_secs(10), || async {
        metric(&gw, errors).await >= 2.0
    })
    .await;
    let url = gw.url(&path);
    let first = get(&url, &[AUTH]).await;
    assert_eq!(first.status, http::StatusCode::OK);
    assert_eq!(first.header("x-cache"), Some("MISS"));
    assert_eq!(get(&url, &[AUTH]).await.header("x-cache"), Some("HIT"));
    gw.stop().await;
    let _ = std::fs::remove_file(token);
}

/// SPEC §15.4 end to end: a change made "in the portal" of the simulator (no call through the
/// gateway) reaches the gateway's cache through the simulator's audit records.
#[cfg(feature = "demo")]
#[tokio::test]
async fn a_change_made_in_the_portal_reaches_the_cache_through_the_audit_records() {
    use partner_gateway::demo::simulator::{Knobs, Simulator, PORTAL};
    let sim = Simulator::start(([127, 0, 0, 1], 0).into(), Knobs::default())
        .await
        .expect("simulator");
    let account = Simulator::accounts().remove(0);
    let subscription = &account.subscriptions[0];
    let path = format!(
        "/v1/customers/{}/subscriptions/{}",
        account.customer, subscription.id
    );
    let token = token_file("audit-token");
    let token_path = token.to_string_lossy().into_owned();
    let settings = [
        ("audit.interval", "200ms"),
        ("audit.token_file", token_path.as_str()),
        ("cache.resources", "orders,subscriptions,customers"),
    ];
    let gw = TestGateway::with(&sim.base_url(), &settings).await;
    let url = gw.url(&path);
    let before = get(&url, &[AUTH]).await;
    assert_eq!(before.header("x-cache"), Some("MISS"));
    assert_eq!(get(&url, &[AUTH]).await.header("x-cache"), Some("HIT"));

    // In the portal: no token, no gateway.
    let portal = format!("{}{PORTAL}{path}", sim.base_url());
    let changed = send(http::Method::PATCH, &portal, &[], r#"{"quantity":42}"#).await;
    assert_eq!(changed.status, http::StatusCode::OK, "{:?}", changed.body);
    eventually(Duration::from_secs(10), || async {
        let reply = get(&url, &[AUTH]).await;
        reply.json()["quantity"] == 42
    })
    .await;
    assert!(metric(&gw, "partner_gateway_audit_records_total ").await >= 1.0);
    gw.stop().await;
    sim.stop();
    let _ = std::fs::remove_file(token);
}

/// Records arrive late: one dated before the newest record already seen, but within
/// `audit.overlap`, is still applied (once); and a token rewritten mid-run is the one the next
/// poll carries.
#[tokio::test]
async fn late_records_within_the_overlap_apply_and_a_rotated_token_is_used() {
    let upstream = MockServer::start_async().await;
    let (path, _order) = serve_order(&upstream).await;
    let late_order = "0d0e0001-0000-4000-8000-0000000a11cf";
    let late_path = format!("/v1/customers/{CUSTOMER}/orders/{late_order}");
    let late_body =
        serde_json::json!({"id": late_order, "status": "completed", "attributes": {"etag": "v1"}});
    upstream
        .mock_async(|when, then| {
            when.method(GET).path(late_path.as_str());
            then.status(200)
                .header("content-type", "application/json")
                .body(late_body.to_string());
        })
        .await;
    let now = std::time::SystemTime::now();
    let date = |at: std::time::SystemTime| humantime::format_rfc3339_seconds(at).to_string();
    let record = |id: &str, order: &str, at: std::time::SystemTime| {
        serde_json::json!({
            "id": id, "customerId": CUSTOMER, "resourceType": "order",
            "operationDate": date(at),
            "resourceNewValue": serde_json::json!({"id": order}).to_string(),
        })
    };
    let first = record("record-new", ORDER, now);
    let first_page = serde_json::json!({"totalCount": 1, "items": [first.clone()]}).to_string();
    let page = upstream
        .mock_async(|when, then| {
            when.method(GET)
                .path("/v1/auditrecords")
                .header("authorization", "Bearer token-a");
            then.status(200)
                .header("content-type", "application/json")
                .body(first_page.as_str());
        })
        .await;

    let token = token_file("token-a");
    let token_path = token.to_string_lossy().into_owned();
    let settings = [
        ("audit.interval", "150ms"),
        ("audit.token_file", token_path.as_str()),
    ];
    let gw = TestGateway::with(&upstream.base_url(), &settings).await;
    let records = "partner_gateway_audit_records_total ";
    eventually(Duration::from_secs(10), || async {
        metric(&gw, records).await >= 1.0
    })
    .await;
    // Both orders cached after the first record was applied.
    for p in [&path, &late_path] {
        get(&gw.url(p), &[AUTH]).await;
        assert_eq!(
            get(&gw.url(p), &[AUTH]).await.header("x-cache"),
            Some("HIT")
        );
    }

    // The token is rotated; from now on the pages also hold a record dated a minute before
    // the newest one seen — late, but inside the 10-minute overlap.
    page.delete_async().await;
    let late = record("record-late", late_order, now - Duration::from_secs(60));
    let both = serde_json::json!({"totalCount": 2, "items": [first, late]}).to_string();
    let rotated = upstream
        .mock_async(|when, then| {
            when.method(GET)
                .path("/v1/auditrecords")
                .header("authorization", "Bearer token-b");
            then.status(200)
                .header("content-type", "application/json")
                .body(both.as_str());
        })
        .await;
    std::fs::write(&token, "token-b").expect("rotate");
    eventually(Duration::from_secs(10), || async {
        metric(&gw, records).await >= 2.0
    })
    .await;
    assert!(
        rotated.calls_async().await >= 1,
        "the rotated token was used"
    );
    assert_eq!(
        get(&gw.url(&late_path), &[AUTH]).await.header("x-cache"),
        Some("MISS"),
        "the late record applied"
    );
    assert_eq!(
        get(&gw.url(&path), &[AUTH]).await.header("x-cache"),
        Some("HIT"),
        "the first record not again"
    );
    let polled = rotated.calls_async().await;
    eventually(Duration::from_secs(10), || async {
        rotated.calls_async().await >= polled + 2
    })
    .await;
    assert_eq!(metric(&gw, records).await, 2.0, "each record applied once");
    gw.stop().await;
    let _ = std::fs::remove_file(token);
}
