//! `partner-gateway demo`: the simulator and a gateway in one process, and a narrated
//! walk-through of what the gateway does, with the `curl` command for every step.
//!
//! The walk-through talks to the gateway over real HTTP, like a partner service would, and
//! reads the simulator's own counters to show what reached the upstream. The printing and the
//! small HTTP client it uses are in [`console`](crate::demo::console).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;

use http::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Sources;
pub use crate::demo::console::Captured;
use crate::demo::console::{send, DemoClient, Printer};
use crate::demo::elsewhere::elsewhere_step;
pub use crate::demo::elsewhere::ElsewhereReport;
use crate::demo::setup::{bind_gateway, bind_simulator, WEBHOOK_PATH};
pub use crate::demo::setup::{sources, DemoError};
use crate::demo::simulator::Simulator;
use crate::demo::subscriptions::subscription_step;
pub use crate::demo::subscriptions::SubscriptionReport;

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Try the well-known ports (8080 front, 9901 admin, 8081 simulator) before free ones.
    pub fixed_ports: bool,
    /// Where the gateway's configuration comes from, as for `run` (`--config`, the
    /// environment); [`sources`] adds the demo's own settings under them.
    pub sources: Sources,
    /// Keep serving after the walk-through until the shutdown future resolves.
    pub serve: bool,
    /// ANSI colours; `None` = when stdout is a terminal.
    pub color: Option<bool>,
}

/// What the walk-through observed, for tests and for the summary.
#[derive(Debug, Default, Clone)]
pub struct DemoReport {
    pub front: String,
    pub simulator: String,
    /// `X-Cache` (or status for the conditional step) of each single-request step, in order.
    pub states: Vec<String>,
    pub first_etag: String,
    pub etag_after_patch: String,
    pub conditional_status: u16,
    /// The subscription step.
    pub subscription: SubscriptionReport,
    /// The step of changes made elsewhere.
    pub elsewhere: ElsewhereReport,
    pub burst_size: usize,
    pub burst_ok: usize,
    /// Order GETs the simulator received for the burst.
    pub burst_upstream_requests: u64,
    pub direct_ok: usize,
    pub direct_throttled: usize,
    pub shielded_ok: usize,
    pub shielded_upstream_requests: u64,
}

const TOKEN: &str = "Bearer demo-token";
const BUDGET: u32 = 30;

/// Runs the demo: start, walk through, then serve until `shutdown` (if asked to).
pub async fn run(
    options: DemoOptions,
    out: &mut dyn Write,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<DemoReport, DemoError> {
    let simulator = bind_simulator(options.fixed_ports, BUDGET).await?;
    let bound = bind_gateway(options.fixed_ports, &options.sources, &simulator.base_url()).await?;
    let front = bound.front_addr();
    let admin = bound.admin_addr();
    simulator.notify_to(&format!("http://{front}{WEBHOOK_PATH}"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve(async move {
        let _ = stop_rx.await;
    }));

    let color = options
        .color
        .unwrap_or_else(|| std::io::stdout().is_terminal());
    let mut p = Printer { out, color };
    let title = p.paint("1", "partner-gateway demo");
    let _ = writeln!(
        p.out,
        "{title}: a Partner Center simulator and the gateway in front of it"
    );
    p.field("gateway (front)", &format!("http://{front}"));
    p.field("gateway (admin)", &format!("http://{admin}"));
    p.field("simulator", &simulator.base_url());
    p.field(
        "simulator budget",
        &format!("{BUDGET} requests/minute per token, then 429"),
    );

    let report = walk_through(&mut p, front, &simulator).await;
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            let _ = stop_tx.send(());
            let _ = server.await;
            return Err(e);
        }
    };

    if options.serve {
        let _ = writeln!(
            p.out,
            "\nThe gateway keeps serving at http://{front} (admin http://{admin}); try the curl commands above. Ctrl-C stops it."
        );
        let _ = p.out.flush();
        shutdown.await;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    simulator.stop();
    Ok(report)
}

async fn walk_through(
    p: &mut Printer<'_>,
    front: SocketAddr,
    simulator: &Simulator,
) -> Result<DemoReport, DemoError> {
    let client: DemoClient = Client::builder(TokioExecutor::new()).build_http();
    let catalog = Simulator::catalog();
    let (customer, orders) = &catalog[0];
    let order = &orders[0];
    let path = format!("/v1/customers/{customer}/orders/{order}");
    let url = format!("http://{front}{path}");
    let auth = ("authorization", TOKEN);
    let mut report = DemoReport {
        front: format!("http://{front}"),
        simulator: simulator.base_url(),
        ..DemoReport::default()
    };
    let curl = |extra: &str| format!("curl -si {url} -H 'Authorization: {TOKEN}'{extra}");

    p.step(
        1,
        "First GET of an order: the gateway fetches it from Partner Center",
    );
    p.curl(&curl(""));
    let r = send(&client, Method::GET, &url, &[auth], "").await?;
    p.field("status", &r.status.to_string());
    p.field("X-Cache", &r.header("x-cache"));
    p.field("ETag", &r.header("etag"));
    p.field(
        "MS-CorrelationId",
        &format!("{} (generated)", r.header("ms-correlationid")),
    );
    p.field(
        "MS-RequestId",
        &format!("{} (generated)", r.header("ms-requestid")),
    );
    report.states.push(r.header("x-cache"));
    report.first_etag = r.header("etag");

    p.step(2, "The same GET again: answered from memory");
    p.curl(&curl(""));
    let r = send(&client, Method::GET, &url, &[auth], "").await?;
    p.field("status", &r.status.to_string());
    p.field("X-Cache", &r.header("x-cache"));
    p.field("Age", &format!("{} s", r.header("age")));
    p.field(
        "MS-CorrelationId",
        &format!("{} (this request's own)", r.header("ms-correlationid")),
    );
    report.states.push(r.header("x-cache"));

    p.step(3, "A conditional GET with the ETag the client already has");
    let etag = report.first_etag.clone();
    p.curl(&curl(&format!(" -H 'If-None-Match: {etag}'")));
    let r = send(
        &client,
        Method::GET,
        &url,
        &[auth, ("if-none-match", etag.as_str())],
        "",
    )
    .await?;
    p.field("status", &r.status.to_string());
    p.field("X-Cache", &r.header("x-cache"));
    p.say("no body sent: the client's copy is current");
    report.conditional_status = r.status.as_u16();
    report.states.push(r.status.as_u16().to_string());

    p.step(
        4,
        "A PATCH through the gateway changes the order and invalidates it",
    );
    let patch_body = r#"{"status":"cancelled"}"#;
    p.curl(&format!(
        "curl -si -X PATCH {url} -H 'Authorization: {TOKEN}' -H 'Content-Type: application/json' -d '{patch_body}'"
    ));
    let r = send(
        &client,
        Method::PATCH,
        &url,
        &[auth, ("content-type", "application/json")],
        r#"{"status":"cancelled"}"#,
    )
    .await?;
    p.field("status", &r.status.to_string());
    p.curl(&curl(""));
    let r = send(&client, Method::GET, &url, &[auth], "").await?;
    p.field("X-Cache", &r.header("x-cache"));
    p.field("ETag", &format!("{} (was {etag})", r.header("etag")));
    report.states.push(r.header("x-cache"));
    report.etag_after_patch = r.header("etag");

    p.step(
        5,
        "Placing an order: pending for a few seconds, completed soon after it changes",
    );
    let base = format!("http://{front}");
    report.subscription = subscription_step(p, &client, &base, TOKEN, simulator).await?;

    p.step(
        6,
        "Changes made elsewhere: announced by Partner Center, or found in its audit records",
    );
    report.elsewhere = elsewhere_step(p, &client, &base, TOKEN, simulator).await?;

    p.step(
        7,
        "A burst of 50 concurrent GETs for an order nobody asked for yet",
    );
    let cold = format!(
        "http://{front}/v1/customers/{customer}/orders/{}",
        orders[1]
    );
    p.curl(&format!(
        "seq 50 | xargs -P50 -I{{}} curl -s -o /dev/null -w '%{{http_code}} ' {cold} -H 'Authorization: {TOKEN}'"
    ));
    let before = simulator.counters.order_gets();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = client.clone();
        let cold = cold.clone();
        tasks.push(tokio::spawn(async move {
            send(&client, Method::GET, &cold, &[("authorization", TOKEN)], "").await
        }));
    }
    report.burst_size = tasks.len();
    for task in tasks {
        if let Ok(Ok(r)) = task.await {
            if r.status == StatusCode::OK {
                report.burst_ok += 1;
            }
        }
    }
    report.burst_upstream_requests = simulator.counters.order_gets() - before;
    p.field(
        "answers 200",
        &format!("{} of {}", report.burst_ok, report.burst_size),
    );
    p.field(
        "upstream requests",
        &report.burst_upstream_requests.to_string(),
    );

    p.step(8, "Throttling: the simulator allows 30 requests/minute per token, like Partner Center's budget");
    let throttled_token = "Bearer busy-partner";
    let hot = format!(
        "http://{front}/v1/customers/{customer}/orders/{}",
        orders[2]
    );
    let direct = format!(
        "{}/v1/customers/{customer}/orders/{}",
        simulator.base_url(),
        orders[2]
    );
    // Every figure below comes from the commands printed, in this order, within one minute:
    // the gateway reads the order once for this token (1 of its 30), then 40 direct calls
    // spend the rest of the minute's budget, then 200 calls go through the gateway.
    p.curl(&format!(
        "curl -si {hot} -H 'Authorization: {throttled_token}'   # the gateway reads it once"
    ));
    let warm = send(
        &client,
        Method::GET,
        &hot,
        &[("authorization", throttled_token)],
        "",
    )
    .await?;
    p.field("X-Cache", &warm.header("x-cache"));
    p.curl(&format!("for i in $(seq 40); do curl -s -o /dev/null -w '%{{http_code}} ' {direct} -H 'Authorization: {throttled_token}'; done"));
    for _ in 0..40 {
        let r = send(
            &client,
            Method::GET,
            &direct,
            &[("authorization", throttled_token)],
            "",
        )
        .await?;
        match r.status {
            StatusCode::OK => report.direct_ok += 1,
            StatusCode::TOO_MANY_REQUESTS => report.direct_throttled += 1,
            _ => {}
        }
    }
    p.field(
        "direct to upstream",
        &format!(
            "{} × 200, {} × 429 (Retry-After): the token's 30 a minute, one spent by the gateway above",
            report.direct_ok, report.direct_throttled
        ),
    );
    p.curl(&format!("for i in $(seq 200); do curl -s -o /dev/null -w '%{{http_code}} ' {hot} -H 'Authorization: {throttled_token}'; done"));
    let before = simulator.counters.requests();
    for _ in 0..200 {
        let r = send(
            &client,
            Method::GET,
            &hot,
            &[("authorization", throttled_token)],
            "",
        )
        .await?;
        if r.status == StatusCode::OK {
            report.shielded_ok += 1;
        }
    }
    report.shielded_upstream_requests = simulator.counters.requests() - before;
    p.field(
        "through the gateway",
        &format!("{} × 200 of 200", report.shielded_ok),
    );
    p.field(
        "upstream requests",
        &report.shielded_upstream_requests.to_string(),
    );
    p.say("the cache absorbed the load the upstream was refusing");
    Ok(report)
}
