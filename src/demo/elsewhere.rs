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

/// One change made in the portal, and how the gateway came to show it.
struct PortalChange<'a> {
    /// The resource's path under `/v1`.
    path: String,
    /// The PATCH body of the change.
    change: &'a str,
    /// What announces it to the gateway, for the reader.
    how: &'a str,
    /// What the step prints once the change shows.
    label: &'a str,
}

/// Reads the resource twice through the gateway (printing `X-Cache`), changes it in the
/// simulator's portal, and reads it until `fresh` holds; the two states and how long that took.
async fn watch(
    p: &mut Printer<'_>,
    client: &DemoClient,
    (base, token, simulator): (&str, &str, &Simulator),
    what: PortalChange<'_>,
    fresh: impl Fn(&serde_json::Value) -> bool,
) -> Result<(Vec<String>, Option<Duration>), RequestFailed> {
    let url = format!("{base}{}", what.path);
    let mut states = Vec::new();
    p.curl(&format!(
        "curl -si {url} -H 'Authorization: {token}'   # twice"
    ));
    for _ in 0..2 {
        let r = send(client, Method::GET, &url, &[("authorization", token)], "").await?;
        p.field("X-Cache", &r.header("x-cache"));
        states.push(r.header("x-cache"));
    }
    let portal = format!("{}{PORTAL}{}", simulator.base_url(), what.path);
    let change = what.change;
    p.curl(&format!(
        "curl -s -X PATCH {portal} -d '{change}'   # in the portal: no token, no gateway"
    ));
    send(client, Method::PATCH, &portal, &[], change.to_owned()).await?;
    p.say(what.how);
    let after = until_fresh(client, &url, token, fresh).await?;
    let shown = after.map_or("not within 10 s".to_owned(), |d| {
        format!("{} ms later", d.as_millis())
    });
    p.field(what.label, &shown);
    Ok((states, after))
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
    let servers = (base, token, simulator);
    let (subscription_states, notified_after) = watch(
        p,
        client,
        servers,
        PortalChange {
            path: format!("/v1/customers/{customer}/subscriptions/{}", subscription.id),
            change: r#"{"quantity":99}"#,
            how: "Partner Center posts a signed subscription-updated notification to the gateway's webhooks.path",
            label: "quantity 99 read",
        },
        |s| s["quantity"] == 99,
    )
    .await?;
    let renamed = "Renamed in the portal";
    let (customer_states, audited_after) = watch(
        p,
        client,
        servers,
        PortalChange {
            path: format!("/v1/customers/{customer}"),
            change: r#"{"companyProfile":{"companyName":"Renamed in the portal"}}"#,
            how: "no notification for this one: the gateway's audit-record follower (every second) finds it",
            label: "new name read",
        },
        |c| c["companyProfile"]["companyName"] == renamed,
    )
    .await?;
    p.say("both without waiting for cache.ttl, and without any call through the gateway");
    Ok(ElsewhereReport {
        subscription_states,
        notified_after,
        customer_states,
        audited_after,
    })
}
