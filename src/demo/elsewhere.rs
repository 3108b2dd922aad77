//! The walk-through's step for changes made elsewhere (SPEC §15.2–§15.4): a subscription changed
//! "in the portal" is announced by a notification the simulator signs, and the gateway drops
//! it at once; a customer changed in the portal is announced by nothing but an audit record,
//! and the gateway's follower drops it within its interval. Neither change is a call through the
//! gateway, and neither waits for a `ttl`.

use std::time::{Duration, Instant};

use http::Method;

use crate::demo::console::{send, DemoClient, Printer, RequestFailed};
use crate::demo::simulator::{Simulator, PORTAL};

/// What the step saw: each read's `X-Cache` and how long each change took to show.
#[derive(Debug, Default, Clone)]
pub struct ElsewhereReport {
    pub subscription_states: Vec<String>,
    /// The notified change showed through the gateway, after this long.
    pub notified_after: Option<Duration>,
    pub customer_states: Vec<String>,
    /// The audited change showed through the gateway, after this long.
    pub audited_after: Option<Duration>,
}

/// Gives up on a change showing after this long.
const PATIENCE: Duration = Duration::from_secs(10);

/// Reads `url` every 100 ms until `fresh` holds for its body (at most [`PATIENCE`]); how long
/// that took.
async fn until_fresh(
    client: &DemoClient,
    url: &str,
    token: &str,
    fresh: impl Fn(&serde_json::Value) -> bool,
) -> Result<Option<Duration>, RequestFailed> {
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        let r = send(client, Method::GET, url, &[("authorization", token)], "").await?;
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if fresh(&body) {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

/// Changes a subscription and a customer in the simulator's portal and shows each reaching
/// the cache.
pub(crate) async fn elsewhere_step(
    p: &mut Printer<'_>,
    client: &DemoClient,
    base: &str,
    token: &str,
    simulator: &Simulator,
) -> Result<ElsewhereReport, RequestFailed> {
    let account = Simulator::accounts().remove(1);
    let Some(subscription) = account.subscriptions.first() else {
        return Err(RequestFailed(
            "the simulator has no sample subscription".into(),
        ));
    };
    let customer = &account.customer;
    let mut report = ElsewhereReport::default();
    let auth = ("authorization", token);
    let portal = |path: &str| format!("{}{PORTAL}{path}", simulator.base_url());

    let path = format!("/v1/customers/{customer}/subscriptions/{}", subscription.id);
    let url = format!("{base}{path}");
    p.curl(&format!(
        "curl -si {url} -H 'Authorization: {token}'   # twice"
    ));
    for _ in 0..2 {
        let r = send(client, Method::GET, &url, &[auth], "").await?;
        p.field("X-Cache", &r.header("x-cache"));
        report.subscription_states.push(r.header("x-cache"));
    }
    let change = r#"{"quantity":99}"#;
    p.curl(&format!(
        "curl -s -X PATCH {} -d '{change}'   # in the portal: no token, no gateway",
        portal(&path)
    ));
    send(client, Method::PATCH, &portal(&path), &[], change).await?;
    p.say("Partner Center posts a signed subscription-updated notification to the gateway's webhooks.path");
    report.notified_after = until_fresh(client, &url, token, |s| s["quantity"] == 99).await?;
    let shown = report
        .notified_after
        .map_or("not within 10 s".to_owned(), |d| {
            format!("{} ms later", d.as_millis())
        });
    p.field("quantity 99 read", &shown);

    let path = format!("/v1/customers/{customer}");
    let url = format!("{base}{path}");
    p.curl(&format!(
        "curl -si {url} -H 'Authorization: {token}'   # twice"
    ));
    for _ in 0..2 {
        let r = send(client, Method::GET, &url, &[auth], "").await?;
        p.field("X-Cache", &r.header("x-cache"));
        report.customer_states.push(r.header("x-cache"));
    }
    let change = r#"{"companyProfile":{"companyName":"Renamed in the portal"}}"#;
    p.curl(&format!(
        "curl -s -X PATCH {} -d '{change}'   # in the portal",
        portal(&path)
    ));
    send(client, Method::PATCH, &portal(&path), &[], change).await?;
    p.say(
        "no notification for this one: the gateway's audit-record follower (every second) finds it",
    );
    let renamed =
        |c: &serde_json::Value| c["companyProfile"]["companyName"] == "Renamed in the portal";
    report.audited_after = until_fresh(client, &url, token, renamed).await?;
    let shown = report
        .audited_after
        .map_or("not within 10 s".to_owned(), |d| {
            format!("{} ms later", d.as_millis())
        });
    p.field("new name read", &shown);
    p.say("both without waiting for cache.ttl, and without any call through the gateway");
    Ok(report)
}
